"""Search contract for the result set: ``_sort`` (search.html#sort), paging (``_count``,
offset), ``_total``, ``_summary=count``, system-level search (#all), deleted resources."""

from __future__ import annotations

from typing import Any

import pytest

from hub.search.model import SearchQuery


def test_sort_by_date_missing_values_last(loaded: Any) -> None:
    # p1 1970, p2 1985, p3 and p4 without a birth date (last, in a stable order)
    asc = loaded.ids("Patient", "_sort=birthdate")
    desc = loaded.ids("Patient", "_sort=-birthdate")
    assert asc[:2] == ["p1", "p2"] and set(asc[2:]) == {"p3", "p4"}
    assert desc[:2] == ["p2", "p1"] and set(desc[2:]) == {"p3", "p4"}
    assert asc[2:] == desc[2:]
    assert loaded.ids("ImagingStudy", "_sort=-started")[:3] == ["s3", "s1", "s2"]
    assert loaded.ids("ImagingStudy", "_sort=started")[:3] == ["s2", "s1", "s3"]


def test_sort_by_string_token_and_several_keys(loaded: Any) -> None:
    assert loaded.ids("Patient", "_sort=family") == ["p1", "p3", "p2", "p4"]  # folded: muller
    assert loaded.ids("Patient", "_sort=-family") == ["p4", "p2", "p3", "p1"]
    assert loaded.ids("ImagingStudy", "_sort=status,-started") == ["s1", "s2", "s4", "s3"]
    assert loaded.ids("ImagingStudy", "_sort=-status,started") == ["s3", "s4", "s2", "s1"]
    assert loaded.ids("Patient", "gender=female&_sort=-_id") == ["p3", "p1"]
    assert loaded.ids("Observation", "_sort=-value-quantity")[:3] == ["o4", "o2", "o1"]


def test_sort_by_last_updated(engine: Any, store: Any) -> None:
    with engine.repository.transaction() as tx:
        for id, stamp in (("b", "2021-01-01T00:00:00Z"), ("a", "2022-01-01T00:00:00Z")):
            tx.put("Patient", id, {"resourceType": "Patient"}, [], last_updated=stamp)
        tx.put("Patient", "c", {"resourceType": "Patient"}, [], last_updated="2020-01-01T00:00:00Z")
    assert store.ids("Patient", "_sort=_lastUpdated") == ["c", "b", "a"]
    assert store.ids("Patient", "_sort=-_lastUpdated") == ["a", "b", "c"]


@pytest.mark.parametrize("sort", ["", "&_sort=gender", "&_sort=-gender,family", "&_sort=-_id"])
def test_paging_is_stable_and_complete(store: Any, sort: str) -> None:
    store.put(
        *[
            {
                "resourceType": "Patient",
                "id": f"pt{i:02d}",
                "gender": ["male", "female"][i % 2],
                "name": [{"family": f"F{i % 4}"}],
            }
            for i in range(23)
        ]
    )
    everything = store.ids("Patient", f"_count=100{sort}")
    assert len(everything) == 23
    pages = []
    for offset in range(0, 25, 5):
        r = store.search("Patient", f"_count=5&_offset={offset}{sort}")
        assert r.total == 23
        pages += [i for _, i in r.matches]
    assert pages == everything
    again = [
        i for o in range(0, 25, 5) for i in store.ids("Patient", f"_count=5&_offset={o}{sort}")
    ]
    assert again == pages


def test_totals(loaded: Any) -> None:
    r = loaded.search("ImagingStudy", "_count=1")
    assert len(r.matches) == 1 and r.total == 4
    assert loaded.search("ImagingStudy", "_count=1&_total=accurate").total == 4
    assert loaded.search("ImagingStudy", "_count=1&_total=none").total is None
    r = loaded.search("ImagingStudy", "modality=CT&_count=1&_offset=5")
    assert r.matches == [] and r.total == 2
    r = loaded.search("ImagingStudy", "modality=CT&_summary=count")
    assert r.matches == [] and r.total == 2
    r = loaded.search("ImagingStudy", "_count=0")
    assert r.matches == [] and r.total == 4
    r = loaded.search("Patient", "gender=nothing")
    assert r.matches == [] and r.total == 0
    r = loaded.search("Patient", "gender=female&_count=1&_offset=1")
    assert r.matches == [("Patient", "p3")] and r.total == 2


def test_system_level_search(loaded: Any) -> None:
    assert loaded.idset(None, "_id=p1,s1,nope") == {"p1", "s1"}
    r = loaded.search(None, "_id=p1,s1&_sort=-_id")
    assert r.matches == [("ImagingStudy", "s1"), ("Patient", "p1")] and r.total == 2
    everything = loaded.run(SearchQuery(None, count=1000))
    assert everything.total == loaded.engine.repository.count() == len(everything.matches)


def test_system_level_search_by_common_parameter(store: Any) -> None:
    tag = {"tag": [{"system": "urn:pixelhub:test", "code": "vip"}]}
    store.put(
        {"resourceType": "Patient", "id": "p", "meta": tag},
        {"resourceType": "ImagingStudy", "id": "s", "status": "available", "meta": tag},
        {"resourceType": "Device", "id": "d"},
    )
    assert store.idset(None, "_tag=urn:pixelhub:test|vip") == {"p", "s"}
    assert store.idset(None, "_tag=urn:pixelhub:test|other") == set()
    assert store.idset("Patient", "_tag=vip") == {"p"}
    assert store.ids(None, "_tag=vip&_sort=_id") == ["p", "s"]


def test_deleted_resources_are_never_returned(loaded: Any) -> None:
    loaded.delete("Patient", "p4")
    loaded.delete("Device", "dev1")
    assert "p4" not in loaded.idset("Patient", "")
    assert loaded.search("Patient", "").total == 3
    assert loaded.idset("Patient", "_id=p4") == set()
    assert loaded.idset("Patient", "gender:missing=true") == set()
    assert loaded.idset("Patient", "gender:not=male") == {"p1", "p3"}
    assert "p4" not in loaded.idset(None, "_id=p4,p1")
    r = loaded.search("ImagingStudy", "_id=s4&_include=ImagingStudy:subject")
    assert r.included == []
    assert loaded.idset("ImagingStudy", "subject:Device.url:below=http://") == set()
