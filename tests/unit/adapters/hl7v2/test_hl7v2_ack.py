"""ACK building (HL7 v2.5.1 ch. 2 §2.9, §2.14.1) and error mapping (adapters/hl7v2/_errors.py)."""

from __future__ import annotations

from datetime import UTC, datetime

from adapters.hl7v2._ack import AckContext, acknowledgments, build_ack
from adapters.hl7v2._errors import AckError, Hl7Error, to_ack_error
from adapters.hl7v2._parser import parse_message
from hub.errors import Conflict, InvalidResource, NotFound, OutOfResources, PreconditionFailed
from mappings.hl7v2_model import ErrorLocation, MappingError

NOW = datetime(2024, 3, 5, 10, 15, tzinfo=UTC)


def ctx(version: str = "2.5.1", msh15: str = "", msh16: str = "") -> AckContext:
    raw = (
        f"MSH|^~\\&|RIS|HOSP|PIXELHUB|RAD|20240305||OMI^O23^OMI_O23|MSG-1|P|{version}"
        f"|||{msh15}|{msh16}\r"
    )
    return AckContext.of(parse_message(raw.encode()))


def segments(ack: str) -> list[list[str]]:
    return [s.split("|") for s in ack.split("\r") if s]


def test_aa_original_mode() -> None:
    [ack] = acknowledgments(ctx(), "AA", [], NOW)
    msh, msa = segments(ack)
    assert msh[2:6] == ["PIXELHUB", "RAD", "RIS", "HOSP"]  # sender and receiver swapped
    assert msh[6] == "20240305101500+0000"
    assert msh[8] == "ACK^O23^ACK"
    assert msh[10:12] == ["P", "2.5.1"]
    assert msa == ["MSA", "AA", "MSG-1"]
    parsed = parse_message(ack.encode())  # the ACK is itself valid ER7
    assert parsed.message_code == "ACK"


def test_ae_v251_err_segment() -> None:
    error = AckError(101, "PID-3 is required", ErrorLocation("PID", 1, 3))
    [ack] = acknowledgments(ctx(), "AE", [error], NOW)
    _, msa, err = segments(ack)
    assert msa[:3] == ["MSA", "AE", "MSG-1"]
    assert err[2] == "PID^1^3"  # ERR-2 ERL
    assert err[3] == "101^Required field missing^HL70357"  # ERR-3
    assert err[4] == "E"  # ERR-4 severity
    assert err[8] == "PID-3 is required"  # ERR-8 user message


def test_v23_uses_err1_and_msa6() -> None:
    error = AckError(102, "bad date", ErrorLocation("PID", 1, 7))
    [ack] = acknowledgments(ctx("2.3"), "AE", [error], NOW)
    msh, msa, err = segments(ack)
    assert msh[8] == "ACK^O23"  # v2.3 MSG has no structure component
    assert msa[6] == "102^Data type error^HL70357"
    assert err[1] == "PID^1^7^102&Data type error&HL70357"


def test_error_text_is_escaped() -> None:
    error = AckError(207, "a|b^c", None)
    ack = build_ack(ctx(), "AE", [error], NOW)
    assert parse_message(ack.encode()).first("ERR").value(8) == "a|b^c"  # type: ignore[union-attr]


def test_enhanced_mode_conditions() -> None:
    accept_only = acknowledgments(ctx(msh15="AL", msh16="NE"), "AA", [], NOW)
    assert [segments(a)[1][1] for a in accept_only] == ["CA"]
    both = acknowledgments(ctx(msh15="AL", msh16="AL"), "AE", [AckError(101, "x")], NOW)
    assert [segments(a)[1][1] for a in both] == ["CA", "AE"]
    on_error = acknowledgments(ctx(msh15="ER", msh16="ER"), "AA", [], NOW)
    assert on_error == []
    rejected = acknowledgments(ctx(msh15="AL", msh16="AL"), "AR", [AckError(203, "v")], NOW)
    assert [segments(a)[1][1] for a in rejected] == ["CR"]


def test_unparsed_message_still_gets_an_ack() -> None:
    [ack] = acknowledgments(AckContext(), "AR", [AckError(100, "no MSH")], NOW)
    msh, msa, _ = segments(ack)
    assert msh[2] == "PIXELHUB" and msa[:3] == ["MSA", "AR", ""]


def test_error_mapping() -> None:
    assert to_ack_error(Hl7Error("AR", 203, "v"))[0] == "AR"
    code, errors = to_ack_error(MappingError(101, "m", ErrorLocation("PID", 1, 3)))
    assert (code, errors[0].code) == ("AE", 101)
    assert to_ack_error(InvalidResource("x"))[1][0].code == 102
    assert to_ack_error(NotFound("x"))[1][0].code == 204
    assert to_ack_error(PreconditionFailed("x"))[1][0].code == 205
    assert to_ack_error(Conflict("x"))[1][0].code == 206
    assert to_ack_error(OutOfResources("x"))[0] == "AR"
    code, errors = to_ack_error(RuntimeError("boom"))
    assert (code, errors[0].code) == ("AR", 207)
