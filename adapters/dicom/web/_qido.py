"""QIDO-RS, the Search Transaction of the Studies Service (DICOM PS3.18 10.6), answered from
the DICOM instance index with the C-FIND matching rules (``adapters.dicom._find``).

Resources (PS3.18 10.6.1): ``/studies``, ``/studies/{study}/series``, ``/series``,
``/studies/{study}/series/{series}/instances``, ``/studies/{study}/instances``, ``/instances``.

Query parameters (PS3.18 8.3.4):

- ``{attributeID}={value}``: the attribute as a keyword (``PatientID``) or a tag (``00100020``);
  the value follows the C-FIND matching rules (PS3.4 C.2.2.2: single value, ``*``/``?``
  wildcards, ``a-b`` date/time ranges, UID lists: comma- or backslash-separated, or the
  parameter repeated). An attribute that is not in the DICOM dictionary is answered 400; a
  dictionary attribute the index cannot match (``adapters.dicom._find.KEYS``), a key below the
  searched level or a sequence path (``RequestAttributesSequence.RequestedProcedureID``) is not
  matched, and the answer says so in a ``Warning: 299`` header;
- ``includefield``: attributes to add to the default ones (PS3.18 Tables 10.6.3-3..5), or
  ``all`` (every attribute the index holds at the level and above);
- ``limit`` / ``offset``: a page of the matches (at most ``dicom_max_find_results``); when
  more exist a ``Warning: 299`` header says so (PS3.18 8.3.4.4);
- ``fuzzymatching=true``: not supported; literal matching is done and a ``Warning: 299``
  header says so (PS3.18 8.3.4.2).

The answer is ``application/dicom+json`` (PS3.18 F.2), one object per match with the default
return attributes of its level, those of the levels above when the path does not fix them,
the ``includefield`` ones and the Retrieve URL (0008,1190) of the match (PS3.18 10.4.1).
``204 No Content`` when nothing matches (PS3.18 8.3.4.4.1). The PS3.19 XML form
(``multipart/related; type="application/dicom+xml"``) is not produced: asking only for it is
406. A caller sees only the studies whose ``ImagingStudy`` it may read (``_access``); each
search is audited once (PS3.15 A.5.3.10 Query), refused ones included.
"""

from __future__ import annotations

import itertools
import re
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Any

import orjson
from fastapi import APIRouter, Request, Response
from pydicom import config
from pydicom.datadict import dictionary_VR, keyword_for_tag, tag_for_keyword
from pydicom.dataelem import DataElement
from pydicom.dataset import Dataset
from pydicom.tag import BaseTag, Tag

from adapters.dicom._find import (
    KEYS,
    RANK,
    STUDY_ROOT_FIND,
    FindError,
    FindRequest,
    matches,
    parse_identifier,
    response,
)
from adapters.dicom.web._access import DICOM_JSON, DicomWeb
from hub.auth import Principal
from hub.errors import HubError, InvalidRequest, NotAcceptable
from hub.ports import InstanceMatch, QueryLevel

# Default return attributes (PS3.18 Tables 10.6.3-3, -4, -5) that the index can answer;
# TimezoneOffsetFromUTC, the Performed Procedure Step and Request Attributes, Rows, Columns
# and Bits Allocated are not in the index and are left out.
DEFAULTS: dict[QueryLevel, tuple[str, ...]] = {
    "STUDY": (
        "StudyDate", "StudyTime", "AccessionNumber", "InstanceAvailability",
        "ModalitiesInStudy", "ReferringPhysicianName", "RetrieveURL", "PatientName",
        "PatientID", "PatientBirthDate", "PatientSex", "StudyInstanceUID", "StudyID",
        "NumberOfStudyRelatedSeries", "NumberOfStudyRelatedInstances",
    ),
    "SERIES": (
        "StudyInstanceUID", "Modality", "SeriesDescription", "RetrieveURL",
        "SeriesInstanceUID", "SeriesNumber", "NumberOfSeriesRelatedInstances",
    ),
    "IMAGE": (
        "StudyInstanceUID", "SeriesInstanceUID", "SOPClassUID", "SOPInstanceUID",
        "InstanceAvailability", "RetrieveURL", "InstanceNumber", "NumberOfFrames",
    ),
}  # fmt: skip
# Attributes the answer computes itself (not matched, not index keys).
COMPUTED = frozenset({"RetrieveURL", "InstanceAvailability"})
CONTROL_PARAMS = frozenset(
    {"includefield", "limit", "offset", "fuzzymatching", "accept", "charset"}
)
JSON_TYPES = frozenset({DICOM_JSON, "application/json", "application/*", "*/*"})
BATCH = 100  # matches checked for visibility at a time
_TAG = re.compile(r"^[0-9A-Fa-f]{8}$")
_UID = re.compile(r"^[0-9]+(\.[0-9]+)*$")


