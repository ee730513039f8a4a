"""Issue 9 item 4: STOW-RS and QIDO-RS (DICOM PS3.18 10.5, 10.6) of a real ``pixelhub serve``,
driven by the ``dicomweb-client`` package (PyPI) and, where the exact status and headers are the
point, by plain HTTP. Instances go in through STOW-RS only; QIDO-RS then finds them by Patient
ID, wildcard name, date range, UID list, with includefield, limit and offset; authorization is
that of FHIR ImagingStudy reads, and every request is audited."""

from __future__ import annotations

import base64
import uuid
from dataclasses import dataclass, field
from typing import Any

import pytest
from pydicom.dataset import Dataset
from pydicom.uid import generate_uid

from tests.integration.dicom.dicom_support import encode, make_ct
from tests.integration.dicomweb.conftest import DICOM_MULTIPART, WebHub

DICOM_JSON = "application/dicom+json"


def value(item: dict[str, Any], tag: str) -> Any:
    """The first value of ``tag`` in a DICOM JSON object (PS3.18 F.2), or ``None``."""
    found = item.get(tag, {}).get("Value")
    if not found:
        return None
    first = found[0]
    return first.get("Alphabetic") if isinstance(first, dict) else first


def multipart(parts: list[bytes], boundary: str = "PixelHubTestBoundary") -> bytes:
    body = b"".join(
        f"--{boundary}\r\nContent-Type: application/dicom\r\n\r\n".encode() + p + b"\r\n"
        for p in parts
    )
    return body + f"--{boundary}--\r\n".encode()


def stow(
    hub: WebHub, parts: list[bytes], study: str | None = None, token: str | None = None, **kw: Any
) -> Any:
    boundary = "PixelHubTestBoundary"
    path = "/dicomweb/studies" + (f"/{study}" if study else "")
    with hub.http(token) if token else hub.http() as c:
        return c.post(
            path,
            content=multipart(parts, boundary),
            headers={"Content-Type": DICOM_MULTIPART.format(boundary), **kw},
        )


@dataclass
class Archive:
    tag: str
    a: str  # Patient IDs
    b: str
    studies: list[str]  # s1, s2 of A; s3 of B
    series: list[str]  # s1's two series, then s2's, then s3's
    sops: dict[str, list[str]] = field(default_factory=dict)  # series -> SOP Instance UIDs
    stored: Dataset | None = None


def build(tag: str) -> tuple[Archive, list[Dataset]]:
    a, b = f"A-{tag}", f"B-{tag}"
    studies = [generate_uid() for _ in range(3)]
    series = [generate_uid() for _ in range(4)]
    plan = [  # (study, series, patient, name, date, modality, instances)
        (0, 0, a, f"Doe{tag}^Jane", "20200115", "CT", 2),
        (0, 1, a, f"Doe{tag}^Jane", "20200115", "CT", 1),
        (1, 2, a, f"Doe{tag}^Jane", "20210610", "MR", 1),
        (2, 3, b, f"Smith{tag}^Bob", "20190301", "CT", 1),
    ]
    archive = Archive(tag, a, b, studies, series)
    datasets = []
    for study, serie, patient, name, date, modality, count in plan:
        for n in range(count):
            sop = generate_uid()
            ds = make_ct(
                sop=sop, study=studies[study], series=series[serie], patient_id=patient, name=name
            )
            ds.StudyDate, ds.Modality, ds.InstanceNumber = date, modality, n + 1
            ds.AccessionNumber = f"ACC{study}-{tag}"
            ds.StudyDescription = f"Study {study}"
            archive.sops.setdefault(series[serie], []).append(sop)
            datasets.append(ds)
    return archive, datasets


@pytest.fixture(scope="module")
def archive(web_hub: WebHub) -> Archive:
    archive, datasets = build(uuid.uuid4().hex[:8])
    archive.stored = web_hub.client().store_instances(datasets)
    return archive


# ------------------------------------------------------------------------------------ STOW-RS


