import pytest
from hypothesis import given
from hypothesis import strategies as st

from mappings.identifier_system import identifier_system, issuer_of

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


@pytest.mark.parametrize(
    ("system", "default", "expected"),
    [
        ("http://hosp.example/mrn", "urn:d", ("HOSP", "", "")),
        ("http://mapped.example/ids", "urn:d", ("2.16.840.1.99", "", "")),
        ("urn:oid:1.2.840.99", "urn:d", ("1.2.840.99", "", "")),
        ("urn:oid:1.02.3", "urn:d", ("", "urn:oid:1.02.3", "URI")),  # not an OID
        ("urn:d:CLINIC_B", "urn:d", ("CLINIC_B", "", "")),
        ("urn:pixelhub:issuer:CLINIC", "urn:oid:1.2.3", ("CLINIC", "", "")),
        ("urn:pixelhub:issuer:CLINIC", "urn:d", ("", "urn:pixelhub:issuer:CLINIC", "URI")),
        ("urn:d", "urn:d", ("", "", "")),
        ("urn:oid:1.2.3", "urn:oid:1.2.3", ("1.2.3", "", "")),
        ("urn:d:a:b", "urn:d", ("", "urn:d:a:b", "URI")),
        ("urn:d:HOSP", "urn:d", ("", "urn:d:HOSP", "URI")),  # HOSP is mapped elsewhere
        ("https://ids.example/mrn", "urn:d", ("", "https://ids.example/mrn", "URI")),
        ("https://ids.example/mrn", None, ("", "https://ids.example/mrn", "URI")),
        ("urn:d:CLINIC", None, ("", "urn:d:CLINIC", "URI")),
        (f"urn:d:{'N' * 65}", "urn:d", ("", f"urn:d:{'N' * 65}", "URI")),  # longer than an LO
        ("", "urn:d", ("", "", "")),
    ],
)
def test_issuer_of(system: str, default: str | None, expected: tuple[str, str, str]) -> None:
    assert issuer_of(system, SYSTEMS, default) == expected


def test_issuer_of_long_mapped_key_goes_to_the_universal_id() -> None:
    systems = {"1." + "2" * 70: "http://long.example/ids"}
    assert issuer_of("http://long.example/ids", systems, "urn:d") == ("", "1." + "2" * 70, "ISO")
    assert (
        identifier_system(*issuer_of("http://long.example/ids", systems, "urn:d"), systems, "urn:d")
        == "http://long.example/ids"
    )


_NAMES = st.text(st.sampled_from("ABCxyz019._~-: /"), min_size=1, max_size=80)
_SYSTEMS = st.one_of(
    st.sampled_from(
        ["http://hosp.example/mrn", "http://mapped.example/ids", "urn:d", "urn:oid:1.2.3"]
    ),
    st.from_regex(r"urn:oid:[0-2](\.(0|[1-9][0-9]{0,5})){1,12}", fullmatch=True),
    _NAMES.map(lambda name: f"urn:d:{name}"),
    _NAMES.map(lambda name: f"urn:pixelhub:issuer:{name}"),
    _NAMES.map(lambda name: f"https://ids.example/{name}"),
)


@given(
    system=_SYSTEMS,
    default=st.sampled_from(["urn:d", "urn:oid:1.2.3", "http://hosp.example/mrn", None]),
)
def test_issuer_of_round_trips(system: str, default: str | None) -> None:
    assert identifier_system(*issuer_of(system, SYSTEMS, default), SYSTEMS, default) == system
