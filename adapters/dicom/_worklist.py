"""C-FIND SCP of the Basic Worklist Management Service Class: Modality Worklist Information Model -
FIND (DICOM PS3.4 K.4.1, K.6.1), answered from the FHIR ``ServiceRequest`` resources PixelHub
made from HL7 orders (``mappings.servicerequest_to_worklist``; one item per Scheduled Procedure
Step).

Candidates: ServiceRequests with ``status=active`` and an order intent that carry an accession
number or a Scheduled Procedure Step ID. What FHIR search can narrow cheaply is pushed into it:
Accession Number, Requested Procedure ID, Scheduled Procedure Step ID (``identifier``), Patient ID
(``patient.identifier``), Study Instance UID (``identifier=urn:dicom:uid|urn:oid:…``) and the
Scheduled Procedure Step Start Date (``occurrence``, widened a day each side for time zones).
Every key is then matched on each item with the matchers of the Query/Retrieve C-FIND
(``adapters.dicom._find.value_test``: single value, wildcard, DA/TM range, list of UIDs;
PS3.4 C.2.2.2), the keys of the Scheduled Procedure Step Sequence inside its one item (sequence
matching, C.2.2.2.6; a zero-item sequence asks for every attribute of the sequence). Keys this
SCP does not know are returned empty and not matched (K.6.1.2.2). Scheduled Station AE Title
(0040,0001), from the order's IPC-9 (``performer``), is matched like any key: single value
(case-sensitive, leading and trailing spaces not significant, PS3.5 6.2 AE) or wildcard; an item
whose order names no station matches any station asked for.

Statuses (PS3.4 Table K.4-1): ``0xFF00`` pending per item, ``0x0000`` at the end, ``0xFE00``
after a C-CANCEL, ``0xA900`` for an identifier that does not fit the model (a key of the wrong
VR, a Scheduled Procedure Step Sequence with several items), ``0xC000`` for a value that cannot
be parsed, ``0xA700`` past the result cap (as for Query/Retrieve).
"""

from __future__ import annotations

from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass, field
from datetime import date, timedelta
from typing import Any

import orjson
from pydicom import config
from pydicom.datadict import dictionary_VR, tag_for_keyword
from pydicom.dataelem import DataElement
from pydicom.dataset import Dataset
from pydicom.sequence import Sequence as DicomSequence

from adapters.dicom._find import (
    IDENTIFIER_MISMATCH,
    UNABLE_TO_PROCESS,
    FindError,
    _needs_utf8,
    _range,
    element_values,
    value_test,
)
from hub.auth import Principal
from hub.fhir.service import FhirService
from mappings.servicerequest_to_worklist import (
    WORKLIST_STATUSES,
    is_worklist_order,
    servicerequest_to_worklist,
)

MODALITY_WORKLIST_FIND = "1.2.840.10008.5.1.4.31"
SPS_SEQUENCE = "ScheduledProcedureStepSequence"
PAGE = 200
Item = dict[str, Any]


@dataclass
class _Key:
    """One key of the identifier with a value to match (inside the SPS item or at the top)."""

    keyword: str
    test: Callable[[str], bool]
    in_step: bool


@dataclass
class WorklistRequest:
    """A parsed worklist identifier: the keys to return (top level and inside the Scheduled
    Procedure Step item), the matchers, and the FHIR search parameters that narrow the
    candidates."""

    returned: list[DataElement] = field(default_factory=list)
    step_keys: list[DataElement] | None = None  # None: every attribute of the SPS item
    keys: list[_Key] = field(default_factory=list)
    params: list[tuple[str, str]] = field(default_factory=list)

    def matches(self, item: Item) -> bool:
        step = item[SPS_SEQUENCE][0]
        for key in self.keys:
            value = str((step if key.in_step else item).get(key.keyword) or "")
            if key.keyword == "ScheduledStationAETitle" and not value:
                continue  # the order names no station: any modality may perform it
            if not key.test(value):
                return False
        return True


