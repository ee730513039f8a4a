"""Group commit in ``Hl7Ingest.handle_batch``: several messages, one transaction, one savepoint
each (HL7 v2.5.1 ch. 2 §2.9: each message still gets its own AA/AE/AR, sent after the commit)."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import orjson
import pytest

from adapters.hl7v2 import Hl7Ingest
from adapters.hl7v2._ingest import message_provenance_id
from hub.auth import Principal
from hub.composition import Hub, build_hub
from hub.config import Settings
from hub.errors import HubError, OutOfResources

PEER = Principal("RIS^HOSP", kind="peer", scopes=frozenset({"*"}))
ADMIN = Principal("test", scopes=frozenset({"*"}))


@pytest.fixture
def hub(tmp_path: Path) -> Iterator[Hub]:
    h = build_hub(Settings(data_dir=tmp_path, auth_tokens=["t"]), base_url="http://x/fhir")
    yield h
    h.close()


@pytest.fixture
def ingest(hub: Hub) -> Hl7Ingest:
    return Hl7Ingest(
        hub.service,
        principal_for=lambda sender, address: PEER,
        peers=None,
        authority_systems={},
        default_patient_system="urn:pixelhub:patient-id",
    )


def orm(
    control: str, order: str, *, mrn: str = "M1", control_code: str = "NW", obr: bool = True
) -> bytes:
    segments = [
        f"MSH|^~\\&|RIS|HOSP|PIXELHUB|HOSP|20240305101500||ORM^O01^ORM_O01|{control}|P|2.4",
        f"PID|1||{mrn}^^^HOSP^MR||Doe^Jane||19700101|F",
        f"ORC|{control_code}|{order}^RIS|F{order}^RIS||{'CM' if control_code == 'SC' else ''}",
    ]
    if obr:
        segments.append(f"OBR|1|{order}^RIS|F{order}^RIS|CTHEAD^CT Head^L")
    return ("\r".join(segments) + "\r").encode()


def codes(acks: list[list[bytes]]) -> list[str]:
    out = []
    for [ack] in acks:
        msa = next(s for s in ack.decode().split("\r") if s.startswith("MSA|"))
        out.append(msa.split("|")[1])
    return out


def resources(hub: Hub, resource_type: str) -> list[dict[str, Any]]:
    bundle = hub.service.search(ADMIN, resource_type, [])
    return [orjson.loads(orjson.dumps(e["resource"])) for e in bundle.get("entry", [])]


def test_each_message_of_a_batch_gets_its_own_ack(hub: Hub, ingest: Hl7Ingest) -> None:
    batch = [
        (orm("C1", "O1"), None),
        (orm("C2", "O2", obr=False), None),  # fails after writing its patient: AE, undone
        (orm("C3", "O3", mrn="M3"), None),
        (orm("C1", "O1"), None),  # the same MSH-10 again, within the batch: applied once
        (b"garbage", None),  # unparsable: AR, never reaches the transaction
    ]
    assert codes(ingest.handle_batch(batch)) == ["AA", "AE", "AA", "AA", "AR"]
    orders = sorted(i["value"] for r in resources(hub, "ServiceRequest") for i in r["identifier"])
    assert orders == ["FO1", "FO3", "O1", "O3"]
    assert len(resources(hub, "Patient")) == 2  # M1 (from C1) and M3; C2's write was undone
    assert len(resources(hub, "Provenance")) == 2
    changes = hub.engine.change_feed.read_since(0, 100)
    assert len(changes) == 6  # 2 patients, 2 orders, 2 provenances: no trace of C2


def test_batch_applies_in_arrival_order(hub: Hub, ingest: Hl7Ingest) -> None:
    batch = [(orm("N1", "O9"), None), (orm("N2", "O9", control_code="SC"), None)]
    assert codes(ingest.handle_batch(batch)) == ["AA", "AA"]
    [order] = resources(hub, "ServiceRequest")
    assert order["status"] == "completed"  # the status change (ORC-5 CM) applied second


def test_resent_unchanged_message_writes_nothing(hub: Hub, ingest: Hl7Ingest) -> None:
    assert codes(ingest.handle_batch([(orm("R1", "O5"), None)])) == ["AA"]
    seq = hub.engine.change_feed.last_seq()
    # Same content under a new MSH-10: applied, but nothing changed, so no new version
    # (only its own Provenance is recorded).
    assert codes(ingest.handle_batch([(orm("R2", "O5"), None)])) == ["AA"]
    new = hub.engine.change_feed.read_since(seq, 100)
    assert [c.resource_type for c in new] == ["Provenance"]
    assert codes(ingest.handle_batch([(orm("R2", "O5"), None)])) == ["AA"]  # duplicate
    assert hub.engine.change_feed.last_seq() == seq + 1


def test_failed_commit_fails_every_message(
    hub: Hub, ingest: Hl7Ingest, monkeypatch: pytest.MonkeyPatch
) -> None:
    real = hub.service.run
    depth = [0]

    def run(work: Callable[[Any], Any], *, validate: bool = True) -> Any:
        def outer(uow: Any) -> Any:
            result = work(uow)
            if depth[0] == 1:
                raise OutOfResources("disk full")  # as if COMMIT failed
            return result

        depth[0] += 1
        try:
            return real(outer, validate=validate)
        finally:
            depth[0] -= 1

    monkeypatch.setattr(hub.service, "run", run)
    batch = [(orm("F1", "O1"), None), (orm("F2", "O2"), None)]
    # OutOfResources: AR, "try again later" (ch. 2 §2.9.2); nothing of the batch is stored
    assert codes(ingest.handle_batch(batch)) == ["AR", "AR"]
    assert hub.engine.change_feed.last_seq() == 0
    monkeypatch.undo()
    assert codes(ingest.handle_batch(batch)) == ["AA", "AA"]  # the sender's retry succeeds


def test_provenance_id_is_derived_from_sender_and_control_id(hub: Hub, ingest: Hl7Ingest) -> None:
    assert codes(ingest.handle_batch([(orm("P1", "O1"), None)])) == ["AA"]
    [prov] = resources(hub, "Provenance")
    assert prov["id"] == message_provenance_id("urn:pixelhub:hl7v2:RIS^HOSP", "P1")
    assert message_provenance_id("urn:pixelhub:hl7v2:RIS^HOSP", "P1") != message_provenance_id(
        "urn:pixelhub:hl7v2:RIS^HOS", "PP1"
    )


@pytest.mark.parametrize(
    "idents",
    [
        [{"system": "urn:x", "value": "A1"}],
        [{"system": "urn:x", "value": "A,1|2\\3$4"}, {"value": "B"}, {"system": "", "value": "C"}],
    ],
)
def test_identifier_query_is_what_the_search_parser_makes(
    hub: Hub, ingest: Hl7Ingest, idents: list[dict[str, str]]
) -> None:
    def escape(v: str) -> str:
        for ch in ("\\", ",", "$", "|"):
            v = v.replace(ch, "\\" + ch)
        return v

    token = ",".join(f"{escape(i.get('system', ''))}|{escape(i['value'])}" for i in idents)
    parsed = hub.service.parse_query("Patient", [("identifier", token)], strict=True)
    built = ingest.identifier_query("Patient", idents)
    assert built.criteria == parsed.criteria


def test_engine_nests_transactions_as_savepoints(hub: Hub) -> None:
    """What group commit relies on: a nested ``transaction()`` is undone alone."""
    repo = hub.engine.repository
    patient = {"resourceType": "Patient", "active": True}
    with repo.transaction() as outer:
        outer.put("Patient", "kept", dict(patient), [])
        with pytest.raises(RuntimeError), repo.transaction() as inner:
            inner.put("Patient", "undone", dict(patient), [])
            raise RuntimeError("this message failed")
        with repo.transaction() as inner:
            inner.put("Patient", "also-kept", dict(patient), [])
    assert repo.read("Patient", "kept") is not None
    assert repo.read("Patient", "also-kept") is not None
    assert repo.read("Patient", "undone") is None


def test_no_savepoint_once_sqlite_dropped_the_transaction(hub: Hub) -> None:
    """If SQLite rolled the whole transaction back (SQLITE_FULL...), a later nested part must
    fail rather than open and commit a transaction of its own."""
    repo = hub.engine.repository
    with pytest.raises(HubError), repo.transaction() as outer:
        outer.put("Patient", "lost", {"resourceType": "Patient"}, [])
        db = hub.engine.repository._db  # type: ignore[attr-defined]
        db._writer.execute("ROLLBACK")  # what SQLite does by itself on such errors
        with repo.transaction() as inner:
            inner.put("Patient", "autocommitted", {"resourceType": "Patient"}, [])
    assert repo.read("Patient", "lost") is None
    assert repo.read("Patient", "autocommitted") is None
