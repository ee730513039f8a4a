"""The composition root: settings in, a wired hub out (engine, policy, service, projectors, app)."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import orjson
from fastapi import FastAPI

from hub import __version__
from hub.audit import AuditIndexer, AuditTrail
from hub.audit.setup import audit_indexer, node_source, open_trail
from hub.audit.trail import ForwardedJournal
from hub.audit.worker import IndexerProcess
from hub.auth import AccessPolicy, Principal
from hub.blobs import open_blob_store
from hub.channels import (
    Channel,
    ChannelContext,
    enabled_channels,
    enabled_projectors,
    enabled_web_services,
)
from hub.config import Settings
from hub.demo import DEMO_APP_CLIENT_ID
from hub.engines import open_engine
from hub.errors import HubError
from hub.federation import (
    BackendTokens,
    FederatedSearch,
    FederationOptions,
    PartnerStore,
    site_id,
)
from hub.federation.pages import PageStore
from hub.federation.requester import PURPOSE_OF_USE
from hub.fhir.capability import capability_statement
from hub.fhir.service import FhirService, ServiceOptions
from hub.health import HealthCheck
from hub.http.app import create_app
from hub.http.app_routes import AppSite
from hub.http.binaries import NativeBinaries, installed_inspector
from hub.http.deps import HubState
from hub.http.metrics import HttpMetrics
from hub.imaging import OrderLinkingProjector, StudyAggregator
from hub.ports import Engine
from hub.projectors import Projector, ProjectorRunner, SearchIndexProjector
from hub.search.registry import SearchParameterRegistry, default_registry
from hub.smart import AuthorizationServer, ClientStore, Endpoints, KeyStore
from hub.smart.authorize import CodeFlow
from hub.smart.external import ExternalIssuer, chain_verifiers
from hub.smart.sessions import SessionStore
from hub.smart.users import UserStore


class FhirPatientDirectory:
    """The patient picker's patients, read through the FHIR service (SMART ``launch/patient``)."""

    LIMIT = 100
    _principal = Principal(
        "pixelhub-authorize", kind="peer", scopes=frozenset({"system/Patient.rs"})
    )

    def __init__(self, service: FhirService) -> None:
        self._service = service

    @staticmethod
    def _display(resource: dict[str, Any]) -> str:
        names = resource.get("name") or [{}]
        name = names[0]
        text = name.get("text") or " ".join([*name.get("given", []), name.get("family", "")])
        born = resource.get("birthDate")
        return f"{text.strip() or resource['id']}" + (f" (born {born})" if born else "")

    def list_patients(self) -> list[tuple[str, str]]:
        bundle = self._service.search(
            self._principal, "Patient", [("_count", str(self.LIMIT)), ("_sort", "family")]
        )
        resources = orjson.loads(orjson.dumps(bundle.get("entry", [])))  # entries hold Fragments
        return [(e["resource"]["id"], self._display(e["resource"])) for e in resources]

    def display(self, patient_id: str) -> str | None:
        try:
            stored = self._service.read(self._principal, "Patient", patient_id)
        except HubError:
            return None
        return self._display(orjson.loads(stored.data)) if stored.data else None


@dataclass
class Hub:
    settings: Settings
    engine: Engine
    service: FhirService
    policy: AccessPolicy
    runner: ProjectorRunner
    health: HealthCheck
    app: FastAPI
    audit: AuditTrail
    audit_indexer: AuditIndexer
    context: ChannelContext
    channels: list[Channel] = field(default_factory=list)
    audit_worker: IndexerProcess | None = None

    def start_audit(self) -> None:
        """Index audit events in a thread of this process, or in a worker process with
        ``audit_index_process``; retention always runs here, beside the journal's writer."""
        if not self.audit.enabled:
            return
        if self.settings.audit_index_process:
            self.audit_worker = IndexerProcess(
                self.settings.data_dir, self.settings.audit_directory, self.settings.database
            )
            self.audit_worker.start()
            self.audit_indexer.index = False
        self.audit_indexer.start()

    def start_channels(self) -> dict[str, int]:
        """Start every enabled protocol channel; returns ``{port_name: bound port}``."""
        ports = {}
        for factory in enabled_channels(self.settings).values():
            channel = factory(self.context)
            ports[channel.port_name] = channel.start()
            self.channels.append(channel)
        return ports

    def close(self) -> None:
        """Drain: channels first (they finish in-flight work), then projectors, then the store."""
        self.health.draining = True
        for channel in reversed(self.channels):
            channel.stop(self.settings.shutdown_grace_seconds)
        self.channels.clear()
        self.audit_indexer.stop()
        if self.audit_worker is not None:
            self.audit_worker.stop()
        self.runner.stop()
        self.audit.close()
        self.engine.close()


def _federation(settings: Settings, service: FhirService, base_url: str) -> FederatedSearch:
    """The federated search of ``/fhir/federated`` (issue 12)."""
    partners = PartnerStore(settings.partners_file)
    options = FederationOptions(
        base_url=base_url.rstrip("/"),
        site_id=site_id(settings.partners_file.parent, settings.federation_site_id),
        max_hops=settings.federation_max_hops,
        purpose_of_use=((PURPOSE_OF_USE, settings.federation_purpose_of_use),),
        max_results=settings.federation_max_results,
        page_ttl=settings.federation_page_ttl,
        default_count=settings.default_page_size,
        max_count=settings.max_page_size,
    )
    pages = PageStore(settings.partners_file.parent / "pages", settings.federation_page_ttl)
    tokens = BackendTokens(partners.key_file)
    return FederatedSearch(service, partners, tokens, options, pages=pages)


def _open_engine(settings: Settings) -> Engine:
    return open_engine(
        settings.database,
        data_dir=str(settings.data_dir),
        search_url=settings.elasticsearch_url,
    )


