"""Group commit over MLLP: messages queued from several connections are applied in one
transaction, each acknowledged on its own connection only after that commit (HL7 v2.5.1 ch. 2
§2.9; Appendix C MLLP)."""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Sequence
from typing import Any

from adapters.hl7v2 import Hl7v2Channel
from tests.integration.hl7v2.hl7_support import Hl7Hub, ack_segments, message, msa, omi

SENDERS = 4
PER_SENDER = 15


def channel(hub: Hl7Hub) -> Hl7v2Channel:
    [found] = [c for c in hub.hub.channels if isinstance(c, Hl7v2Channel)]
    return found


def record_batches(hub: Hl7Hub, *, hold_first: float = 0.0) -> list[int]:
    """Wrap the applier's batch handler: the sizes it is called with; the first call held back
    ``hold_first`` seconds so that frames from the other connections queue up meanwhile."""
    server = channel(hub).server
    real: Callable[[Sequence[tuple[bytes, str | None]]], list[list[bytes]]]
    real = server.handle_batch
    sizes: list[int] = []

    def handle_batch(items: Sequence[tuple[bytes, str | None]]) -> list[list[bytes]]:
        if not sizes and hold_first:
            time.sleep(hold_first)
        sizes.append(len(items))
        return real(items)

    server.handle_batch = handle_batch
    return sizes


def send_concurrently(hub: Hl7Hub, frames: list[list[bytes]]) -> list[list[str]]:
    """One connection per list of frames, all at once; the MSA of each ACK, per connection."""
    results: list[list[str]] = [[] for _ in frames]
    errors: list[BaseException] = []

    def sender(k: int) -> None:
        try:
            with hub.client() as c:
                for frame in frames[k]:
                    results[k].append("|".join(msa(ack_segments(c.send_message(frame)))))
        except BaseException as exc:  # reported by the test thread
            errors.append(exc)

    threads = [threading.Thread(target=sender, args=(k,)) for k in range(len(frames))]
    for t in threads:
        t.start()
    for t in threads:
        t.join(60)
    assert not errors, errors
    return results


def test_concurrent_senders_are_grouped_and_each_acked(hl7_hub: Hl7Hub) -> None:
    sizes = record_batches(hl7_hub, hold_first=0.3)
    frames = [[omi(s * 100 + i) for i in range(PER_SENDER)] for s in range(SENDERS)]
    bad = message("OMI^O23^OMI_O23", "BAD-1", "PID|1||MRN1^^^HOSP^MR||Doe^Jane", "ORC|NW|X^RIS")
    frames[1].insert(5, bad)  # OBR missing: AE for it alone
    results = send_concurrently(hl7_hub, frames)

    for s in range(SENDERS):
        expected = [f"MSA|AA|OMI{s * 100 + i}" for i in range(PER_SENDER)]
        if s == 1:
            expected.insert(5, "MSA|AE|BAD-1")
        assert [r.split("|", 3)[:3] for r in results[s]] == [e.split("|") for e in expected]
    assert max(sizes) > 1  # frames from several connections shared a transaction
    assert sum(sizes) == SENDERS * PER_SENDER + 1
    assert hl7_hub.count("ServiceRequest") == SENDERS * PER_SENDER
    assert hl7_hub.count("Provenance") == SENDERS * PER_SENDER


def test_resend_within_and_across_batches_is_applied_once(hl7_hub: Hl7Hub) -> None:
    record_batches(hl7_hub, hold_first=0.3)
    frames = [[omi(1), omi(2)], [omi(1), omi(3)], [omi(2), omi(1)]]
    results = send_concurrently(hl7_hub, frames)
    assert all(r.startswith("MSA|AA|") for per in results for r in per)
    assert hl7_hub.count("ServiceRequest") == 3
    assert hl7_hub.count("Provenance") == 3
    seq = hl7_hub.hub.engine.change_feed.last_seq()
    assert msa(hl7_hub.send(omi(3)))[1] == "AA"
    assert hl7_hub.hub.engine.change_feed.last_seq() == seq


def test_batch_size_one_applies_one_message_per_transaction(
    hl7_hub_factory: Callable[..., Hl7Hub],
) -> None:
    hub = hl7_hub_factory(mllp_max_batch=1)
    sizes = record_batches(hub, hold_first=0.2)
    frames = [[omi(s * 10 + i) for i in range(3)] for s in range(3)]
    results: Any = send_concurrently(hub, frames)
    assert all(r.startswith("MSA|AA|") for per in results for r in per)
    assert sizes == [1] * 9
