"""Order <-> study linking by accession (hub/imaging/order_linking.py) through the real change feed:
orders over MLLP, studies as the DICOM ingest writes them."""

from __future__ import annotations

from typing import Any

from hub.imaging import OrderLinkingProjector
from tests.integration.hl7v2.hl7_support import ADMIN, Hl7Hub, msa, omi

ACSN = {"coding": [{"system": "http://terminology.hl7.org/CodeSystem/v2-0203", "code": "ACSN"}]}


def add_study(
    hub: Hl7Hub,
    accession: str,
    system: str | None = "urn:pixelhub:accession",
    status: str = "available",
    patient: str | None = None,
) -> str:
    if patient is None:
        patient = hub.hub.service.create(
            ADMIN, "Patient", {"resourceType": "Patient", "name": [{"family": "Dicom"}]}
        ).stored.id
    ident: dict[str, Any] = {"type": ACSN, "value": accession}
    if system:
        ident["system"] = system
    resource = {
        "resourceType": "ImagingStudy",
        "identifier": [ident],
        "status": status,
        "subject": {"reference": f"Patient/{patient}"},
    }
    return hub.hub.service.create(ADMIN, "ImagingStudy", resource).stored.id


def order_id(hub: Hl7Hub, accession: str) -> str:
    [sr] = hub.search("ServiceRequest", ("identifier", accession))
    return str(sr["id"])


def test_order_first_then_study(hl7_hub: Hl7Hub, collect_for_validation: Any) -> None:
    assert msa(hl7_hub.send(omi(1)))[1] == "AA"
    sid = add_study(hl7_hub, "ACC1")
    hl7_hub.hub.runner.catch_up()
    study = hl7_hub.read(f"ImagingStudy/{sid}")
    oid = order_id(hl7_hub, "ACC1")
    assert study["basedOn"] == [{"reference": f"ServiceRequest/{oid}"}]
    assert hl7_hub.read(f"ServiceRequest/{oid}")["status"] == "completed"
    collect_for_validation("hl7v2/linking/study", study)


def test_study_first_then_order(hl7_hub: Hl7Hub) -> None:
    sid = add_study(hl7_hub, "ACC2")
    hl7_hub.hub.runner.catch_up()
    assert "basedOn" not in hl7_hub.read(f"ImagingStudy/{sid}")
    assert msa(hl7_hub.send(omi(2)))[1] == "AA"
    hl7_hub.hub.runner.catch_up()
    oid = order_id(hl7_hub, "ACC2")
    assert hl7_hub.read(f"ImagingStudy/{sid}")["basedOn"] == [
        {"reference": f"ServiceRequest/{oid}"}
    ]
    assert hl7_hub.read(f"ServiceRequest/{oid}")["status"] == "completed"


def test_registered_study_links_without_completing(hl7_hub: Hl7Hub) -> None:
    assert msa(hl7_hub.send(omi(3)))[1] == "AA"
    sid = add_study(hl7_hub, "ACC3", status="registered")
    hl7_hub.hub.runner.catch_up()
    oid = order_id(hl7_hub, "ACC3")
    assert hl7_hub.read(f"ImagingStudy/{sid}")["basedOn"][0]["reference"] == f"ServiceRequest/{oid}"
    assert hl7_hub.read(f"ServiceRequest/{oid}")["status"] == "active"


def test_issuer_decides(hl7_hub: Hl7Hub) -> None:
    """Same value, different real issuers: no link. No issuer on one side: linked by value."""
    assert msa(hl7_hub.send(omi(4, accession="ACC4^RADA")))[1] == "AA"  # issuer RADA
    other = add_study(hl7_hub, "ACC4", system="urn:oid:1.2.3.999")
    hl7_hub.hub.runner.catch_up()
    assert "basedOn" not in hl7_hub.read(f"ImagingStudy/{other}")
    assert msa(hl7_hub.send(omi(5)))[1] == "AA"  # no issuer
    loose = add_study(hl7_hub, "ACC5", system=None)
    hl7_hub.hub.runner.catch_up()
    assert hl7_hub.read(f"ImagingStudy/{loose}")["basedOn"] == [
        {"reference": f"ServiceRequest/{order_id(hl7_hub, 'ACC5')}"}
    ]


def test_projector_is_idempotent_and_does_not_loop(hl7_hub: Hl7Hub) -> None:
    assert msa(hl7_hub.send(omi(6)))[1] == "AA"
    sid = add_study(hl7_hub, "ACC6")
    hl7_hub.hub.runner.catch_up()
    after_first = hl7_hub.hub.engine.change_feed.last_seq()
    study_version = hl7_hub.read(f"ImagingStudy/{sid}")["meta"]["versionId"]
    # its own writes came back through the feed and were no-ops; replaying everything also is
    projector = OrderLinkingProjector(hl7_hub.hub.service)
    projector.handle(hl7_hub.hub.engine.change_feed.read_since(0, 10_000))
    hl7_hub.hub.runner.catch_up()
    assert hl7_hub.hub.engine.change_feed.last_seq() == after_first
    assert hl7_hub.read(f"ImagingStudy/{sid}")["meta"]["versionId"] == study_version


def test_report_arriving_before_the_study_is_linked_later(hl7_hub: Hl7Hub) -> None:
    assert msa(hl7_hub.send(omi(7)))[1] == "AA"
    oru = (
        b"MSH|^~\\&|RIS|HOSP|PIXELHUB|HOSP|20240306120000+0100||ORU^R01^ORU_R01|R7|P|2.5.1\r"
        b"PID|1||MRN7^^^HOSP^MR||Doe^Jane7||19700101|F\r"
        b"OBR|1|PL7^RIS|FL7^RIS|CTHEAD^CT Head^L|||20240306081500+0100|||||||||||ACC7||||"
        b"20240306115500+0100||CT|F\r"
        b"OBX|1|TX|GDT^Report||No acute findings.||||||F\r"
    )
    assert msa(hl7_hub.send(oru))[1] == "AA"
    [dr] = hl7_hub.search("DiagnosticReport", ("identifier", "ACC7"))
    assert "imagingStudy" not in dr
    sid = add_study(hl7_hub, "ACC7")
    hl7_hub.hub.runner.catch_up()
    dr = hl7_hub.read(f"DiagnosticReport/{dr['id']}")
    assert dr["imagingStudy"] == [{"reference": f"ImagingStudy/{sid}"}]
    assert dr["basedOn"] == [{"reference": f"ServiceRequest/{order_id(hl7_hub, 'ACC7')}"}]
