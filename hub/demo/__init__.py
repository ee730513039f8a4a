"""``--demo`` sample data: patients with imaging from several ologies, loaded idempotently."""

from __future__ import annotations

from importlib import resources

import orjson

from hub.auth import Principal
from hub.fhir.service import FhirService
from hub.fhir.transaction import BundleProcessor

DEMO_PRINCIPAL = Principal("demo-loader", kind="anonymous-demo", scopes=frozenset({"*"}))


def load_demo_data(service: FhirService) -> int:
    """Run the sample transaction Bundle; its conditional creates make a second run a no-op."""
    raw = resources.files("hub.demo").joinpath("sample_bundle.json").read_bytes()
    BundleProcessor(service).process(DEMO_PRINCIPAL, orjson.loads(raw))
    return service.repository.count()
