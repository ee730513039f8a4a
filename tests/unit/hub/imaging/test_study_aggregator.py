"""The study aggregator: stored instance summaries -> Patient, Endpoint, Specimen, Encounter link
and one versioned ImagingStudy per study; debounced; Flag on identity conflicts; Provenance on
replaced instances."""

from __future__ import annotations

import time
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import replace
from pathlib import Path
from typing import Any

import orjson
import pydicom
import pytest
from fhir.resources.R4B.flag import Flag
from fhir.resources.R4B.imagingstudy import ImagingStudy
from fhir.resources.R4B.provenance import Provenance
from pydicom.data import get_testdata_file

from adapters.sqlite.dicom_store import SqliteDicomStore
from hub.auth import Principal
from hub.composition import Hub
from hub.imaging.study_aggregator import StudyAggregator, study_resource_id
from hub.ports import DicomInstanceRecord
from mappings.dicom_instance import InstanceSummary, extract_instance_summary
from mappings.dicom_to_imagingstudy import dicom_to_imagingstudy
from tests.e2e.support import make_hub

FIXTURES = Path(__file__).resolve().parents[3] / "fixtures" / "dicom"
ADMIN = Principal("test", scopes=frozenset({"*"}))
ISSUERS = {"PIXELHUB-HOSP": "urn:oid:2.16.840.1.113883.19.5.1"}
DEFAULT_SYSTEM = "urn:oid:2.16.840.1.113883.19.5.2"


class Clock:
    def __init__(self) -> None:
        self.now = time.time()

    def __call__(self) -> float:
        return self.now


@pytest.fixture
def hub(tmp_path: Path) -> Iterator[Hub]:
    h = make_hub(
        tmp_path, dicom_issuer_systems=ISSUERS, dicom_default_patient_system=DEFAULT_SYSTEM
    )
    yield h
    h.close()


@pytest.fixture
def store(hub: Hub) -> SqliteDicomStore:
    found = getattr(hub.engine, "dicom_store", None)
    return found if found is not None else SqliteDicomStore(hub.engine._db)  # type: ignore[attr-defined]


@pytest.fixture
def clock() -> Clock:
    return Clock()


@pytest.fixture
def aggregator(hub: Hub, store: SqliteDicomStore, clock: Clock) -> StudyAggregator:
    return StudyAggregator(
        hub.service,
        store,
        issuer_systems=ISSUERS,
        default_patient_system=DEFAULT_SYSTEM,
        quiet_seconds=2.0,
        clock=clock,
    )


def summary_of(name: str) -> InstanceSummary:
    path = (
        FIXTURES / f"{name}.dcm"
        if not name.endswith(".dcm")
        else Path(str(get_testdata_file(name)))
    )
    return extract_instance_summary(pydicom.dcmread(path, stop_before_pixels=True))


def put(
    store: SqliteDicomStore, summary: InstanceSummary, sha: str = "a" * 64
) -> DicomInstanceRecord:
    record = DicomInstanceRecord(
        sop_instance_uid=summary.sop_instance_uid,
        study_instance_uid=summary.study_instance_uid,
        series_instance_uid=summary.series_instance_uid,
        sop_class_uid=summary.sop_class_uid,
        transfer_syntax_uid=summary.transfer_syntax_uid,
        blob_key=f"dicom/x/{sha}",
        sha256=sha,
        size=1,
        summary=summary.to_json_dict(),
        source="MODALITY@127.0.0.1",
    )
    return store.store(record).record


def read(hub: Hub, rtype: str, rid: str) -> dict[str, Any]:
    stored = hub.service.read(ADMIN, rtype, rid)
    assert stored.data is not None
    data: dict[str, Any] = orjson.loads(stored.data)
    return data


def search(hub: Hub, rtype: str, *params: tuple[str, str]) -> list[dict[str, Any]]:
    bundle = orjson.loads(orjson.dumps(hub.service.search(ADMIN, rtype, list(params))))
    return [e["resource"] for e in bundle.get("entry", [])]


def without_meta(resource: dict[str, Any]) -> dict[str, Any]:
    return {k: v for k, v in resource.items() if k != "meta"}