def _attribute(name: str) -> BaseTag:
    """A query attribute (PS3.18 8.3.4.1: keyword or ``ggggeeee``) as a tag; 400 otherwise."""
    if _TAG.match(name):
        tag = Tag(int(name, 16))
        try:
            dictionary_VR(tag)
        except KeyError:
            if not tag.is_private:
                raise InvalidRequest(
                    f"Unknown attribute {name} (not in the DICOM dictionary)"
                ) from None
        return tag
    number = tag_for_keyword(name)
    if number is None:
        raise InvalidRequest(
            f"Unknown query parameter or attribute '{name[:64]}': expected a DICOM keyword,"
            " a tag (ggggeeee), includefield, limit, offset or fuzzymatching"
        )
    return Tag(number)


def _path(name: str) -> list[BaseTag]:
    """An attribute or a sequence path (``Seq.Attr``, PS3.18 8.3.4.1)."""
    tags = [_attribute(part) for part in name.split(".")]
    for tag in tags[:-1]:
        if dictionary_VR(tag) != "SQ":
            raise InvalidRequest(f"'{name[:64]}': {keyword_for_tag(tag) or tag} is not a sequence")
    return tags


def check_uid(value: str, what: str) -> str:
    """A UID from a path segment: 400 unless it is one (so nothing else reaches the store)."""
    if len(value) > 64 or not _UID.match(value):
        raise InvalidRequest(f"{what} '{value[:64]}' is not a valid UID")
    return value


def negotiate(request: Request) -> None:
    """DICOM JSON unless the caller accepts none of its media types (406, PS3.18 8.7.3)."""
    accept = request.query_params.get("accept") or request.headers.get("accept", "")
    ranges = [a.strip() for a in accept.split(",") if a.strip()]
    if not ranges:
        return
    for item in ranges:
        media, *params = (p.strip() for p in item.split(";"))
        quality = next((p.partition("=")[2] for p in params if p.startswith("q=")), "1")
        try:
            acceptable = float(quality) > 0
        except ValueError:
            acceptable = True
        if media.lower() in JSON_TYPES and acceptable:
            return
    raise NotAcceptable(
        f"Cannot answer with {accept[:120]}: QIDO-RS results are served as {DICOM_JSON} only"
        ' (PS3.18 F.2); multipart/related; type="application/dicom+xml" (PS3.19 XML) is not'
        " supported"
    )


@dataclass
class Search:
    """A parsed QIDO-RS request."""

    level: QueryLevel
    study: str | None = None
    series: str | None = None
    keys: dict[BaseTag, list[str]] = field(default_factory=dict)
    include: set[BaseTag] = field(default_factory=set)
    include_all: bool = False
    limit: int | None = None
    offset: int = 0
    warnings: list[str] = field(default_factory=list)
    unmatched: list[str] = field(default_factory=list)

    def identifier(self) -> Dataset:
        """The C-FIND identifier (Study Root) of this search: match keys with their values,
        return keys empty."""
        ds = Dataset()
        ds.QueryRetrieveLevel = self.level
        returned = set(self.include)
        level = RANK[self.level]
        defaults = [*DEFAULTS[self.level]]
        if self.level == "IMAGE" and self.series is None:
            defaults += DEFAULTS["SERIES"]
        if self.level != "STUDY" and self.study is None:
            defaults += DEFAULTS["STUDY"]
        names = set(defaults)
        if self.include_all:
            names |= {k for k, key in KEYS.items() if RANK[key.level] <= level}
        for name in names - COMPUTED:
            key = KEYS.get(name)
            if key is not None and key.only_at_level and key.level != self.level:
                continue  # a count or list of another level: not answerable here
            returned.add(_keyword_tag(name))
        for tag in sorted(returned | set(self.keys)):
            if keyword_for_tag(tag) in COMPUTED:
                continue
            vr = _vr(tag)
            values = self.keys.get(tag)
            value: Any = None
            if values:
                value = values if len(values) > 1 else values[0]
                if vr in ("US", "UL", "SS", "SL", "FL", "FD"):
                    value = _number(values[0], vr, tag)
            if vr == "SQ":
                value = []
            ds.add(DataElement(tag, vr, value, validation_mode=config.IGNORE))
        return ds


