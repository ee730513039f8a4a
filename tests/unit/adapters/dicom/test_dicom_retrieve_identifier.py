"""The C-MOVE / C-GET identifier rules of ``adapters.dicom._retrieve`` (DICOM PS3.4 C.4.2.2.1,
C.4.3.2.1) and the sub-operation tally, without a network; the instance listing against a small
in-memory index that pages like the real one."""

from __future__ import annotations

from typing import Any

import pytest
from pydicom import config
from pydicom.dataset import Dataset

from adapters.dicom._find import IDENTIFIER_MISMATCH, UNABLE_TO_PROCESS, FindError
from adapters.dicom._retrieve import (
    PATIENT_ROOT_GET,
    PATIENT_ROOT_MOVE,
    STUDY_ROOT_GET,
    STUDY_ROOT_MOVE,
    UNABLE_TO_PERFORM,
    WARNING,
    Instance,
    Tally,
    list_instances,
    parse_retrieve,
)
from hub.ports import DicomInstanceRecord, InstanceMatch, InstanceQuery


def identifier(**keys: Any) -> Dataset:
    ds = Dataset()
    for keyword, value in keys.items():
        setattr(ds, keyword, value)
    return ds


@pytest.mark.parametrize("model", [STUDY_ROOT_MOVE, STUDY_ROOT_GET])
def test_study_root_levels_build_an_image_query_from_the_unique_keys(model: str) -> None:
    study = parse_retrieve(model, identifier(QueryRetrieveLevel="STUDY", StudyInstanceUID="1.2"))
    assert study.level == "IMAGE" and study.query() == InstanceQuery("IMAGE", study_uids=("1.2",))
    series = parse_retrieve(
        model,
        identifier(
            QueryRetrieveLevel="SERIES", StudyInstanceUID="1.2", SeriesInstanceUID=["1.3", "1.4"]
        ),
    )
    assert series.query() == InstanceQuery("IMAGE", study_uids=("1.2",), series_uids=("1.3", "1.4"))
    image = parse_retrieve(model, identifier(QueryRetrieveLevel="IMAGE", SOPInstanceUID="1.5"))
    assert image.query() == InstanceQuery("IMAGE", sop_uids=("1.5",))


@pytest.mark.parametrize("model", [PATIENT_ROOT_MOVE, PATIENT_ROOT_GET])
def test_patient_root(model: str) -> None:
    found = parse_retrieve(model, identifier(QueryRetrieveLevel="PATIENT", PatientID="P-1"))
    assert found.query() == InstanceQuery("IMAGE", patient_ids=("P-1",))
    found = parse_retrieve(
        model, identifier(QueryRetrieveLevel="STUDY", PatientID="P-1", StudyInstanceUID="1.2")
    )
    assert found.query() == InstanceQuery("IMAGE", patient_ids=("P-1",), study_uids=("1.2",))


def test_empty_keys_and_the_character_set_are_ignored() -> None:
    found = parse_retrieve(
        STUDY_ROOT_MOVE,
        identifier(
            QueryRetrieveLevel="STUDY", StudyInstanceUID="1.2", PatientName="", StudyDate="",
            SpecificCharacterSet="ISO_IR 100",
        ),
    )  # fmt: skip
    assert found.query() == InstanceQuery("IMAGE", study_uids=("1.2",))


@pytest.mark.parametrize(
    ("model", "keys", "status", "text"),
    [
        (STUDY_ROOT_MOVE, {"StudyInstanceUID": "1.2"}, IDENTIFIER_MISMATCH, "No Query/Retrieve"),
        (STUDY_ROOT_MOVE, {"QueryRetrieveLevel": "PATIENT", "PatientID": "P"}, IDENTIFIER_MISMATCH,
         "not in the Study Root"),
        (STUDY_ROOT_MOVE, {"QueryRetrieveLevel": "FRAME"}, IDENTIFIER_MISMATCH, "FRAME"),
        (STUDY_ROOT_MOVE, {"QueryRetrieveLevel": "STUDY"}, IDENTIFIER_MISMATCH, "No StudyInstanceUID"),
        (STUDY_ROOT_GET, {"QueryRetrieveLevel": "SERIES", "StudyInstanceUID": "1.2"},
         IDENTIFIER_MISMATCH, "No SeriesInstanceUID"),
        (PATIENT_ROOT_MOVE, {"QueryRetrieveLevel": "PATIENT", "PatientID": "P*"},
         IDENTIFIER_MISMATCH, "Wildcards"),
        (PATIENT_ROOT_MOVE, {"QueryRetrieveLevel": "PATIENT", "PatientID": "*"},
         IDENTIFIER_MISMATCH, "Wildcards"),
        (STUDY_ROOT_MOVE, {"QueryRetrieveLevel": "STUDY", "StudyInstanceUID": "1.2",
                           "AccessionNumber": "A-1"}, IDENTIFIER_MISMATCH, "not a unique key"),
        (STUDY_ROOT_MOVE, {"QueryRetrieveLevel": "SERIES", "StudyInstanceUID": "1.2",
                           "SeriesInstanceUID": "1.3", "SOPInstanceUID": "1.4"},
         IDENTIFIER_MISMATCH, "below the SERIES level"),
        (STUDY_ROOT_MOVE, {"QueryRetrieveLevel": "STUDY", "StudyInstanceUID": "1." + "2" * 70},
         UNABLE_TO_PROCESS, "Invalid UID"),
        ("1.2.840.10008.5.1.4.1.2.1.1", {"QueryRetrieveLevel": "STUDY"}, IDENTIFIER_MISMATCH,
         "Not a supported retrieve"),
    ],
)  # fmt: skip
def test_refused_identifiers(model: str, keys: dict[str, str], status: int, text: str) -> None:
    with config.disable_value_validation(), pytest.raises(FindError) as raised:
        parse_retrieve(model, identifier(**keys))
    assert raised.value.status == status
    assert text in raised.value.comment


