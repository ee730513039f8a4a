"""Issue 10 items 4 and 5: captures wrapped as DICOM become ImagingStudies like any other, and
every ology of the enterprise imaging record (DESIGN.md) lands in one searchable patient
timeline, end to end through a real ``pixelhub serve``."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

import pydicom
import pytest

from tests.e2e.support import assert_valid_r4
from tests.integration.dicomweb.conftest import WebHub
from tests.integration.media import samples
from tests.integration.media.conftest import Record
from tests.integration.media.test_media_upload import (
    DCM,
    SCT,
    codes,
    documents,
    get,
    upload,
)

# One typical capture per ology: (ology, sample, file name, declared type, modality, body site)
CAPTURES = [
    ("radiology", samples.pdf, "referral.pdf", "application/pdf", "OT", None),
    ("cardiology", samples.wav, "heart-sounds.wav", "audio/wav", None, "CHEST"),
    ("pathology", samples.png, "gross-specimen.png", "image/png", "GM", None),
    ("dermatology", samples.phone_jpeg, "naevus.jpg", "image/jpeg", "XC", "HAND"),
    ("wound-care", samples.phone_jpeg, "ulcer.jpg", "image/jpeg", "XC", "FOOT"),
    ("ophthalmology", samples.png, "fundus.png", "image/png", "OP", "EYE"),
    ("endoscopy", samples.mp4, "colonoscopy.mp4", "video/mp4", "ES", "COLON"),
    ("pocus", samples.mp4, "fast-exam.mp4", "video/mp4", "US", "ABDOMEN"),
]


def study_of(hub: WebHub, doc: dict[str, Any]) -> dict[str, Any]:
    related = [r["identifier"] for r in doc["context"].get("related", [])]
    uid = next(i["value"] for i in related if i.get("system") == "urn:dicom:uid")
    return hub.study(uid.removeprefix("urn:oid:"))


@pytest.mark.parametrize(("ology", "sample", "filename", "mime", "modality", "site"), CAPTURES)
def test_each_ology_lands_in_the_patients_timeline(
    media_hub: WebHub, record: Record, ology: str, sample: Callable[[], bytes], filename: str,
    mime: str, modality: str | None, site: str | None,
) -> None:  # fmt: skip
    fields = {"patient": record.patient, "encounter": record.encounter, "ology": ology}
    fields |= {"modality": modality} if modality else {}
    fields |= {"bodySite": site} if site else {}
    r = upload(media_hub, sample(), filename, mime, **fields)
    assert r.status_code == 201, r.text
    doc = r.json()
    assert_valid_r4(doc)
    mine = {"patient": record.patient}
    by_ology = documents(media_hub, **mine, category=f"urn:pixelhub:ology|{ology}")
    assert [d["id"] for d in by_ology] == [doc["id"]]
    assert [d["id"] for d in documents(media_hub, **mine, encounter=record.encounter)] == [
        doc["id"]
    ]
    assert [d["id"] for d in documents(media_hub, **mine, date="ge2026-01-01")] == [doc["id"]]
    if mime == "image/jpeg":  # captured 2026-11-27 (EXIF)
        assert [d["id"] for d in documents(media_hub, **mine, period="2026-11-27")] == [doc["id"]]
        assert documents(media_hub, **mine, period="2026-11-26") == []
    # the same modality and bodysite parameters as ImagingStudy (PixelHub SearchParameters)
    if modality:
        for params in ({"modality": f"{DCM}|{modality}"}, {"event": f"{DCM}|{modality}"}):
            assert [d["id"] for d in documents(media_hub, **mine, **params)] == [doc["id"]]
        assert documents(media_hub, **mine, modality=f"{DCM}|CT") == []
    if site:
        site_code = next(c for s, c in codes(doc["context"]["event"]) if s == SCT)
        found = documents(media_hub, **mine, bodysite=f"{SCT}|{site_code}")
        assert [d["id"] for d in found] == [doc["id"]]
    assert documents(media_hub, **mine, category="urn:pixelhub:ology|nothing") == []
    if ology == "ophthalmology":  # the department policy of the served hub wraps these
        study = study_of(media_hub, doc)
        assert study["subject"]["reference"] == record.patient
        # no Ophthalmic Photography IOD yet: a VL Photographic Image (XC) for now
        assert study["series"][0]["modality"]["code"] == "XC"
        with media_hub.http() as c:  # the study answers the same patient + modality search
            found = c.get("/fhir/ImagingStudy",
                          params={**mine, "modality": f"{DCM}|XC"}).json()  # fmt: skip
        assert [e["resource"]["id"] for e in found["entry"]] == [study["id"]]


def test_a_wrapped_photo_is_a_dicom_study_like_any_other(
    media_hub: WebHub, record: Record, tmp_path: Path, assert_dicom_conforms: Any
) -> None:
    r = upload(
        media_hub, samples.phone_jpeg(), "wound.jpg", patient=record.patient, wrap="dicom",
        bodySite="FOOT", laterality="right", modality="XC", accession="ACC-W1",
        description="Wound check",
    )  # fmt: skip
    assert r.status_code == 201, r.text
    doc = r.json()
    study = study_of(media_hub, doc)
    assert_valid_r4(study)
    assert study["subject"]["reference"] == record.patient
    series = study["series"][0]
    assert series["modality"]["code"] == "XC"
    dicom = next(
        c["attachment"] for c in doc["content"]
        if c["attachment"]["contentType"] == "application/dicom"
    )  # fmt: skip
    served = get(media_hub, dicom["url"]).content
    # WADO-RS answers multipart/related: take the one part's body
    path = tmp_path / "wrapped.dcm"
    path.write_bytes(served.split(b"\r\n\r\n", 1)[1].rsplit(b"\r\n--", 1)[0])
    dataset = pydicom.dcmread(path)
    assert dataset.SOPClassUID == "1.2.840.10008.5.1.4.1.1.77.1.4"
    assert dataset.PatientID == record.mrn
    assert dataset.IssuerOfPatientID == "1.2.3.999"
    assert dataset.AccessionNumber == "ACC-W1"
    assert dataset.ImageLaterality == "R"
    assert b"Exif" not in served  # the JPEG's EXIF (with its GPS position) is gone
    assert (dataset.Manufacturer, dataset.ManufacturerModelName) == ("Apple", "iPhone 15")
    assert_dicom_conforms(path)
    # a retry of the same upload stores no second study
    again = upload(
        media_hub, samples.phone_jpeg(), "wound.jpg", patient=record.patient, wrap="dicom",
        bodySite="FOOT", laterality="right", modality="XC", accession="ACC-W1",
        description="Wound check",
    )  # fmt: skip
    assert again.status_code == 200
    with media_hub.http() as c:
        studies = c.get("/fhir/ImagingStudy", params={"patient": record.patient}).json()
    assert len(studies.get("entry", [])) == 1


def test_a_wrapped_pdf_is_an_encapsulated_pdf(
    media_hub: WebHub, record: Record, tmp_path: Path, assert_dicom_conforms: Any
) -> None:
    document = samples.pdf()
    r = upload(media_hub, document, "consent.pdf", "application/pdf", patient=record.patient,
               wrap="dicom")  # fmt: skip
    assert r.status_code == 201, r.text
    study = study_of(media_hub, r.json())
    # DOC is unknown to R4's DCM code system: ImagingStudy says OT (dicom_to_imagingstudy.md)
    assert study["series"][0]["modality"]["code"] == "OT"
    dicom = next(
        c["attachment"] for c in r.json()["content"]
        if c["attachment"]["contentType"] == "application/dicom"
    )  # fmt: skip
    served = get(media_hub, dicom["url"]).content
    path = tmp_path / "pdf.dcm"
    path.write_bytes(served.split(b"\r\n\r\n", 1)[1].rsplit(b"\r\n--", 1)[0])
    dataset = pydicom.dcmread(path)
    assert dataset.SOPClassUID == "1.2.840.10008.5.1.4.1.1.104.1"
    assert bytes(dataset.EncapsulatedDocument)[: len(document)] == document
    assert_dicom_conforms(path)
