"""The Elasticsearch search index against a real server (tests/support/elasticsearch.py): mappings
from the registry, idempotent bulk feeding, Elasticsearch going away and coming back, reindex with
an alias swap under live searches, deep paging past ``max_result_window``, bad input."""

from __future__ import annotations

import threading
import time
from collections.abc import Iterator
from typing import Any

import pytest

from adapters.elasticsearch import ElasticsearchSearchIndex
from adapters.elasticsearch.index import ElasticsearchConfigError, parse_url
from adapters.elasticsearch.mapping import document, index_mapping
from hub.engines import search_index_factory
from hub.errors import HubError, InvalidSearch, OutOfResources
from hub.search.extract import extract_index_entries
from hub.search.model import (
    Criterion,
    NumberEntry,
    NumberValue,
    ParamRef,
    SearchQuery,
    SortKey,
    TokenEntry,
)
from hub.search.query import parse_search
from hub.search.registry import default_registry
from tests.support.tcp_proxy import TcpProxy

STAMP = "2024-01-02T03:04:05.678Z"


def patient(i: int, **extra: Any) -> dict[str, Any]:
    return {
        "resourceType": "Patient",
        "id": f"p{i:03d}",
        "gender": ["male", "female"][i % 2],
        "name": [{"family": f"Family{i % 7}"}],
        **extra,
    }


def update(resource: dict[str, Any]) -> tuple[tuple[str, str], list[Any], str]:
    return (resource["resourceType"], resource["id"]), extract_index_entries(resource), STAMP


def query(resource_type: str | None, qs: str) -> SearchQuery:
    from urllib.parse import parse_qsl

    return parse_search(resource_type, parse_qsl(qs), strict=True, base_url="http://hub/fhir")


@pytest.fixture
def index(elasticsearch_index_url: str) -> Iterator[ElasticsearchSearchIndex]:
    idx = ElasticsearchSearchIndex(elasticsearch_index_url, data_dir="", backoff=0.01)
    try:
        yield idx
    finally:
        idx.close()


def ids(index: ElasticsearchSearchIndex, resource_type: str | None, qs: str) -> list[str]:
    return [i for _, i in index.search(query(resource_type, qs)).matches]


# -- mappings ----------------------------------------------------------------------------------


def test_mapping_is_generated_from_the_registry(index: ElasticsearchSearchIndex) -> None:
    mapping = index_mapping(default_registry(), "Observation")
    props = mapping["properties"]
    assert mapping["dynamic"] == "strict"
    assert props["tok"]["properties"]["code"]["properties"]["tk"]["type"] == "keyword"
    assert props["dat"]["properties"]["date"]["properties"]["dr"]["type"] == "long_range"
    assert props["qty"]["properties"]["value-quantity"]["type"] == "nested"
    composite = props["cmp"]["properties"]["code-value-quantity"]
    assert composite["type"] == "nested"
    assert set(composite["properties"]) == {"c0", "c1"}
    assert "qv" in composite["properties"]["c1"]["properties"]
    assert props["ref"]["properties"]["subject"]["properties"]["rt"]["type"] == "keyword"

    # on the server: the registry's fields, plus an unknown parameter mapped by template
    index.apply(
        [
            (("Observation", "o1"), [NumberEntry("score", 3.0, 2.95, 3.05)], STAMP),
            update({"resourceType": "Observation", "id": "o2", "status": "final"}),
        ]
    )
    got = index.client.indices.get_mapping(index=index.alias("Observation"))
    ((physical, body),) = got.body.items()
    assert physical == f"{index.alias('Observation')}-v1"
    server_props = body["mappings"]["properties"]
    assert server_props["num"]["properties"]["score"]["properties"]["nv"]["type"] == "double"
    assert server_props["qty"]["properties"]["value-quantity"]["type"] == "nested"
    aliases = index.client.indices.get_alias(index=physical).body[physical]["aliases"]
    assert set(aliases) == {index.alias("Observation"), index.prefix}


def test_document_holds_the_entries_given() -> None:
    entries = [TokenEntry("gender", None, "female"), TokenEntry("identifier", "urn:x", "7")]
    doc = document(("Patient", "p1"), entries, STAMP)
    assert doc["type"] == "Patient" and doc["id"] == "p1"
    assert doc["lu"] == 1704164645678
    assert doc["tok"]["gender"]["tk"] == ["c:female", "nc:female"]
    assert doc["tok"]["identifier"]["tk"] == ["c:7", "sc:urn:x|7", "s:urn:x"]
    assert doc["has"] == ["gender", "identifier"]


