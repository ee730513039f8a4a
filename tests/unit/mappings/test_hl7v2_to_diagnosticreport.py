"""ORU^R01 -> DiagnosticReport (mappings/hl7v2_to_diagnosticreport.md)."""

from __future__ import annotations

import base64
from typing import Any

import pytest

from adapters.hl7v2._parser import parse_message
from mappings.hl7v2_model import MappingError
from mappings.hl7v2_to_diagnosticreport import ReportMapping, hl7v2_to_diagnosticreport
from tests.unit.mappings.hl7v2_support import (
    ACCESSION_SYSTEMS,
    ORDER_SYSTEMS,
    load,
    plus_one_hour,
)


def reports(name: str) -> list[ReportMapping]:
    return hl7v2_to_diagnosticreport(
        load(name), "Patient/p1", ORDER_SYSTEMS, ACCESSION_SYSTEMS, plus_one_hour
    )


def test_text_report(collect_for_validation: Any) -> None:
    [report] = reports("oru_r01_v251_text_report.hl7")
    dr = report.mapped.resource
    assert dr["status"] == "final"
    assert dr["code"]["coding"][0]["code"] == "71020"
    # OBR-24 "CR" is a modality, not a table 0074 section: RAD, with the sender's value as text
    assert dr["category"] == [
        {
            "coding": [
                {
                    "system": "http://terminology.hl7.org/CodeSystem/v2-0074",
                    "code": "RAD",
                    "display": "Radiology",
                }
            ],
            "text": "CR",
        }
    ]
    assert dr["effectiveDateTime"] == "2024-03-16T09:10:00-05:00"
    assert dr["issued"] == "2024-03-16T14:55:00-05:00"
    assert dr["resultsInterpreter"] == [
        {
            "identifier": {"system": "urn:pixelhub:hl7v2:practitioner", "value": "7788"},
            "display": "Dr Susan Lee",
        }
    ]
    # FT \.br\ is a line break; the impression observation becomes the conclusion
    assert dr["conclusion"] == "No acute cardiopulmonary process.\nFollow-up not required."
    [form] = dr["presentedForm"]
    assert form["contentType"] == "text/plain; charset=utf-8"
    text = base64.b64decode(form["data"]).decode()
    assert text.splitlines() == [
        "EXAM: Chest, two views.",
        "FINDINGS: The lungs are clear. No pleural effusion.",
        "Heart size normal.",
        "No acute cardiopulmonary process.",
        "Follow-up not required.",
    ]
    assert report.accession is not None and report.accession["value"] == "ACC-2024-0001"
    assert report.placer is not None and report.placer["value"] == "ORD-77001"
    collect_for_validation("hl7v2/diagnosticreport/text", {**dr, "id": "dr1"})


def test_pdf_report_in_ed(collect_for_validation: Any) -> None:
    [report] = reports("oru_r01_v24_pdf_report.hl7")
    dr = report.mapped.resource
    [form] = dr["presentedForm"]
    assert form["contentType"] == "application/pdf"
    assert base64.b64decode(form["data"]).startswith(b"%PDF-1.4")
    assert form["title"] == "Befund"
    assert report.accession is None and report.filler is not None
    collect_for_validation("hl7v2/diagnosticreport/pdf", {**dr, "id": "dr2"})


def test_corrected_report_v231(collect_for_validation: Any) -> None:
    [report] = reports("oru_r01_v231_corrected.hl7")
    dr = report.mapped.resource
    assert dr["status"] == "corrected"
    assert dr["issued"] == "2024-03-17T07:55:00+01:00"
    collect_for_validation("hl7v2/diagnosticreport/corrected", {**dr, "id": "dr3"})


def msg(obx: str, obr25: str = "F") -> bytes:
    return (
        "MSH|^~\\&|RIS|F|PH|F|20240101||ORU^R01|1|P|2.5.1\rPID|1||1^^^X^MR\r"
        f"OBR|1|P1^RIS|F1^RIS|X^Chest^L|||||||||||||||||||{obr25}\r{obx}\r"
    ).encode()


def test_bad_base64_is_102() -> None:
    m = parse_message(msg("OBX|1|ED|PDF^Report||^AP^PDF^Base64^@@not-base64@@||||||F"))
    with pytest.raises(MappingError) as err:
        hl7v2_to_diagnosticreport(m, "Patient/p", ORDER_SYSTEMS, ACCESSION_SYSTEMS)
    assert err.value.code == 102


def test_unknown_result_status_is_103() -> None:
    m = parse_message(msg("OBX|1|TX|GDT||text||||||Q", obr25="Q"))
    with pytest.raises(MappingError) as err:
        hl7v2_to_diagnosticreport(m, "Patient/p", ORDER_SYSTEMS, ACCESSION_SYSTEMS)
    assert err.value.code == 103


def test_result_status_falls_back_to_obx11() -> None:
    m = parse_message(msg("OBX|1|TX|GDT||Preliminary text||||||P", obr25=""))
    [report] = hl7v2_to_diagnosticreport(m, "Patient/p", ORDER_SYSTEMS, ACCESSION_SYSTEMS)
    assert report.mapped.resource["status"] == "preliminary"