def search_value(value: str) -> str:
    """A FHIR search value with its special characters escaped (search.html#escaping)."""
    for ch in ("\\", ",", "|", "$"):
        value = value.replace(ch, "\\" + ch)
    return value


def _vr(element: DataElement) -> str:
    if element.VR not in ("UN", ""):
        return str(element.VR)
    try:
        return str(dictionary_VR(element.tag))
    except KeyError:
        return "UN"


class Worklist:
    """The Modality Worklist of one hub: ``parse`` an identifier, then ``answers`` (see the
    module doc). The FHIR searches run as ``peer(calling AE title, address)``."""

    def __init__(
        self,
        service: FhirService,
        peer: Callable[[str, str | None], Principal],
        *,
        issuer_systems: Mapping[str, str],
        default_patient_system: str,
    ) -> None:
        self.service = service
        self.peer = peer
        self.issuer_systems = issuer_systems
        self.default_patient_system = default_patient_system

    # ------------------------------------------------------------------ the identifier

    def parse(self, identifier: Dataset) -> WorklistRequest:
        request = WorklistRequest()
        try:
            elements = list(identifier)
        except Exception as exc:
            raise FindError(UNABLE_TO_PROCESS, f"Cannot decode the identifier: {exc}") from None
        for element in elements:
            tag = element.tag
            if tag.is_private or tag.group in (0x0000, 0x0002) or tag.element == 0:
                continue
            if element.keyword in ("SpecificCharacterSet", "QueryRetrieveLevel"):
                continue
            request.returned.append(element)
            if element.keyword == SPS_SEQUENCE:
                self._step(request, element)
            elif _vr(element) != "SQ":
                self._key(request, element, in_step=False)
        return request

    def _step(self, request: WorklistRequest, element: DataElement) -> None:
        if _vr(element) != "SQ":
            raise FindError(IDENTIFIER_MISMATCH, f"{SPS_SEQUENCE} is not a sequence")
        items = list(element.value or [])
        if len(items) > 1:
            raise FindError(IDENTIFIER_MISMATCH, f"{SPS_SEQUENCE} with more than one item")
        if not items:
            return
        request.step_keys = []
        try:
            nested = list(items[0])
        except Exception as exc:
            raise FindError(UNABLE_TO_PROCESS, f"Cannot decode {SPS_SEQUENCE}: {exc}") from None
        for sub in nested:
            if sub.tag.is_private or sub.tag.element == 0:
                continue
            request.step_keys.append(sub)
            if _vr(sub) != "SQ":
                self._key(request, sub, in_step=True)

    def _key(self, request: WorklistRequest, element: DataElement, *, in_step: bool) -> None:
        keyword = element.keyword
        try:
            values = element_values(element)
        except Exception as exc:
            raise FindError(UNABLE_TO_PROCESS, f"Cannot decode {keyword}: {exc}") from None
        if not values or not keyword:
            return
        vr = _vr(element)
        if vr == "AE":
            values = [v.strip(" ") for v in values]
        test = value_test(keyword, vr, values)
        if test is None:
            return
        request.keys.append(_Key(keyword, test, in_step))
        wild = any("*" in v or "?" in v for v in values)
        if vr == "UI" and keyword == "StudyInstanceUID":
            uids = ",".join(f"urn:dicom:uid|urn:oid:{u}" for u in values)
            request.params.append(("identifier", uids))
        elif wild:
            return
        elif keyword in ("AccessionNumber", "RequestedProcedureID", "ScheduledProcedureStepID"):
            request.params.append(("identifier", search_value(values[0])))
        elif keyword == "PatientID":
            request.params.append(("patient.identifier", search_value(values[0])))
        elif keyword == "ScheduledProcedureStepStartDate":
            bounds = _range(values[0], "DA", keyword)
            low, high = (bounds, bounds) if isinstance(bounds, str) else bounds
            if low:
                request.params.append(("occurrence", "ge" + _shift(low, -1)))
            if high:
                request.params.append(("occurrence", "le" + _shift(high, 1)))

    # ------------------------------------------------------------------ the answers

    def items(self, request: WorklistRequest, principal: Principal) -> Iterator[Item]:
        """Every worklist item matching ``request``, page by page of ServiceRequests."""
        params = [
            ("status", ",".join(WORKLIST_STATUSES)),
            *request.params,
            ("_include", "ServiceRequest:subject"),
            ("_sort", "_id"),
            ("_count", str(PAGE)),
        ]
        offset = 0
        while True:
            bundle = self.service.search(
                principal, "ServiceRequest", [*params, ("_offset", str(offset))]
            )
            data = orjson.loads(orjson.dumps(bundle))
            entries = data.get("entry") or []
            included = {
                f"{e['resource']['resourceType']}/{e['resource']['id']}": e["resource"]
                for e in entries
                if (e.get("search") or {}).get("mode") == "include"
            }
            orders = [
                e["resource"]
                for e in entries
                if (e.get("search") or {}).get("mode", "match") == "match"
            ]
            for order in orders:
                if not is_worklist_order(order):
                    continue
                patient = included.get(str((order.get("subject") or {}).get("reference")))
                for item in servicerequest_to_worklist(
                    order,
                    patient,
                    issuer_systems=self.issuer_systems,
                    default_patient_system=self.default_patient_system,
                ):
                    if request.matches(item):
                        yield item
            if len(orders) < PAGE:
                return
            offset += PAGE

    def answers(self, identifier: Dataset, title: str, address: str | None) -> Iterator[Dataset]:
        """The pending responses' identifiers for a C-FIND from ``title``@``address``."""
        request = self.parse(identifier)
        for item in self.items(request, self.peer(title, address)):
            yield response(request, item)