# -- feeding -----------------------------------------------------------------------------------


def test_apply_is_idempotent(index: ElasticsearchSearchIndex) -> None:
    batch = [update(patient(i)) for i in range(20)]
    index.apply(batch)
    index.apply(batch)
    index.refresh()
    assert index.client.count(index=index.alias("Patient"))["count"] == 20
    result = index.search(query("Patient", "gender=female&_count=100"))
    assert result.total == 10 and len(set(result.matches)) == 10
    # deleting twice, and deleting what was never indexed (also of an unknown type), is fine
    gone = [(("Patient", "p000"), None, ""), (("DicomInstance", "1.2.3"), None, "")]
    index.apply(gone)
    index.apply(gone)
    index.refresh()
    assert index.client.count(index=index.alias("Patient"))["count"] == 19
    assert index.status()["documents"] == {"Patient": 19}
    assert index.status()["cluster_status"] in ("green", "yellow")


def test_apply_raises_a_hub_error_while_down_and_succeeds_when_back(
    elasticsearch_server: str, elasticsearch_index_url: str
) -> None:
    host, port = elasticsearch_server.removeprefix("http://").split(":")
    proxy = TcpProxy(host, int(port))
    prefix = elasticsearch_index_url.rsplit("/", 1)[1]
    index = ElasticsearchSearchIndex(
        f"http://127.0.0.1:{proxy.port}/{prefix}", retries=2, backoff=0.01
    )
    try:
        index.apply([update(patient(1))])
        proxy.cut()
        started = time.monotonic()
        with pytest.raises(OutOfResources) as caught:
            index.apply([update(patient(2))])
        assert time.monotonic() - started < 10
        assert caught.value.status == 503
        with pytest.raises(OutOfResources):
            index.search(query("Patient", ""))
        with pytest.raises(OutOfResources):
            index.status()
        proxy.restore()
        index.apply([update(patient(2))])  # the projector's retry of the batch
        index.refresh()
        assert ids(index, "Patient", "_sort=_id") == ["p001", "p002"]
    finally:
        index.close()
        proxy.close()


# -- reindex -----------------------------------------------------------------------------------


def test_reindex_swaps_the_alias_while_searches_keep_answering(
    index: ElasticsearchSearchIndex,
) -> None:
    patients = [patient(i) for i in range(120)]
    index.apply([update(p) for p in patients])
    index.refresh()
    alias = index.alias("Patient")
    assert list(index.client.indices.get_alias(name=alias).body) == [f"{alias}-v1"]

    answers: list[int | None] = []
    errors: list[BaseException] = []
    stop = threading.Event()

    def searcher() -> None:
        while not stop.is_set():
            try:
                answers.append(index.search(query("Patient", "gender=female&_count=0")).total)
            except BaseException as exc:
                errors.append(exc)
            time.sleep(0.01)

    def source() -> Iterator[Any]:
        for p in patients:
            p = {**p, "birthDate": "2001-02-03"}  # the new extraction rules index birthdates
            yield update(p)
            time.sleep(0.002)  # a slow source: searches run against the old index meanwhile
        yield (("Patient", "gone"), None, "")

    thread = threading.Thread(target=searcher)
    thread.start()
    seen: list[int] = []
    try:
        counts = index.reindex(["Patient"], source(), progress=seen.append)
        time.sleep(0.1)
    finally:
        stop.set()
        thread.join()
    assert counts == {"Patient": 120}
    assert seen and seen[-1] == 120
    assert not errors
    assert len(answers) > 5 and set(answers) == {60}
    assert list(index.client.indices.get_alias(name=alias).body) == [f"{alias}-v2"]
    assert not index.client.indices.exists(index=f"{alias}-v1")
    assert len(ids(index, "Patient", "birthdate=2001-02-03&_count=500")) == 120
    # and again: v3, also reachable through the system-level alias
    index.reindex(["Patient"], iter([update(patient(1))]))
    assert list(index.client.indices.get_alias(name=alias).body) == [f"{alias}-v3"]
    assert ids(index, None, "") == ["p001"]


# -- deep paging -------------------------------------------------------------------------------