def test_stow_stores_every_instance_and_answers_their_retrieve_urls(
    web_hub: WebHub, archive: Archive
) -> None:
    stored = archive.stored
    assert stored is not None and "FailedSOPSequence" not in stored
    items = stored.ReferencedSOPSequence
    assert len(items) == 5
    by_sop = {serie: sops for serie, sops in archive.sops.items()}
    for item in items:
        serie = next(s for s, sops in by_sop.items() if item.ReferencedSOPInstanceUID in sops)
        study = archive.studies[
            0 if serie in archive.series[:2] else archive.series.index(serie) - 1
        ]
        assert item.ReferencedSOPClassUID == "1.2.840.10008.5.1.4.1.1.2"
        assert item.RetrieveURL == (
            f"{web_hub.dicomweb}/studies/{study}/series/{serie}"
            f"/instances/{item.ReferencedSOPInstanceUID}"
        )
    # the same ingest path as C-STORE: each study becomes an ImagingStudy
    resource = web_hub.study(archive.studies[0])
    assert resource["numberOfInstances"] == 3 and resource["numberOfSeries"] == 2


def test_stow_statuses_200_202_409(web_hub: WebHub) -> None:
    study = generate_uid()
    good = [encode(make_ct(sop=generate_uid(), study=study)) for _ in range(2)]
    r = stow(web_hub, good, study)
    assert r.status_code == 200 and r.headers["content-type"].startswith(DICOM_JSON)
    assert value(r.json(), "00081190") == f"{web_hub.dicomweb}/studies/{study}"
    assert len(r.json()["00081199"]["Value"]) == 2
    # an instance of another study, sent to this study: 0xA900 (PS3.18 10.5.3), the rest stored
    other = make_ct(sop=generate_uid(), study=generate_uid())
    r = stow(web_hub, [encode(make_ct(sop=generate_uid(), study=study)), encode(other)], study)
    assert r.status_code == 202 and r.headers["warning"].startswith("299 ")
    (failed,) = r.json()["00081198"]["Value"]
    assert value(failed, "00081197") == 0xA900
    assert value(failed, "00081155") == other.SOPInstanceUID
    assert len(r.json()["00081199"]["Value"]) == 1
    # every instance failed: 409 with each failure's reason
    r = stow(web_hub, [encode(other), b"not dicom at all"], study)
    assert r.status_code == 409
    reasons = [value(f, "00081197") for f in r.json()["00081198"]["Value"]]
    assert reasons == [0xA900, 0xC000]
    with web_hub.http() as c:
        found = c.get(f"/dicomweb/studies/{other.StudyInstanceUID}/instances")
    assert found.status_code == 204  # nothing of the refused instance was stored


def test_stow_of_an_instance_twice_is_a_success(web_hub: WebHub) -> None:
    part = encode(make_ct(sop=generate_uid(), study=generate_uid()))
    assert stow(web_hub, [part]).status_code == 200
    assert stow(web_hub, [part]).status_code == 200


# ------------------------------------------------------------------------------------ QIDO-RS


def test_qido_studies_by_patient_id(web_hub: WebHub, archive: Archive) -> None:
    found = web_hub.client().search_for_studies(search_filters={"PatientID": archive.a})
    assert {value(s, "0020000D") for s in found} == set(archive.studies[:2])
    first = next(s for s in found if value(s, "0020000D") == archive.studies[0])
    assert value(first, "00100010") == f"Doe{archive.tag}^Jane"
    assert value(first, "00080020") == "20200115"
    assert value(first, "00080061") == "CT"
    assert value(first, "00201206") == 2 and value(first, "00201208") == 3  # series, instances
    assert value(first, "00080056") == "ONLINE"
    assert value(first, "00081190") == f"{web_hub.dicomweb}/studies/{archive.studies[0]}"


def test_qido_wildcard_name_date_range_and_uid_list(web_hub: WebHub, archive: Archive) -> None:
    client = web_hub.client()
    by_name = client.search_for_studies(search_filters={"PatientName": f"doe{archive.tag}*"})
    assert {value(s, "0020000D") for s in by_name} == set(archive.studies[:2])
    by_date = client.search_for_studies(
        search_filters={"AccessionNumber": f"*{archive.tag}", "StudyDate": "20200101-20201231"}
    )
    assert [value(s, "0020000D") for s in by_date] == [archive.studies[0]]
    open_range = client.search_for_studies(
        search_filters={"AccessionNumber": f"*{archive.tag}", "StudyDate": "-20200115"}
    )
    assert {value(s, "0020000D") for s in open_range} == {archive.studies[0], archive.studies[2]}
    uids = [archive.studies[0], archive.studies[2]]
    listed = client.search_for_studies(search_filters={"StudyInstanceUID": uids})
    assert {value(s, "0020000D") for s in listed} == set(uids)
    with web_hub.http() as c:  # comma-separated list and a tag instead of a keyword
        r = c.get("/dicomweb/studies", params={"0020000D": ",".join(uids)})
    assert {value(s, "0020000D") for s in r.json()} == set(uids)