def test_a_study_is_built_from_its_instances(
    hub: Hub, store: SqliteDicomStore, aggregator: StudyAggregator, collect_for_validation: Any
) -> None:
    summaries = [summary_of(n) for n in ("mg-r-cc", "mg-l-cc", "mg-tomo-r-cc", "kos-mg")]
    for s in summaries:
        put(store, s)
    aggregator.flush()
    assert store.pending_studies() == []
    uid = summaries[0].study_instance_uid
    study = read(hub, "ImagingStudy", study_resource_id(uid))
    patient_ref = study["subject"]["reference"]
    expected = dicom_to_imagingstudy(
        summaries,
        study_id=study_resource_id(uid),
        patient_reference=patient_ref,
        endpoint_reference="Endpoint/pixelhub-dicomweb",
        accession_system=study["identifier"][1]["system"],
    )
    assert without_meta(study) == expected
    assert study["numberOfInstances"] == 4 and study["numberOfSeries"] == 3
    patient = read(hub, *patient_ref.split("/"))
    assert patient["identifier"][0]["value"] == summaries[0].patient_id
    endpoint = read(hub, "Endpoint", "pixelhub-dicomweb")
    assert endpoint["address"] == "http://testserver/dicomweb"
    ImagingStudy.model_validate(study)
    collect_for_validation("hub/study-aggregator/mg-study", study)
    collect_for_validation("hub/study-aggregator/mg-patient", patient)
    collect_for_validation("hub/study-aggregator/endpoint", endpoint)


def test_debounced_until_quiet_or_flushed(
    hub: Hub, store: SqliteDicomStore, aggregator: StudyAggregator, clock: Clock
) -> None:
    s = summary_of("dx-chest")
    put(store, s)
    clock.now = store.pending_studies()[0].quiet_since + 0.5
    due = aggregator.tick()
    assert due == pytest.approx(1.5)
    assert hub.engine.repository.count("ImagingStudy") == 0
    clock.now += 1.6
    assert aggregator.tick() is None
    assert hub.engine.repository.count("ImagingStudy") == 1
    # a sender that finished (association released) need not wait
    put(store, summary_of("xc-wound"))
    store.request_flush([summary_of("xc-wound").study_instance_uid])
    aggregator.tick()
    assert hub.engine.repository.count("ImagingStudy") == 2


def test_one_study_over_several_deliveries(
    hub: Hub, store: SqliteDicomStore, aggregator: StudyAggregator
) -> None:
    mg = [summary_of(n) for n in ("mg-r-cc", "mg-l-cc", "kos-mg")]
    put(store, mg[0])
    aggregator.flush()
    sid = study_resource_id(mg[0].study_instance_uid)
    assert read(hub, "ImagingStudy", sid)["numberOfInstances"] == 1
    for s in mg[1:]:  # "days later", another association
        put(store, s)
    aggregator.flush()
    study = read(hub, "ImagingStudy", sid)
    assert study["numberOfInstances"] == 3 and study["meta"]["versionId"] == "2"
    assert hub.engine.repository.count("ImagingStudy") == 1
    assert hub.engine.repository.count("Patient") == 1
    # nothing new: aggregating again writes nothing
    store.request_flush([mg[0].study_instance_uid])
    put(store, mg[0])  # identical bytes: a no-op
    aggregator.flush()
    assert read(hub, "ImagingStudy", sid)["meta"]["versionId"] == "2"


def test_conflicting_demographics_keep_the_patient_and_raise_a_flag(
    hub: Hub, store: SqliteDicomStore, aggregator: StudyAggregator, collect_for_validation: Any
) -> None:
    s = summary_of("dx-chest")
    (identifier,) = [
        i
        for i in aggregator_identifiers(s)
        if i.get("type")  # the MR identifier from PatientID
    ]
    existing = {
        "resourceType": "Patient",
        "identifier": [{"system": identifier.get("system"), "value": identifier["value"]}],
        "name": [{"family": "Somebodyelse", "given": ["Jane"]}],
        "birthDate": "1901-01-01",
    }
    created = hub.service.create(ADMIN, "Patient", existing).stored
    put(store, s)
    aggregator.flush()
    study = read(hub, "ImagingStudy", study_resource_id(s.study_instance_uid))
    assert study["subject"]["reference"] == f"Patient/{created.id}"
    patient = read(hub, "Patient", created.id)
    assert patient["name"][0]["family"] == "Somebodyelse"  # kept, never merged
    assert patient["meta"]["versionId"] == "1"
    (flag,) = search(hub, "Flag", ("patient", f"Patient/{created.id}"))
    assert "Patient.name.family" in flag["code"]["text"] and "birthDate" in flag["code"]["text"]
    Flag.model_validate(flag)
    collect_for_validation("hub/study-aggregator/identity-flag", flag)


def aggregator_identifiers(s: InstanceSummary) -> list[dict[str, Any]]:
    from mappings.dicom_to_patient import patient_identifiers

    return patient_identifiers(s, issuer_systems=ISSUERS, default_system=DEFAULT_SYSTEM)