def _keyword_tag(keyword: str) -> BaseTag:
    number = tag_for_keyword(keyword)
    assert number is not None, keyword
    return Tag(number)


def _vr(tag: BaseTag) -> str:
    try:
        vr = str(dictionary_VR(tag))
    except KeyError:
        return "UN"
    return vr.split(" or ")[0]


def _number(value: str, vr: str, tag: BaseTag) -> int | float:
    try:
        return float(value) if vr in ("FL", "FD") else int(value)
    except ValueError:
        raise InvalidRequest(
            f"{keyword_for_tag(tag) or tag}: '{value[:40]}' is not a number"
        ) from None


def _count(params: Request, name: str) -> int | None:
    raw = params.query_params.get(name)
    if raw is None:
        return None
    if not raw.isascii() or not raw.isdigit() or len(raw) > 9:
        raise InvalidRequest(f"{name}={raw[:20]}: expected a non-negative integer")
    return int(raw)


def parse_search(
    request: Request, level: QueryLevel, study: str | None = None, series: str | None = None
) -> Search:
    """The search's level, keys, return attributes and paging; 400 on any unknown or malformed
    parameter."""
    search = Search(level, study, series)
    search.limit, search.offset = _count(request, "limit"), _count(request, "offset") or 0
    for raw in request.query_params.getlist("includefield"):
        for name in filter(None, (n.strip() for n in raw.split(","))):
            if name == "all":
                search.include_all = True
                continue
            tags = _path(name)
            if len(tags) == 1:
                search.include.add(tags[0])
    fuzzy = request.query_params.get("fuzzymatching")
    if fuzzy is not None:
        if fuzzy not in ("true", "false"):
            raise InvalidRequest(f"fuzzymatching={fuzzy[:20]}: expected true or false")
        if fuzzy == "true":
            search.warnings.append(
                "The fuzzymatching parameter is not supported. Only literal matching has been"
                " performed."
            )
    for name, value in request.query_params.multi_items():
        if name in CONTROL_PARAMS:
            continue
        tags = _path(name)
        if len(tags) > 1:
            search.unmatched.append(name)
            continue
        tag = tags[0]
        keyword = keyword_for_tag(tag)
        key = KEYS.get(keyword)
        if (
            key is None
            or not key.matched
            or RANK[key.level] > RANK[level]
            or (key.only_at_level and key.level != level)
        ) and value:
            search.unmatched.append(keyword or f"{tag.group:04X}{tag.element:04X}")
            search.include.add(tag)
            continue
        values = [value]
        if _vr(tag) == "UI" or keyword == "ModalitiesInStudy":
            values = [v.strip() for v in re.split(r"[,\\]", value) if v.strip()]
        if tag in search.keys:
            if _vr(tag) != "UI":
                raise InvalidRequest(f"{keyword} is given twice")
            values = [*search.keys[tag], *values]  # a UID list given as repeated parameters
        search.keys[tag] = values
    for uid, keyword in ((study, "StudyInstanceUID"), (series, "SeriesInstanceUID")):
        if uid is None:
            continue
        tag = _keyword_tag(keyword)
        given = search.keys.get(tag)
        search.keys[tag] = [uid] if not given or uid in given else ["0"]
    if search.unmatched:
        search.warnings.append(
            "The following attributes are not supported for matching and were ignored: "
            + ", ".join(search.unmatched)
        )
    return search


def _studies_visible(web: DicomWeb, principal: Principal, found: list[InstanceMatch]) -> set[str]:
    uids = {str(m.summary.get("study_instance_uid") or "") for m in found}
    return web.visible_studies(principal, uids)


def page(
    web: DicomWeb, principal: Principal, parsed: FindRequest, search: Search, cap: int
) -> tuple[list[InstanceMatch], bool]:
    """The matches the caller may see, from ``offset``, at most ``limit`` (and ``cap``), and
    whether more exist."""
    limit = min(search.limit if search.limit is not None else cap, cap)
    unrestricted = web.unrestricted(principal)
    found: list[InstanceMatch] = []
    skipped = 0
    stream: Iterator[InstanceMatch] = matches(web.store, parsed)
    while chunk := list(itertools.islice(stream, BATCH)):
        visible = None if unrestricted else _studies_visible(web, principal, chunk)
        for match in chunk:
            if visible is not None and match.summary.get("study_instance_uid") not in visible:
                continue
            if skipped < search.offset:
                skipped += 1
                continue
            if len(found) >= limit:
                return found, True
            found.append(match)
    return found, False


