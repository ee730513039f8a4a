"""The C-FIND identifier rules of ``adapters.dicom._find`` (DICOM PS3.4 C.2.2.2, C.6) without a
network: which keys match, what is pushed to the index, what a response holds."""

from __future__ import annotations

from io import BytesIO

import pytest
from pydicom import config
from pydicom.dataset import Dataset
from pydicom.sequence import Sequence
from pynetdicom.dsutils import decode, encode

from adapters.dicom._find import (
    IDENTIFIER_MISMATCH,
    KEYS,
    PATIENT_ROOT_FIND,
    STUDY_ROOT_FIND,
    UNABLE_TO_PROCESS,
    FindError,
    FindRequest,
    encode_response,
    parse_identifier,
    response,
)
from hub.ports import InstanceMatch

SUMMARY = {
    "study_instance_uid": "1.2.3",
    "series_instance_uid": "1.2.3.4",
    "sop_instance_uid": "1.2.3.4.5",
    "sop_class_uid": "1.2.840.10008.5.1.4.1.1.2",
    "patient_id": "PAT-1",
    "patient_name": {"alphabetic": "Müller^Jörg", "ideographic": "", "phonetic": ""},
    "patient_birth_date": "19700101",
    "study_date": "20200115",
    "study_time": "101500",
    "accession_number": "ACC-1",
    "study_description": "CT Head",
    "modality": "CT",
    "series_number": 3,
    "instance_number": 7,
}
MATCH = InstanceMatch("1.2.3", SUMMARY, studies=1, series=2, instances=5, modalities=("CT", "MR"))


def identifier(level: str = "STUDY", **keys: object) -> Dataset:
    ds = Dataset()
    ds.QueryRetrieveLevel = level
    with config.disable_value_validation():  # bad values are what some tests send
        for keyword, value in keys.items():
            setattr(ds, keyword, value)
    return ds


def matched(request: FindRequest, match: InstanceMatch = MATCH) -> bool:
    return all(m.matches(KEYS[m.keyword].value(match)) for m in request.matchers)


@pytest.mark.parametrize(
    ("keys", "expected"),
    [
        ({"PatientName": "müller*"}, True),  # PN: case-insensitive
        ({"PatientName": "M?ller^J*"}, True),
        ({"PatientName": "Mueller*"}, False),
        ({"StudyDescription": "CT*"}, True),
        ({"StudyDescription": "ct*"}, False),  # other text: case-sensitive
        ({"StudyDescription": "CT Head"}, True),
        ({"StudyDescription": "CT"}, False),
        ({"StudyDescription": "*"}, True),
        ({"StudyDate": "20200101-20200131"}, True),
        ({"StudyDate": "20200116-"}, False),
        ({"StudyDate": "-20200115"}, True),
        ({"StudyTime": "1015-1016"}, True),
        ({"StudyTime": "1016-"}, False),
        ({"StudyInstanceUID": ["9.9", "1.2.3"]}, True),
        ({"StudyInstanceUID": "9.9"}, False),
        ({"ModalitiesInStudy": ["MR", "US"]}, True),
        ({"ModalitiesInStudy": "US"}, False),
        ({"PatientBirthDate": "1970*"}, None),  # wildcards are not for DA: refused below
    ],
)
def test_matching(keys: dict[str, object], expected: bool | None) -> None:
    if expected is None:
        with pytest.raises(FindError) as caught:
            parse_identifier(STUDY_ROOT_FIND, identifier(**keys))
        assert caught.value.status == UNABLE_TO_PROCESS
        return
    assert matched(parse_identifier(STUDY_ROOT_FIND, identifier(**keys))) is expected


def test_indexed_keys_are_pushed_down() -> None:
    request = parse_identifier(
        STUDY_ROOT_FIND,
        identifier(
            PatientID="PAT-1", AccessionNumber="ACC*", StudyDate="20200101-",
            StudyInstanceUID=["1.2.3", "1.2.4"], ModalitiesInStudy=["CT", "MR"],
        ),
    )  # fmt: skip
    query = request.query()
    assert query.patient_ids == ("PAT-1",)
    assert query.accession_numbers == ()  # a wildcard is matched on the summary
    assert (query.study_date_from, query.study_date_to) == ("20200101", "")
    assert query.study_uids == ("1.2.3", "1.2.4")
    assert query.modalities == ("CT", "MR")


def test_keys_below_the_level_are_not_matched_but_returned_empty() -> None:
    request = parse_identifier(STUDY_ROOT_FIND, identifier(Modality="US", SeriesDescription=""))
    assert request.matchers == [] and request.query().modalities == ()
    answer = response(request, MATCH, "PIXELHUB")
    assert answer.Modality in ("", None) and "SeriesDescription" in answer