class Index:
    """The two calls ``list_instances`` makes of a ``DicomInstanceStore``, over a dict, with
    the same keyset paging."""

    def __init__(self, records: list[DicomInstanceRecord]) -> None:
        self.records = {r.sop_instance_uid: r for r in records}
        self.queries: list[InstanceQuery] = []

    def find(self, query: InstanceQuery, *, after: str = "", limit: int = 500) -> list[Any]:
        self.queries.append(query)
        keys = sorted(
            uid
            for uid, r in self.records.items()
            if uid > after and (not query.study_uids or r.study_instance_uid in query.study_uids)
        )
        return [InstanceMatch(uid, {}) for uid in keys[:limit]]

    def get(self, sop_instance_uid: str) -> DicomInstanceRecord | None:
        return self.records.get(sop_instance_uid)


def record(sop: str, study: str) -> DicomInstanceRecord:
    return DicomInstanceRecord(
        sop_instance_uid=sop, study_instance_uid=study, series_instance_uid="9.9",
        sop_class_uid="1.2.840.10008.5.1.4.1.1.2", transfer_syntax_uid="1.2.840.10008.1.2.1",
        blob_key=f"dicom/{sop}", sha256="0" * 64, size=1, summary={},
    )  # fmt: skip


def test_list_instances_pages_through_the_index_and_caps() -> None:
    index = Index([record(f"1.{n}", "7.1" if n < 3 else "7.2") for n in range(1, 6)])
    wanted = parse_retrieve(
        STUDY_ROOT_MOVE, identifier(QueryRetrieveLevel="STUDY", StudyInstanceUID="7.1")
    )
    found, studies = list_instances(index, wanted, cap=10)  # type: ignore[arg-type]
    assert [i.sop_instance_uid for i in found] == ["1.1", "1.2"]
    assert found[0] == Instance(
        "1.1", "1.2.840.10008.5.1.4.1.1.2", "1.2.840.10008.1.2.1", "dicom/1.1", "7.1"
    )
    assert list(studies) == ["7.1"]
    everything = parse_retrieve(
        STUDY_ROOT_MOVE, identifier(QueryRetrieveLevel="STUDY", StudyInstanceUID=["7.1", "7.2"])
    )
    found, studies = list_instances(index, everything, cap=5)  # type: ignore[arg-type]
    assert len(found) == 5 and list(studies) == ["7.1", "7.2"]
    with pytest.raises(FindError) as raised:
        list_instances(index, everything, cap=4)  # type: ignore[arg-type]
    assert raised.value.status == UNABLE_TO_PERFORM and "More than 4" in raised.value.comment


def test_tally() -> None:
    a, b, c = (Instance(f"1.{n}", "c", "t", "k", "s") for n in range(3))
    tally = Tally(3)
    tally.add(a, 0x0000)
    assert tally.final_status() == 0x0000
    tally.add(b, 0xB007)  # a warning counts as sent
    tally.add(c, None)  # no response: failed
    assert (tally.remaining, tally.completed, tally.warning, tally.failed) == (0, 1, 1, 1)
    assert tally.failed_uids == ["1.2"] and tally.sent == {"s": [2, 1]}
    assert tally.final_status() == WARNING
    nothing = Tally(1)
    nothing.add(a, 0xA700)
    assert nothing.final_status() == UNABLE_TO_PERFORM
