"""The ER7 parser (adapters/hl7v2/_parser.py): HL7 v2.5.1 ch. 2 §2.5-§2.7."""

from __future__ import annotations

import pytest

from adapters.hl7v2._errors import Hl7Error
from adapters.hl7v2._parser import escape, parse_message

MSH = b"MSH|^~\\&|RIS|HOSP|PH|HOSP|20240101120000||ADT^A08^ADT_A01|C1|P|2.5.1"


def test_fields_repetitions_components_subcomponents() -> None:
    msg = parse_message(MSH + b"\rPID|1||111^^^A&1.2.3&ISO^MR~222^^^B^PI||Doe^John^Q\r")
    pid = msg.first("PID")
    assert pid is not None
    assert pid.value(3, 1) == "111"
    assert pid.value(3, 4, 2) == "1.2.3"
    assert pid.value(3, 4, 3) == "ISO"
    assert pid.value(3, 1, rep=2) == "222"
    assert pid.value(5, 2) == "John"
    assert pid.value(99) == "" and pid.value(3, 9) == "" and pid.value(3, 1, rep=3) == ""
    assert [len(r) for r in pid.repetitions(3)] == [5, 5]
    assert msg.msh.value(1) == "|" and msg.msh.value(2) == "^~\\&"
    assert (msg.message_code, msg.trigger_event, msg.control_id, msg.version) == (
        "ADT",
        "A08",
        "C1",
        "2.5.1",
    )


def test_custom_delimiters_come_from_msh() -> None:
    msg = parse_message(b"MSH#!@$%#RIS#HOSP#PH#HOSP#20240101##ADT!A08#C1#P#2.5.1\rPID#1##7!!!A!MR")
    pid = msg.first("PID")
    assert pid is not None
    assert msg.message_code == "ADT" and pid.value(3, 4) == "A"


def test_escape_sequences() -> None:
    raw = b"\rNTE|1||a\\F\\b\\S\\c\\T\\d\\R\\e\\E\\f\\X4A4B\\g\\.br\\h\\H\\bold\\N\\\r"
    note = parse_message(MSH + raw).first("NTE")
    assert note is not None
    assert note.value(3) == "a|b^c&d~e\\fJKg\nhbold"


def test_hex_escape_uses_message_charset() -> None:
    msg = parse_message(MSH + b"||||||UNICODE UTF-8\rNTE|1||\\XC3A9\\\r")
    assert msg.first("NTE").value(3) == "é"  # type: ignore[union-attr]


@pytest.mark.parametrize("bad", [b"\\Q\\", b"abc\\F", b"\\XZZ\\"])
def test_bad_escape_is_data_type_error(bad: bytes) -> None:
    with pytest.raises(Hl7Error) as err:
        parse_message(MSH + b"\rNTE|1||" + bad + b"\r")
    assert (err.value.ack_code, err.value.code) == ("AE", 102)
    assert err.value.location is not None and err.value.location.segment == "NTE"


def test_null_value_is_kept() -> None:
    pid = parse_message(MSH + b'\rPID|1||1^^^A^MR||""|\r').first("PID")
    assert pid is not None
    assert pid.state(5) == "null" and pid.state(6) == "absent" and pid.state(3) == "present"


def test_crlf_is_tolerated() -> None:
    msg = parse_message(MSH + b"\r\nPID|1||1\r\n")
    assert [s.name for s in msg.segments] == ["MSH", "PID"]


def test_lf_only_is_rejected_not_truncated() -> None:
    with pytest.raises(Hl7Error) as err:
        parse_message(MSH + b"\nPID|1||1\nPV1|1|O\n")
    assert (err.value.ack_code, err.value.code) == ("AR", 100)
    assert "<LF>" in err.value.text


def test_mixed_cr_and_lf_is_rejected() -> None:
    with pytest.raises(Hl7Error) as err:
        parse_message(MSH + b"\rPID|1||1\nPV1|1|O\r")
    assert err.value.code == 100


@pytest.mark.parametrize(
    "data",
    [
        b"PID|1||1\r",
        b"\x00\x01garbage",
        b"",
        b"MSH|",
    ],
)
def test_no_msh_is_rejected(data: bytes) -> None:
    with pytest.raises(Hl7Error) as err:
        parse_message(data)
    assert err.value.ack_code == "AR"


def test_wrong_field_separator_in_a_later_segment() -> None:
    with pytest.raises(Hl7Error) as err:
        parse_message(MSH + b"\rPID#1##1\r")
    assert (err.value.ack_code, err.value.code) == ("AR", 100)


@pytest.mark.parametrize("head", [b"MSHA^~\\&|", b"MSH|^~|", b"MSH|^^\\&|", b"MSH|^~\\a|"])
def test_bad_delimiters(head: bytes) -> None:
    with pytest.raises(Hl7Error) as err:
        parse_message(head + b"RIS|H|PH|H|2024||ADT^A08|1|P|2.5.1\r")
    assert (err.value.ack_code, err.value.code) == ("AR", 102)


def test_declared_charsets() -> None:
    latin1 = MSH + b"||||||8859/1\rPID|1||1||M\xfcller\r"
    assert parse_message(latin1).first("PID").value(5) == "Müller"  # type: ignore[union-attr]
    utf8 = MSH + b"||||||UNICODE UTF-8\rPID|1||1||M\xc3\xbcller\r"
    assert parse_message(utf8).first("PID").value(5) == "Müller"  # type: ignore[union-attr]
    with pytest.raises(Hl7Error) as err:
        parse_message(MSH + b"||||||UNICODE UTF-8\rPID|1||1||M\xfcller\r")
    assert (err.value.code, err.value.location.field) == (102, 18)  # type: ignore[union-attr]
    with pytest.raises(Hl7Error) as err:
        parse_message(MSH + b"||||||EBCDIC\rPID|1\r")
    assert err.value.code == 103


def test_undeclared_charset_falls_back() -> None:
    assert parse_message(MSH + b"\rPID|1||1||M\xc3\xbcller\r").charset == "utf-8"
    assert parse_message(MSH + b"\rPID|1||1||M\xfcller\r").charset == "iso8859-1"
    assert parse_message(MSH + b"\rPID|1||1||Muller\r").charset == "ascii"


def test_second_msh_is_rejected() -> None:
    with pytest.raises(Hl7Error) as err:
        parse_message(MSH + b"\r" + MSH + b"\r")
    assert err.value.code == 100


def test_z_segments_keep_their_raw_text() -> None:
    msg = parse_message(MSH + b"\rZDS|1.2.3^RIS^Application^DICOM\r")
    zds = msg.first("ZDS")
    assert zds is not None and zds.raw == "ZDS|1.2.3^RIS^Application^DICOM"
    assert zds.value(1) == "1.2.3"


def test_segment_sequence_numbers() -> None:
    msg = parse_message(MSH + b"\rOBX|1\rOBX|2\rNTE|1\r")
    assert [(s.name, s.sequence) for s in msg.segments] == [
        ("MSH", 1),
        ("OBX", 1),
        ("OBX", 2),
        ("NTE", 1),
    ]


def test_escape_round_trip() -> None:
    text = "a|b^c&d~e\\f"
    msg = parse_message(MSH + b"\rNTE|1||" + escape(text).encode() + b"\r")
    assert msg.first("NTE").value(3) == text  # type: ignore[union-attr]