@pytest.mark.parametrize(
    ("model", "level", "status"),
    [
        (STUDY_ROOT_FIND, "PATIENT", IDENTIFIER_MISMATCH),
        (STUDY_ROOT_FIND, "", IDENTIFIER_MISMATCH),
        (PATIENT_ROOT_FIND, "FRAME", IDENTIFIER_MISMATCH),
        ("1.2.3", "STUDY", IDENTIFIER_MISMATCH),
    ],
)
def test_levels(model: str, level: str, status: int) -> None:
    with pytest.raises(FindError) as caught:
        parse_identifier(model, identifier(level))
    assert caught.value.status == status


@pytest.mark.parametrize(
    "keys",
    [
        {"StudyDate": "2020-01-01"},
        {"StudyDate": "-"},
        {"StudyTime": "25"},
        {"StudyInstanceUID": "1.2.x"},
        {"PatientID": ["A", "B"]},  # lists only for UIDs (and Modalities in Study)
    ],
)
def test_bad_values(keys: dict[str, object]) -> None:
    with pytest.raises(FindError) as caught:
        parse_identifier(STUDY_ROOT_FIND, identifier(**keys))
    assert caught.value.status == UNABLE_TO_PROCESS


def test_response_holds_the_asked_keys_and_the_character_set() -> None:
    request = parse_identifier(
        STUDY_ROOT_FIND,
        identifier(
            PatientName="", StudyInstanceUID="", ModalitiesInStudy="",
            NumberOfStudyRelatedSeries="", NumberOfStudyRelatedInstances="",
        ),
    )  # fmt: skip
    answer = response(request, MATCH, "PIXELHUB")
    assert answer.SpecificCharacterSet == "ISO_IR 192"  # Müller needs it
    assert str(answer.PatientName) == "Müller^Jörg"
    assert answer.StudyInstanceUID == "1.2.3"
    assert list(answer.ModalitiesInStudy) == ["CT", "MR"]
    assert (answer.NumberOfStudyRelatedSeries, answer.NumberOfStudyRelatedInstances) == (2, 5)
    assert (answer.QueryRetrieveLevel, answer.RetrieveAETitle) == ("STUDY", "PIXELHUB")
    assert "PatientID" not in answer  # not asked
    ascii_only = response(
        parse_identifier(STUDY_ROOT_FIND, identifier(PatientID="")), MATCH, "PIXELHUB"
    )
    assert ascii_only.SpecificCharacterSet == "ISO_IR 100"


@pytest.mark.parametrize("implicit", [True, False])
@pytest.mark.parametrize(
    ("model", "level", "keys"),
    [
        (STUDY_ROOT_FIND, "STUDY", {
            "StudyInstanceUID": "", "PatientName": "", "PatientID": "", "StudyDate": "20200101-",
            "ModalitiesInStudy": "", "NumberOfStudyRelatedInstances": None,
        }),
        (STUDY_ROOT_FIND, "STUDY", {"AccessionNumber": "", "StudyDescription": "", "StudyID": ""}),
        (PATIENT_ROOT_FIND, "PATIENT", {
            "PatientName": "", "PatientBirthDate": "", "NumberOfPatientRelatedStudies": None,
            "OtherPatientIDsSequence": Sequence(), "PatientSex": "",
        }),
        (STUDY_ROOT_FIND, "SERIES", {
            "SeriesInstanceUID": "", "SeriesNumber": None, "Modality": "", "Rows": None,
        }),
        (STUDY_ROOT_FIND, "IMAGE", {
            "SOPInstanceUID": "", "SOPClassUID": "", "InstanceNumber": None, "StudyDate": "",
            "NumberOfFrames": None,
        }),
    ],
)  # fmt: skip
def test_a_directly_encoded_response_is_what_pydicom_writes(
    model: str, level: str, keys: dict[str, object], implicit: bool
) -> None:
    """``encode_response`` (the C-FIND SCP's encoder) gives the bytes pydicom writes for
    ``response``'s data set, with the request decoded from the wire as the SCP does."""
    wire = encode(identifier(level, **keys), implicit, True)
    request = parse_identifier(model, decode(BytesIO(wire), implicit, True))
    plain = InstanceMatch("1.2.3", {**SUMMARY, "patient_name": {"alphabetic": "DOE^J"}}, 1, 1, 1)
    for match in (MATCH, plain):
        expected = encode(response(request, match, "PIXELHUB"), implicit, True)
        assert encode_response(request, match, "PIXELHUB", implicit=implicit) == expected
