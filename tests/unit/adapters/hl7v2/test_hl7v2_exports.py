"""The public surface of ``adapters.hl7v2`` and its entry point (pinned, STYLE.md habit 11)."""

from __future__ import annotations

from importlib.metadata import entry_points

import adapters.hl7v2


def test_public_surface() -> None:
    assert sorted(adapters.hl7v2.__all__) == [
        "Hl7Ingest",
        "Hl7v2Channel",
        "PeerRule",
        "create_channel",
        "parse_message",
        "parse_peers",
    ]


def test_channel_entry_point() -> None:
    [ep] = [e for e in entry_points(group="pixelhub.channels") if e.name == "hl7v2"]
    assert ep.load() is adapters.hl7v2.create_channel
    assert adapters.hl7v2.Hl7v2Channel.name == "hl7v2"
    assert adapters.hl7v2.Hl7v2Channel.port_name == "mllp"


def test_peer_rules() -> None:
    rules = adapters.hl7v2.parse_peers(["RIS^HOSP", "LAB^HOSP@10.0.0.5"], demo=False)
    assert rules is not None
    assert rules[0].allows("RIS", "HOSP", "1.2.3.4")
    assert not rules[0].allows("RIS", "OTHER", "1.2.3.4")
    assert rules[1].allows("LAB", "HOSP", "10.0.0.5")
    assert not rules[1].allows("LAB", "HOSP", "10.0.0.6")
    assert adapters.hl7v2.parse_peers(["*"], demo=True) is None
    assert adapters.hl7v2.parse_peers([], demo=True) is None
    assert adapters.hl7v2.parse_peers([], demo=False) == []