def _shift(day: str, days: int) -> str:
    """A DA value ``days`` later, as a FHIR date; 0xC000 for a date that does not exist."""
    try:
        moved = date(int(day[:4]), int(day[4:6]), int(day[6:8])) + timedelta(days=days)
    except (ValueError, OverflowError):
        raise FindError(UNABLE_TO_PROCESS, f"Invalid DA value: {day}") from None
    return moved.isoformat()


def _element(element: DataElement, value: Any) -> DataElement:
    vr = _vr(element)
    if vr == "SQ":
        return DataElement(element.tag, "SQ", DicomSequence(_items(value or [])))
    return DataElement(element.tag, vr, value or None, validation_mode=config.IGNORE)


def _items(values: list[Item]) -> list[Dataset]:
    out = []
    for value in values:
        ds = Dataset()
        for keyword, text in value.items():
            tag = tag_for_keyword(keyword)
            if tag is not None:
                ds.add(DataElement(tag, dictionary_VR(tag), text or None))
        out.append(ds)
    return out


def response(request: WorklistRequest, item: Item) -> Dataset:
    """A pending response's identifier: the requested keys with the item's values."""
    answer = Dataset()
    for element in request.returned:
        if element.keyword != SPS_SEQUENCE:
            answer.add(_element(element, item.get(element.keyword)))
            continue
        step = item[SPS_SEQUENCE][0]
        if request.step_keys is None:
            answer.add(DataElement(element.tag, "SQ", DicomSequence(_items([step]))))
            continue
        nested = Dataset()
        for sub in request.step_keys:
            nested.add(_element(sub, step.get(sub.keyword)))
        answer.add(DataElement(element.tag, "SQ", DicomSequence([nested])))
    utf8 = any(_needs_utf8(e.value) for e in answer.iterall() if e.VR != "SQ")
    answer.SpecificCharacterSet = "ISO_IR 192" if utf8 else "ISO_IR 100"
    return answer
