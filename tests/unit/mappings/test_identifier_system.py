import pytest

from mappings.identifier_system import identifier_system

SYSTEMS = {"HOSP": "http://hosp.example/mrn", "2.16.840.1.99": "http://mapped.example/ids"}


@pytest.mark.parametrize(
    ("namespace", "universal", "kind", "default", "expected"),
    [
        ("HOSP", "", "", "urn:d", "http://hosp.example/mrn"),
        ("", "2.16.840.1.99", "ISO", "urn:d", "http://mapped.example/ids"),
        ("X", "1.2.3", "ISO", "urn:d", "urn:oid:1.2.3"),
        ("X", "1.2.3", "", "urn:d", "urn:oid:1.2.3"),
        ("X", "1.2.3", "DNS", "urn:d", "urn:d:X"),
        ("X", "https://ids.example/mrn", "URI", "urn:d", "https://ids.example/mrn"),
        ("1.2.840.99", "", "", "urn:d", "urn:oid:1.2.840.99"),
        ("CLINIC B", "", "", "urn:d", "urn:d:CLINIC_B"),
        ("CLINIC", "", "", "urn:oid:1.2.3", "urn:pixelhub:issuer:CLINIC"),
        ("", "", "", "urn:d", "urn:d"),
        ("CLINIC", "", "", None, None),
        ("", "", "", None, None),
        ("1.02.3", "", "", "urn:d", "urn:d:1.02.3"),  # not an OID: leading zero
    ],
)
def test_identifier_system(
    namespace: str, universal: str, kind: str, default: str | None, expected: str | None
) -> None:
    assert identifier_system(namespace, universal, kind, SYSTEMS, default) == expected
