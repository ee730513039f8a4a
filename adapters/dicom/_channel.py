"""The ``dicom`` channel: settings in, a running storage SCP out (``hub.channels`` protocol)."""

from __future__ import annotations

import socket
from pathlib import Path

from adapters.dicom._audit import AssociationAudit
from adapters.dicom._commitment import StorageCommitment
from adapters.dicom._destinations import parse_destinations
from adapters.dicom._ingest import DicomIngest
from adapters.dicom._mpps import PerformedProcedureSteps
from adapters.dicom._processes import ReceiverProcesses, process_count
from adapters.dicom._scp import AcceptTurns, StorageScp, parse_peers
from adapters.dicom._worklist import Worklist
from hub.blobs import open_blob_store
from hub.channels import ChannelContext
from hub.errors import HubError
from hub.peers import tls_server_context
from hub.ports import DicomInstanceStore, Engine


class NoDicomStore(HubError):
    hub_code = "HUB-1004"


def dicom_store_of(engine: Engine) -> DicomInstanceStore:
    """The engine's ``DicomInstanceStore`` (``engine.dicom_store``), or ``NoDicomStore``."""
    store: DicomInstanceStore | None = getattr(engine, "dicom_store", None)
    if store is None:
        raise NoDicomStore(f"The {engine.name} engine has no DICOM instance store")
    return store


def make_ingest(context: ChannelContext) -> DicomIngest:
    """The shared ingest path (C-STORE and ``pixelhub import``) for this hub."""
    return DicomIngest(
        dicom_store_of(context.engine),
        open_blob_store(context.settings.data_dir),
        notify_change=context.notify_change,
    )


class DicomChannel:
    """DICOM DIMSE on ``settings.dicom_port`` (``0`` = a free port) bound to
    ``settings.http_host``, AE title ``settings.dicom_aet``; peers from
    ``settings.dicom_allowed_peers``; DICOM TLS when ``dicom_tls_cert``/``dicom_tls_key`` are
    set (PS3.15 B.9). With ``settings.dicom_processes`` other than 1, ``start`` also starts the
    other receiving processes (``_processes``); in one of those, ``listener`` is the hub's
    listening socket and ``turns`` says when to accept on it."""

    name = "dicom"
    port_name = "dicom"

    def __init__(
        self,
        context: ChannelContext,
        *,
        listener: socket.socket | None = None,
        turns: AcceptTurns | None = None,
    ) -> None:
        settings = context.settings
        self.context = context
        worker = listener is not None
        self.processes = 1 if worker else process_count(settings.dicom_processes)
        self.receivers: ReceiverProcesses | None = None
        self.ingest = make_ingest(context)
        destinations = parse_destinations(settings.dicom_destinations)
        tls = None
        if settings.dicom_tls_cert or settings.dicom_tls_key:
            if not (settings.dicom_tls_cert and settings.dicom_tls_key):
                raise ValueError("DICOM TLS needs both dicom_tls_cert and dicom_tls_key")
            tls = tls_server_context(
                str(settings.dicom_tls_cert),
                str(settings.dicom_tls_key),
                str(settings.dicom_tls_ca) if settings.dicom_tls_ca else None,
            )
        self.scp = StorageScp(
            self.ingest,
            self.ingest.store,
            ae_title=settings.dicom_aet,
            host=settings.http_host,
            port=settings.dicom_port,
            peers=parse_peers(settings.dicom_allowed_peers, demo=settings.demo),
            spool_dir=str(Path(settings.data_dir) / "dicom-spool"),
            max_associations=settings.dicom_max_associations,
            max_pdu=settings.dicom_max_pdu,
            acse_timeout=settings.dicom_acse_timeout,
            dimse_timeout=settings.dicom_dimse_timeout,
            network_timeout=settings.dicom_network_timeout,
            ssl_context=tls,
            notify_change=context.notify_change,
            max_find_results=settings.dicom_max_find_results,
            max_retrieve_instances=settings.dicom_max_retrieve_instances,
            suboperation_timeout=settings.dicom_suboperation_timeout,
            pending_interval=settings.dicom_pending_interval,
            listener=listener,
            turns=turns,
            resume_commitments=not worker,
            destinations=destinations,
            worklist=Worklist(
                context.service,
                context.peer,
                issuer_systems=settings.dicom_issuer_systems,
                default_patient_system=settings.dicom_default_patient_system,
            ),
            mpps=PerformedProcedureSteps(
                context.service,
                context.peer,
                context.audit,
                issuer_systems=settings.dicom_issuer_systems,
                default_patient_system=settings.dicom_default_patient_system,
            ),
            commitment=StorageCommitment(
                self.ingest.store,
                ae_title=settings.dicom_aet,
                destinations=destinations,
                directory=Path(settings.data_dir) / "dicom" / "commitments",
                audit=context.audit,
                timeout=settings.dicom_dimse_timeout,
            ),
            audit=AssociationAudit(
                context.audit,
                issuer_systems=settings.dicom_issuer_systems,
                default_system=settings.dicom_default_patient_system,
            )
            if context.audit is not None and context.audit.enabled
            else None,
        )

    def start(self) -> int:
        port = self.scp.start()
        if self.processes > 1:
            self.receivers = ReceiverProcesses(self.context, self.processes - 1)
            listener = self.scp.share_listener(AcceptTurns(self.receivers.counts, 0))
            self.receivers.start(listener)
        return port

    def stop(self, timeout: float) -> None:
        if self.receivers is not None:
            self.receivers.request_stop(timeout)
        self.scp.stop(timeout)
        if self.receivers is not None:
            self.receivers.join(timeout)


def create_channel(context: ChannelContext) -> DicomChannel:
    """The ``pixelhub.channels`` entry point ``dicom``."""
    return DicomChannel(context)
