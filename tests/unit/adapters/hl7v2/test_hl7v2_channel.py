"""The channel wakes the projectors at a bounded rate, and always after the last commit."""

from __future__ import annotations

import itertools
import time

from adapters.hl7v2._channel import _WakeLimiter


def test_wakes_are_rate_limited_and_the_last_one_is_never_lost() -> None:
    wakes: list[float] = []
    limiter = _WakeLimiter(lambda: wakes.append(time.monotonic()), 0.1)
    limiter.start()
    try:
        started = last_poke = time.monotonic()
        while last_poke - started < 0.35:  # a commit every millisecond
            last_poke = time.monotonic()
            limiter.poke()
            time.sleep(0.001)
        deadline = time.monotonic() + 1.0
        while not (wakes and wakes[-1] >= last_poke) and time.monotonic() < deadline:
            time.sleep(0.01)
        assert wakes[-1] >= last_poke  # the pokes after the last wake are delivered
        assert 2 <= len(wakes) <= 6  # about one per 0.1 s, not one per poke
        assert all(b - a >= 0.09 for a, b in itertools.pairwise(wakes))
    finally:
        limiter.stop()


def test_a_poke_before_stop_is_delivered() -> None:
    wakes: list[int] = []
    limiter = _WakeLimiter(lambda: wakes.append(1), 10.0)
    limiter.start()
    limiter.poke()
    time.sleep(0.05)
    limiter.poke()  # within the interval: held back...
    limiter.stop()  # ...and delivered on stop, not dropped
    assert len(wakes) == 2


def test_stop_without_start() -> None:
    _WakeLimiter(lambda: None, 0.1).stop()
