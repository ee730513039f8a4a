"""The requester header and the Via hop check (hub.federation.requester)."""

from __future__ import annotations

import base64

import pytest

from hub.errors import LoopDetected
from hub.federation.requester import PURPOSE_OF_USE, Requester, forwarded_via, via_entries


def test_the_requester_round_trips_through_its_header() -> None:
    sent = Requester(
        "dr.house",
        subject_id="Practitioner/7",
        organization="Princeton-Plainsboro",
        home_community_id="site-a",
        purpose_of_use=((PURPOSE_OF_USE, "TREAT"), (PURPOSE_OF_USE, "ETREAT")),
    )
    value = sent.header_value()
    assert value.isascii() and "=" not in value and "\n" not in value
    assert Requester.from_header(value) == sent


@pytest.mark.parametrize(
    "value",
    [
        None,
        "",
        "***",
        base64.urlsafe_b64encode(b"[1,2]").decode(),
        base64.urlsafe_b64encode(b'{"purpose_of_use": []}').decode(),  # no subject_name
        base64.urlsafe_b64encode(b'{"subject_name": 7}').decode(),
        base64.urlsafe_b64encode(b"\xff\xfe").decode(),
        "A" * 5000,
    ],
)
def test_a_malformed_header_is_ignored_whole(value: str | None) -> None:
    assert Requester.from_header(value) is None


def test_only_well_formed_purposes_are_kept_and_text_is_bounded() -> None:
    raw = b'{"subject_name": "' + b"x" * 1000 + b'", "purpose_of_use": [{"code": "X"}, 5,'
    raw += b' {"system": "s", "code": "TREAT"}]}'
    got = Requester.from_header(base64.urlsafe_b64encode(raw).decode())
    assert got is not None
    assert got.purpose_of_use == (("s", "TREAT"),)
    assert len(got.subject_name) == 256


def test_via_grows_by_one_hop_per_hub() -> None:
    assert forwarded_via(None, "site-a", 3) == "1.1 site-a"
    assert forwarded_via("1.1 site-b", "site-a", 3) == "1.1 site-b, 1.1 site-a"
    assert via_entries("1.1 a, HTTP/1.1 proxy (comment), junk") == ["a", "proxy"]


def test_a_loop_or_too_many_hops_is_refused_with_508() -> None:
    with pytest.raises(LoopDetected) as loop:
        forwarded_via("1.1 site-b, 1.1 site-a", "site-a", 5)
    assert loop.value.status == 508 and "already passed this hub" in loop.value.message
    with pytest.raises(LoopDetected, match="federation_max_hops is 2"):
        forwarded_via("1.1 x, 1.1 y", "site-a", 2)