def test_a_replaced_instance_gets_a_provenance(
    hub: Hub, store: SqliteDicomStore, aggregator: StudyAggregator, collect_for_validation: Any
) -> None:
    s = summary_of("pt-fdg")
    put(store, s)
    aggregator.flush()
    sid = study_resource_id(s.study_instance_uid)
    changed = replace(s, series_description="PET corrected")
    put(store, changed, sha="b" * 64)
    aggregator.flush()
    study = read(hub, "ImagingStudy", sid)
    assert study["meta"]["versionId"] == "2"
    assert study["series"][0]["description"] == "PET corrected"
    (provenance,) = search(hub, "Provenance", ("target", f"ImagingStudy/{sid}"))
    assert provenance["target"] == [{"reference": f"ImagingStudy/{sid}/_history/2"}]
    assert s.sop_instance_uid in provenance["activity"]["text"]
    assert provenance["entity"][0]["what"]["identifier"]["value"] == f"urn:oid:{s.sop_instance_uid}"
    Provenance.model_validate(provenance)
    collect_for_validation("hub/study-aggregator/replaced-provenance", provenance)
    assert store.pending_studies() == []


def test_order_links_survive_reaggregation(
    hub: Hub, store: SqliteDicomStore, aggregator: StudyAggregator
) -> None:
    s = summary_of("mg-r-cc")
    put(store, s)
    aggregator.flush()
    sid = study_resource_id(s.study_instance_uid)
    order = hub.service.create(
        ADMIN,
        "ServiceRequest",
        {
            "resourceType": "ServiceRequest",
            "status": "active",
            "intent": "order",
            "subject": read(hub, "ImagingStudy", sid)["subject"],
        },
    ).stored
    study = without_meta(read(hub, "ImagingStudy", sid))
    study["basedOn"] = [{"reference": f"ServiceRequest/{order.id}"}]
    hub.service.update(ADMIN, "ImagingStudy", sid, study)
    put(store, summary_of("mg-l-cc"))
    aggregator.flush()
    again = read(hub, "ImagingStudy", sid)
    assert again["basedOn"] == [{"reference": f"ServiceRequest/{order.id}"}]
    assert again["numberOfInstances"] == 2


def test_admission_id_links_an_existing_encounter(
    hub: Hub, store: SqliteDicomStore, aggregator: StudyAggregator
) -> None:
    s = summary_of("waveform_ecg.dcm")
    assert s.admission_id
    patient = hub.service.create(ADMIN, "Patient", {"resourceType": "Patient"}).stored
    encounter = hub.service.create(
        ADMIN,
        "Encounter",
        {
            "resourceType": "Encounter",
            "status": "in-progress",
            "class": {"system": "http://terminology.hl7.org/CodeSystem/v3-ActCode", "code": "IMP"},
            "identifier": [{"system": "urn:example:visit", "value": s.admission_id}],
            "subject": {"reference": f"Patient/{patient.id}"},
        },
    ).stored
    put(store, s)
    aggregator.flush()
    study = read(hub, "ImagingStudy", study_resource_id(s.study_instance_uid))
    assert study["encounter"] == {"reference": f"Encounter/{encounter.id}"}


def test_whole_slide_specimens(
    hub: Hub, store: SqliteDicomStore, aggregator: StudyAggregator, collect_for_validation: Any
) -> None:
    s = summary_of("sm-colon-he")
    put(store, s)
    aggregator.flush()
    study = read(hub, "ImagingStudy", study_resource_id(s.study_instance_uid))
    (ref,) = study["series"][0]["specimen"]
    specimen = read(hub, *ref["reference"].split("/"))
    assert specimen["identifier"][0]["value"] == s.specimens[0].identifier
    assert specimen["subject"] == study["subject"]
    collect_for_validation("hub/study-aggregator/specimen", specimen)


def test_a_large_study_is_aggregated_quickly(
    hub: Hub, store: SqliteDicomStore, aggregator: StudyAggregator
) -> None:
    base = summary_of("CT_small.dcm")

    def one(i: int) -> None:
        put(
            store,
            replace(
                base,
                sop_instance_uid=f"{base.sop_instance_uid}.{i}",
                series_instance_uid=f"{base.series_instance_uid}.{i % 5}",
                instance_number=i,
            ),
            sha=f"{i:064x}",
        )

    with ThreadPoolExecutor(16) as pool:  # concurrent senders: the store commits in groups
        list(pool.map(one, range(5000)))
    started, cpu = time.perf_counter(), time.thread_time()
    aggregator.flush()
    elapsed, cpu = time.perf_counter() - started, time.thread_time() - cpu
    study = read(hub, "ImagingStudy", study_resource_id(base.study_instance_uid))
    assert study["numberOfInstances"] == 5000 and study["numberOfSeries"] == 5
    # The issue's aim is < 5 s after the last instance. The CPU time of the aggregating thread
    # does not depend on what else the machine runs; the wall time gets a margin for shared CI.
    assert cpu < 5.0, f"5,000 instances took {cpu:.2f} s of CPU ({elapsed:.2f} s wall)"
    assert elapsed < 15.0, f"5,000 instances took {elapsed:.2f} s ({cpu:.2f} s of CPU)"