def test_qido_includefield(web_hub: WebHub, archive: Archive) -> None:
    client = web_hub.client()
    (study,) = client.search_for_studies(
        search_filters={"StudyInstanceUID": archive.studies[1]}, fields=["StudyDescription"]
    )
    assert value(study, "00081030") == "Study 1"
    assert "00080062" not in study  # SOPClassesInStudy only with includefield=all
    (study,) = client.search_for_studies(
        search_filters={"StudyInstanceUID": archive.studies[1]}, fields=["all"]
    )
    assert value(study, "00080062") == "1.2.840.10008.5.1.4.1.1.2"
    assert value(study, "00081030") == "Study 1"


def test_qido_limit_offset_and_the_warning_for_more(web_hub: WebHub, archive: Archive) -> None:
    with web_hub.http() as c:
        everything = c.get("/dicomweb/instances", params={"PatientID": archive.a}).json()
        assert len(everything) == 4
        first = c.get("/dicomweb/instances", params={"PatientID": archive.a, "limit": "3"})
        assert len(first.json()) == 3 and "offset=3" in first.headers["warning"]
        rest = c.get(
            "/dicomweb/instances", params={"PatientID": archive.a, "limit": "3", "offset": "3"}
        )
        assert len(rest.json()) == 1 and "warning" not in rest.headers
    assert [value(i, "00080018") for i in first.json() + rest.json()] == [
        value(i, "00080018") for i in everything
    ]
    paged = web_hub.client().search_for_instances(
        search_filters={"PatientID": archive.a}, limit=2, offset=1
    )
    assert [value(i, "00080018") for i in paged] == [value(i, "00080018") for i in everything[1:3]]


def test_qido_series_and_instances_at_each_path(web_hub: WebHub, archive: Archive) -> None:
    client = web_hub.client()
    s1 = archive.studies[0]
    series = client.search_for_series(s1)
    assert {value(s, "0020000E") for s in series} == set(archive.series[:2])
    assert all(value(s, "00080060") == "CT" for s in series)
    one = next(s for s in series if value(s, "0020000E") == archive.series[0])
    assert value(one, "00201209") == 2  # NumberOfSeriesRelatedInstances
    assert value(one, "00081190") == f"{web_hub.dicomweb}/studies/{s1}/series/{archive.series[0]}"
    everywhere = client.search_for_series(search_filters={"PatientID": archive.a})
    assert {value(s, "0020000E") for s in everywhere} == set(archive.series[:3])
    assert all(value(s, "00100020") == archive.a for s in everywhere)  # study attributes too
    mr = client.search_for_series(search_filters={"PatientID": archive.a, "Modality": "MR"})
    assert [value(s, "0020000E") for s in mr] == [archive.series[2]]

    in_series = client.search_for_instances(s1, archive.series[0])
    assert {value(i, "00080018") for i in in_series} == set(archive.sops[archive.series[0]])
    assert {value(i, "00200013") for i in in_series} == {1, 2}
    sop = value(in_series[0], "00080018")
    assert value(in_series[0], "00081190") == (
        f"{web_hub.dicomweb}/studies/{s1}/series/{archive.series[0]}/instances/{sop}"
    )
    in_study = client.search_for_instances(s1)
    assert len(in_study) == 3 and all(value(i, "0020000E") for i in in_study)
    of_b = client.search_for_instances(search_filters={"PatientID": archive.b})
    assert [value(i, "00080016") for i in of_b] == ["1.2.840.10008.5.1.4.1.1.2"]


