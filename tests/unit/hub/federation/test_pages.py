"""Merged federated results kept for paging (hub.federation.pages): shared through a directory
by replicas, private, expiring, and never read by a forged token."""

from __future__ import annotations

import os
import stat
from pathlib import Path

import pytest

from hub.federation.pages import MergedResult, PageStore


class Clock:
    def __init__(self) -> None:
        self.now = 1_000_000.0

    def __call__(self) -> float:
        return self.now


def result(store: PageStore) -> MergedResult:
    return MergedResult(
        owner=("dr", None),
        resource_type="ImagingStudy",
        matches=[{"fullUrl": "https://b/fhir/ImagingStudy/1", "resource": {"id": "1"}}],
        references=[["https://b/fhir/Endpoint/e"]],
        includes={"https://b/fhir/Endpoint/e": {"resource": {"id": "e"}}},
        outcomes=[],
        expires=store.expiry(),
    )


def test_a_result_kept_by_one_replica_is_read_by_another(tmp_path: Path) -> None:
    clock = Clock()
    one = PageStore(tmp_path / "pages", 60, clock=clock)
    other = PageStore(tmp_path / "pages", 60, clock=clock)
    kept = result(one)
    token = one.put(kept)
    assert other.get(token) == kept
    (path,) = (tmp_path / "pages").glob("*.json")
    assert stat.S_IMODE(os.stat(path).st_mode) == 0o600
    clock.now += 61
    assert other.get(token) is None  # expired


@pytest.mark.parametrize("directory", [None, "pages"])
def test_forged_or_unknown_tokens_find_nothing(tmp_path: Path, directory: str | None) -> None:
    store = PageStore(tmp_path / directory if directory else None, 60)
    token = store.put(result(store))
    assert store.get(token) is not None
    for forged in ("../../etc/passwd", token + "x", "", "A" * 22):
        assert store.get(forged) is None


def test_expired_files_are_pruned_by_a_later_search(tmp_path: Path) -> None:
    clock = Clock()
    store = PageStore(tmp_path / "pages", 60, clock=clock)
    old = store.put(result(store))
    os.utime(tmp_path / "pages" / f"{old}.json", (clock.now, clock.now))
    clock.now += 120
    fresh = store.put(result(store))
    assert sorted(p.stem for p in (tmp_path / "pages").glob("*.json")) == [fresh]
