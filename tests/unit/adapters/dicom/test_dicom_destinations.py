"""``dicom_destinations`` entries (``AET=host:port``): the AEs PixelHub associates to as an SCU
(C-MOVE destinations, DICOM PS3.4 C.4.2; storage commitment replies, J.3.3)."""

from __future__ import annotations

import pytest

from adapters.dicom._destinations import Destination, parse_destinations


def test_entries_by_ae_title() -> None:
    found = parse_destinations(
        [" DEST = 127.0.0.1:11113", "PACS=pacs.example.org:104", "V6=[::1]:4242"]
    )
    assert found == {
        "DEST": Destination("DEST", "127.0.0.1", 11113),
        "PACS": Destination("PACS", "pacs.example.org", 104),
        "V6": Destination("V6", "::1", 4242),
    }
    assert parse_destinations([]) == {}


@pytest.mark.parametrize(
    "entry",
    [
        "DEST",  # no address
        "DEST=127.0.0.1",  # no port
        "=127.0.0.1:104",  # no AE title
        "DEST=:104",  # no host
        "DEST=host:port",  # port not a number
        "DEST=host:0",
        "DEST=host:65536",
        "A_TITLE_TOO_LONG_17=host:104",
        "BACK\\SLASH=host:104",
        "ÄRZTE=host:104",  # AE titles are ASCII (PS3.5 6.2, AE)
    ],
)
def test_malformed_entries_are_refused(entry: str) -> None:
    with pytest.raises(ValueError, match="expected AET=host:port"):
        parse_destinations([entry])


def test_a_title_listed_twice_is_refused() -> None:
    with pytest.raises(ValueError, match="listed twice"):
        parse_destinations(["DEST=a:104", "DEST=b:104"])