class QidoService:
    """The QIDO-RS routes' logic over one ``DicomWeb``."""

    def __init__(self, web: DicomWeb) -> None:
        self.web = web
        settings = web.context.settings
        self.cap = settings.dicom_max_find_results
        self.aet = settings.dicom_aet

    def base(self) -> str:
        base = self.web.context.service.options.base_url.rstrip("/").removesuffix("/fhir")
        return f"{base}/dicomweb"

    def retrieve_url(self, level: QueryLevel, summary: dict[str, Any]) -> str:
        """PS3.18 10.4.1 resource URL of a match (``/studies/{s}[/series/{s}[/instances/{s}]]``)."""
        url = f"{self.base()}/studies/{summary.get('study_instance_uid')}"
        if RANK[level] >= RANK["SERIES"]:
            url += f"/series/{summary.get('series_instance_uid')}"
        if level == "IMAGE":
            url += f"/instances/{summary.get('sop_instance_uid')}"
        return url

    def render(self, parsed: FindRequest, search: Search, match: InstanceMatch) -> dict[str, Any]:
        answer = response(parsed, match, self.aet)
        del answer.QueryRetrieveLevel
        del answer.RetrieveAETitle
        if answer.SpecificCharacterSet == "ISO_IR 100":
            del answer.SpecificCharacterSet  # plain ASCII: the default repertoire
        wanted = set(DEFAULTS[search.level]) | {keyword_for_tag(t) for t in search.include}
        if search.include_all or "InstanceAvailability" in wanted:
            answer.InstanceAvailability = "ONLINE"
        answer.RetrieveURL = self.retrieve_url(search.level, match.summary)
        return answer.to_json_dict()

    def search(
        self, request: Request, level: QueryLevel, study: str | None = None,
        series: str | None = None,
    ) -> Response:  # fmt: skip
        web = self.web
        principal: Principal | None = None
        try:
            principal = web.principal(request)
            negotiate(request)
            for uid, what in ((study, "Study Instance UID"), (series, "Series Instance UID")):
                if uid is not None:
                    check_uid(uid, what)
            search = parse_search(request, level, study, series)
            try:
                parsed = parse_identifier(STUDY_ROOT_FIND, search.identifier())
            except FindError as exc:
                raise InvalidRequest(exc.comment) from None
            found, more = page(web, principal, parsed, search, self.cap)
        except HubError as exc:
            web.audit_query(
                request, principal, outcome="8" if exc.status >= 500 else "4", matches=0,
                reason=exc.message,
            )  # fmt: skip
            raise
        warnings = list(search.warnings)
        if more:
            warnings.append(
                "There are more matches than returned; ask for the next ones with"
                f" offset={search.offset + len(found)}"
            )
        web.audit_query(request, principal, outcome="0", matches=len(found))
        agent = request.url.netloc or "pixelhub"
        headers = {"Warning": ", ".join(f'299 {agent} "{w}"' for w in warnings)} if warnings else {}
        if not found:
            return Response(status_code=204, headers=headers)
        body = orjson.dumps([self.render(parsed, search, m) for m in found])
        return Response(body, media_type=DICOM_JSON, headers=headers)


def routes(web: DicomWeb) -> APIRouter:
    """The QIDO-RS resources (PS3.18 10.6.1)."""
    service = QidoService(web)
    router = APIRouter()

    @router.get("/studies", summary="QIDO-RS SearchForStudies")
    def search_studies(request: Request) -> Response:
        return service.search(request, "STUDY")

    @router.get("/studies/{study}/series", summary="QIDO-RS SearchForSeries in a study")
    def search_study_series(request: Request, study: str) -> Response:
        return service.search(request, "SERIES", study)

    @router.get("/series", summary="QIDO-RS SearchForSeries")
    def search_series(request: Request) -> Response:
        return service.search(request, "SERIES")

    @router.get(
        "/studies/{study}/series/{series}/instances",
        summary="QIDO-RS SearchForInstances in a series",
    )
    def search_series_instances(request: Request, study: str, series: str) -> Response:
        return service.search(request, "IMAGE", study, series)

    @router.get("/studies/{study}/instances", summary="QIDO-RS SearchForInstances in a study")
    def search_study_instances(request: Request, study: str) -> Response:
        return service.search(request, "IMAGE", study)

    @router.get("/instances", summary="QIDO-RS SearchForInstances")
    def search_instances(request: Request) -> Response:
        return service.search(request, "IMAGE")

    return router