def test_qido_without_match_is_204_and_fuzzymatching_is_declined(
    web_hub: WebHub, archive: Archive
) -> None:
    assert web_hub.client().search_for_studies(search_filters={"PatientID": "nobody-x"}) == []
    with web_hub.http() as c:
        r = c.get("/dicomweb/studies", params={"PatientID": "nobody-x"})
        assert r.status_code == 204 and r.content == b""
        r = c.get(
            "/dicomweb/studies",
            params={"PatientName": f"doe{archive.tag}*", "fuzzymatching": "true"},
        )
        assert r.status_code == 200 and len(r.json()) == 2
        assert "fuzzymatching parameter is not supported" in r.headers["warning"]
        r = c.get("/dicomweb/studies", params={"PatientID": archive.a, "Manufacturer": "ACME"})
        assert r.status_code == 200 and "Manufacturer" in r.headers["warning"]


# ------------------------------------------------------------------------ authorization, audit


def test_without_a_token_every_request_is_401(web_hub: WebHub) -> None:
    with web_hub.http(token=None) as c:
        for r in (
            c.get("/dicomweb/studies"),
            c.get(f"/dicomweb/studies/{generate_uid()}/series"),
            c.post(
                "/dicomweb/studies",
                content=multipart([b"x"]),
                headers={"Content-Type": DICOM_MULTIPART.format("PixelHubTestBoundary")},
            ),
        ):
            assert r.status_code == 401 and r.headers["www-authenticate"].startswith("Bearer")


def test_a_patient_token_sees_only_its_patients_studies(web_hub: WebHub, archive: Archive) -> None:
    studies = [web_hub.study(uid) for uid in archive.studies]
    patient_a = studies[0]["subject"]["reference"].split("/")[1]
    assert studies[2]["subject"]["reference"] != studies[0]["subject"]["reference"]
    token = web_hub.token("patient/ImagingStudy.rs", patient_a)
    client = web_hub.client(token)
    mine = client.search_for_studies(search_filters={"AccessionNumber": f"*{archive.tag}"})
    assert {value(s, "0020000D") for s in mine} == set(archive.studies[:2])
    assert client.search_for_studies(search_filters={"PatientID": archive.b}) == []
    assert client.search_for_series(archive.studies[2]) == []
    assert client.search_for_instances(search_filters={"PatientID": archive.b}) == []
    theirs = client.search_for_instances(search_filters={"PatientID": archive.a})
    assert len(theirs) == 4
    # reading is not storing; a token without ImagingStudy access reads nothing
    part = encode(make_ct(sop=generate_uid(), study=generate_uid()))
    assert stow(web_hub, [part], token=token).status_code == 403
    other = web_hub.token("patient/Observation.rs", patient_a)
    with web_hub.http(other) as c:
        assert c.get("/dicomweb/studies").status_code == 403
    # an unrestricted user scope sees every study
    user = web_hub.client(web_hub.token("user/ImagingStudy.rs"))
    every = user.search_for_studies(search_filters={"AccessionNumber": f"*{archive.tag}"})
    assert len(every) == 3


def _query_of(event: dict[str, Any]) -> str:
    queries = [e.get("query") for e in event.get("entity", []) if e.get("query")]
    return base64.b64decode(queries[0]).decode() if queries else ""


def test_queries_and_stores_are_audited(web_hub: WebHub, archive: Archive) -> None:
    study = generate_uid()
    assert stow(web_hub, [encode(make_ct(sop=generate_uid(), study=study))]).status_code == 200
    (stored,) = web_hub.audit("110104", lambda e: study in str(e))
    assert stored["action"] == "C" and stored["outcome"] == "0"
    marker = f"AUDIT-{uuid.uuid4().hex[:8]}"
    with web_hub.http() as c:
        assert c.get("/dicomweb/studies", params={"PatientID": marker}).status_code == 204
    with web_hub.http(token=None) as c:
        assert c.get("/dicomweb/series", params={"PatientID": marker}).status_code == 401
    found = web_hub.audit("110112", lambda e: marker in _query_of(e), count=2)
    by_path = {_query_of(e).split("?")[0]: e for e in found}
    assert by_path["/dicomweb/studies"]["outcome"] == "0"
    assert by_path["/dicomweb/series"]["outcome"] == "4"  # refused, and still recorded