def _service(
    settings: Settings,
    engine: Engine,
    policy: AccessPolicy,
    base_url: str,
    registry: SearchParameterRegistry,
) -> FhirService:
    options = ServiceOptions(
        base_url=base_url,
        default_page_size=settings.default_page_size,
        max_page_size=settings.max_page_size,
        referential_integrity=settings.referential_integrity,
    )
    return FhirService(engine, policy, options, registry)


def worker_context(
    settings: Settings,
    *,
    base_url: str,
    forward_audit: Callable[[dict[str, Any]], None],
    notify_change: Callable[[], None],
) -> ChannelContext:
    """What a channel's worker process (a second DICOM receiver...) serves with: its own
    connection to the hub's store and its own FHIR service, no HTTP and no projectors; its audit
    events are journaled by the hub's process (``forward_audit``), which also runs the
    projectors that ``notify_change`` wakes."""
    engine = _open_engine(settings)
    policy = AccessPolicy(demo=settings.demo, tokens=settings.auth_tokens)
    service = _service(settings, engine, policy, base_url, default_registry())
    audit = AuditTrail(
        ForwardedJournal(settings.audit_directory, forward_audit)
        if settings.audit_enabled
        else None,
        node_source(base_url),
    )
    return ChannelContext(settings, service, engine, policy, notify_change, audit)


def build_hub(settings: Settings, *, base_url: str) -> Hub:
    """Wire one hub. ``base_url`` is the public FHIR base (known once the HTTP port is bound)."""
    settings.data_dir.mkdir(parents=True, exist_ok=True)
    engine = _open_engine(settings)
    registry = default_registry()
    auth_server = AuthorizationServer(
        KeyStore(settings.keys_dir),
        ClientStore(settings.clients_file),
        Endpoints(issuer=settings.issuer(base_url), fhir_base=base_url.rstrip("/")),
        access_token_lifetime=settings.access_token_lifetime,
    )
    verify_token: Callable[[str], dict[str, Any]] = auth_server.verify_access_token
    if settings.external_issuer:  # issue 6 item 5: our own tokens first, then the issuer's
        external = ExternalIssuer(
            settings.external_issuer,
            audience=settings.external_audience or base_url.rstrip("/"),
            scope_claim=settings.external_scope_claim,
            jwks_uri=settings.external_jwks_uri,
        )
        verify_token = chain_verifiers(auth_server.verify_access_token, external)
    policy = AccessPolicy(
        demo=settings.demo,
        tokens=settings.auth_tokens,
        verify_token=verify_token,
    )
    service = _service(settings, engine, policy, base_url, registry)
    CodeFlow(
        auth_server,
        UserStore(settings.users_file),
        patients=FhirPatientDirectory(service),
        sessions=SessionStore(settings.smart_session_lifetime),
        grants_file=settings.users_file.parent / "grants.json",
    )
    projectors: list[Projector] = (
        []
        if engine.search_index.synchronous
        else [SearchIndexProjector(engine.repository, engine.search_index)]
    )
    projectors.append(OrderLinkingProjector(service))
    dicom_store = getattr(engine, "dicom_store", None)
    if dicom_store is not None:  # DICOM instances -> ImagingStudy (issue 4)
        projectors.append(
            StudyAggregator(
                service,
                dicom_store,
                issuer_systems=settings.dicom_issuer_systems,
                default_patient_system=settings.dicom_default_patient_system,
                quiet_seconds=settings.dicom_aggregation_quiet_seconds,
            )
        )
    audit = open_trail(
        enabled=settings.audit_enabled,
        directory=settings.audit_directory,
        keys=auth_server.keys,
        base_url=base_url,
        sync=settings.audit_sync,
        sync_interval=settings.audit_sync_interval,
        checkpoint_every=settings.audit_checkpoint_every,
    )
    context = ChannelContext(settings, service, engine, policy, lambda: runner.notify(), audit)
    for make_projector in enabled_projectors(settings).values():  # adapters' own projectors
        made = make_projector(context)
        if made is not None:
            projectors.append(made)
    runner = ProjectorRunner(
        engine.change_feed, projectors, leadership=getattr(engine, "leadership", None)
    )
    indexer = audit_indexer(
        audit,
        engine,
        registry,
        runner.notify,
        retention_days=settings.audit_retention_days,
    )
    health = HealthCheck(engine, runner, audit_indexer=indexer)
    metrics = HttpMetrics(engine, runner)
    state = HubState(
        service=service,
        policy=policy,
        max_body_bytes=settings.max_body_bytes,
        capability_statement=capability_statement(
            base_url,
            registry,
            software_version=__version__,
            security=auth_server.capability_security(),
        ),
        health=health,
        metrics=metrics,
        auth_server=auth_server,
        audit=audit,
        binaries=NativeBinaries(
            open_blob_store(settings.data_dir),
            Path(settings.data_dir) / "binary-spool",
            max_bytes=settings.binary_max_bytes,
            max_json_bytes=settings.max_body_bytes,
            inspector=installed_inspector(),
        ),
    )
    state.federation = _federation(settings, service, base_url)
    web_services = [factory(context) for factory in enabled_web_services(settings).values()]
    app_site = AppSite(
        directory=settings.app_directory,
        fhir_base=base_url.rstrip("/"),
        issuer=settings.issuer(base_url),
        client_id=settings.app_client_id or (DEMO_APP_CLIENT_ID if settings.demo else None),
        viewer_url_template=settings.app_viewer_url_template,
    )
    app = create_app(
        state, cors_origins=settings.cors_origins, routers=web_services, app_site=app_site
    )
    return Hub(settings, engine, service, policy, runner, health, app, audit, indexer, context)