def test_deep_paging_past_max_result_window(elasticsearch_index_url: str) -> None:
    index = ElasticsearchSearchIndex(f"{elasticsearch_index_url}?max_result_window=20")
    try:
        index.apply([update(patient(i)) for i in range(57)])
        index.refresh()
        settings = index.client.indices.get_settings(index=index.alias("Patient")).body
        ((body,),) = [list(settings.values())]
        assert body["settings"]["index"]["max_result_window"] == "20"
        for qs, expected in [
            ("", sorted(f"p{i:03d}" for i in range(57))),
            ("_sort=-_id", sorted((f"p{i:03d}" for i in range(57)), reverse=True)),
            ("_sort=family,-_id", None),
        ]:
            pages: list[str] = []
            for offset in range(0, 60, 15):
                result = index.search(query("Patient", f"_count=15&_offset={offset}&{qs}"))
                assert result.total == 57
                pages += [i for _, i in result.matches]
            assert len(pages) == 57 and len(set(pages)) == 57
            if expected is not None:
                assert pages == expected, qs
            else:  # families F0..F6 ascending, ids descending within one
                keys = [(int(i[1:]) % 7, -int(i[1:])) for i in pages]
                assert keys == sorted(keys)
        # a page beyond the window without a total
        result = index.search(query("Patient", "_count=5&_offset=50&_total=none"))
        assert result.total is None and len(result.matches) == 5
    finally:
        index.close()


# -- bad input -----------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "url",
    [
        "ftp://host/pixelhub",
        "http:///nohost",
        "http://host:9200/UpperCase",
        "http://host:9200/px?unknown=1",
        "http://host:9200/px?shards=zero",
        "http://host:9200/px?timeout=soon",
    ],
)
def test_bad_urls_are_refused(url: str) -> None:
    with pytest.raises(ElasticsearchConfigError):
        parse_url(url)


def test_url_forms() -> None:
    config = parse_url("elasticsearch+https://u%40x:p%3Aw@es.example/px?api_key=k&replicas=1")
    assert config.node == "https://es.example:9200" and config.prefix == "px"
    assert config.client["basic_auth"] == ("u@x", "p:w") and config.client["api_key"] == "k"
    assert config.settings["number_of_replicas"] == 1
    assert parse_url("http://127.0.0.1:9201").prefix == "pixelhub"
    assert search_index_factory("elasticsearch+http://h/x") is ElasticsearchSearchIndex
    assert search_index_factory("http://h/x") is ElasticsearchSearchIndex


def test_bad_searches_are_refused(index: ElasticsearchSearchIndex) -> None:
    index.apply([update(patient(1))])
    index.refresh()
    registry = default_registry()
    bad = [
        Criterion(ParamRef("gender", "token"), (), modifier=None),  # no value
        Criterion(ParamRef("family", "string"), (NumberValue("eq", 1, 0.5, 1.5),)),
        Criterion(ParamRef("birthdate", "date"), (), modifier="exact"),
        Criterion(ParamRef("_id", "token"), (), modifier="text"),
    ]
    for crit in bad:
        with pytest.raises(InvalidSearch):
            index.search(SearchQuery("Patient", (crit,)))
    composite = registry.ref("Observation", "code-value-quantity")
    assert composite is not None
    with pytest.raises(InvalidSearch):
        index.search(SearchQuery("Observation", sort=(SortKey(composite),)))
    # nothing odd reaches Elasticsearch as syntax: wildcard characters are literal
    assert ids(index, "Patient", "family:contains=*") == []
    assert ids(index, "Patient", "family:contains=?amily") == []
    assert ids(index, "Patient", "family:contains=amily1") == ["p001"]


def test_a_document_elasticsearch_refuses_is_a_hub_error(index: ElasticsearchSearchIndex) -> None:
    # a write Elasticsearch refuses (an index blocked for writes: 403 per item), not retried as
    # if it were busy
    index.apply([(("Observation", "a"), [NumberEntry("x", 1.0, 0.5, 1.5)], STAMP)])
    index.client.indices.put_settings(
        index=index.alias("Observation"), settings={"index.blocks.write": True}
    )
    started = time.monotonic()
    with pytest.raises(HubError) as caught:
        index.apply([(("Observation", "b"), [NumberEntry("x", 2.0, 1.5, 2.5)], STAMP)])
    assert not isinstance(caught.value, OutOfResources)
    assert time.monotonic() - started < 5
