"""PixelHub's one settings object.

Precedence, highest first: CLI flags (passed as keyword arguments), ``PIXELHUB_*`` environment
variables, an optional ``pixelhub.toml`` (``--config`` / ``PIXELHUB_CONFIG``, else
``./pixelhub.toml`` when present), then the defaults of DESIGN.md's external contract.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Annotated, Any, Literal
from urllib.parse import urlsplit

from pydantic import Field, field_validator
from pydantic_settings import (
    BaseSettings,
    NoDecode,
    PydanticBaseSettingsSource,
    SettingsConfigDict,
    TomlConfigSettingsSource,
)

# The source tree the hub package sits in (where app/dist is built by default).
_REPOSITORY = Path(__file__).resolve().parents[1]


class Settings(BaseSettings):
    """Every setting of ``pixelhub serve``; README.md's configuration reference lists them."""

    model_config = SettingsConfigDict(env_prefix="PIXELHUB_", extra="forbid", validate_default=True)

    http_host: str = "127.0.0.1"
    http_port: int = Field(8080, ge=0, le=65535)
    dicom_port: int = Field(11112, ge=0, le=65535)
    dicom_aet: str = Field("PIXELHUB", min_length=1, max_length=16)
    mllp_port: int = Field(2575, ge=0, le=65535)
    data_dir: Path = Path("./pixelhub-data")
    database_url: str | None = None  # default: sqlite in data_dir
    elasticsearch_url: str | None = None
    base_url: str | None = None  # public FHIR base; default http://<host>:<port>/fhir
    demo: bool = False
    # Static bearer tokens with full access, for tests and operations (beside SMART tokens).
    auth_tokens: Annotated[list[str], NoDecode] = Field(default_factory=list)
    # SMART authorization server (issue 6): issuer URL (default: the FHIR base's origin + /auth)
    # and the lifetime of the access tokens it issues.
    smart_issuer: str | None = None
    access_token_lifetime: int = Field(300, ge=30, le=3600)
    max_body_bytes: int = Field(16 * 1024 * 1024, ge=1024)
    # A Binary posted in its native format (binary.html#rest): streamed to the blob store.
    binary_max_bytes: int = Field(2 * 1024**3, ge=1024)
    default_page_size: int = Field(50, ge=1, le=1000)
    max_page_size: int = Field(1000, ge=1, le=10000)
    referential_integrity: bool = True
    shutdown_grace_seconds: float = Field(10.0, ge=0)
    log_level: str = "info"

    # DICOM DIMSE channel (DICOM PS3.7, PS3.8). Peers: "AET" or "AET@address"; "*" only in demo.
    dicom_allowed_peers: Annotated[list[str], NoDecode] = Field(default_factory=list)
    dicom_max_associations: int = Field(20, ge=1)  # per receiving process
    # Processes receiving on the DICOM port (SO_REUSEPORT): each has its own interpreter, so
    # associations are served in parallel past the GIL. 0 = one per CPU core, at most 4.
    dicom_processes: int = Field(0, ge=0, le=64)
    # Maximum PDU we receive (PS3.8 D.1); bounds the memory one PDU can take. 0 = no limit.
    dicom_max_pdu: int = Field(1024 * 1024, ge=0)
    dicom_acse_timeout: float = Field(30.0, gt=0)
    dicom_dimse_timeout: float = Field(30.0, gt=0)
    dicom_network_timeout: float = Field(60.0, gt=0)
    dicom_tls_cert: Path | None = None
    dicom_tls_key: Path | None = None
    dicom_tls_ca: Path | None = None  # set: peers must present a certificate signed by it
    # IssuerOfPatientID (0010,0021) -> Patient.identifier.system; OIDs become urn:oid:...
    dicom_issuer_systems: dict[str, str] = Field(default_factory=dict)
    dicom_default_patient_system: str = "urn:pixelhub:patient-id"
    dicom_aggregation_quiet_seconds: float = Field(2.0, ge=0)
    dicom_max_find_results: int = Field(10000, ge=1)  # C-FIND matches before 0xA700
    # AEs we open associations to (C-MOVE destinations, storage commitment replies):
    # "AET=host:port" entries, comma-separated in the environment.
    dicom_destinations: Annotated[list[str], NoDecode] = Field(default_factory=list)
    # C-MOVE / C-GET: instances one request may retrieve (the counts are US) before 0xA702, and
    # the seconds a C-STORE sub-operation may go unanswered before it is aborted and retried once.
    dicom_max_retrieve_instances: int = Field(10000, ge=1, le=65535)
    dicom_suboperation_timeout: float = Field(5.0, gt=0)
    # C-MOVE / C-GET pending responses (optional, PS3.4 C.4.2.3.1): after the first
    # sub-operation, then at most one per this many seconds (0 = after every sub-operation).
    dicom_pending_interval: float = Field(0.1, ge=0)
    # DICOMweb STOW-RS (PS3.18 10.5): largest request body, streamed to disk as it arrives
    dicom_web_max_store_bytes: int = Field(2 * 1024**3, ge=1024)

    # HL7 v2 MLLP channel. Peers: "APP^FACILITY", optionally "@address"; "*" only in demo.
    hl7_allowed_peers: Annotated[list[str], NoDecode] = Field(default_factory=list)
    mllp_max_message_bytes: int = Field(1024 * 1024, ge=1024)
    mllp_idle_timeout: float = Field(60.0, gt=0)
    # Group commit: at most this many queued messages applied in one transaction (1 = none).
    mllp_max_batch: int = Field(32, ge=1, le=1000)
    mllp_tls_cert: Path | None = None
    mllp_tls_key: Path | None = None
    mllp_tls_ca: Path | None = None
    # CX assigning authority (PID-3.4) -> Patient.identifier.system
    hl7_authority_systems: dict[str, str] = Field(default_factory=dict)
    hl7_default_patient_system: str = "urn:pixelhub:patient-id"

    # Audit trail (issue 7): journal under <data_dir>/audit; "always" fsyncs before answering,
    # "interval" within audit_sync_interval seconds (see hub/audit/journal.py)
    audit_enabled: bool = True
    # the journal's directory [<data_dir>/audit]: one per node, so replicas that share a data
    # dir (or a store) each set their own
    audit_dir: Path | None = None
    audit_sync: Literal["interval", "always"] = "interval"
    audit_sync_interval: float = Field(0.2, gt=0, le=10)
    audit_checkpoint_every: int = Field(1000, ge=1)
    audit_retention_days: float | None = Field(None, gt=0)  # None: keep forever
    # index AuditEvents in a worker process (hub/audit/worker.py), for hosts with cores to spare
    audit_index_process: bool = False
    # Encounter-based uploads (issue 10, POST /media): the largest file, streamed to disk as it
    # arrives; the most pixels an image may declare before it is refused as a decompression
    # bomb; the ologies whose captures are also wrapped as DICOM (or a request's wrap=dicom).
    media_max_upload_bytes: int = Field(2 * 1024**3, ge=1024)
    media_max_pixels: int = Field(120_000_000, ge=10_000)
    media_dicom_wrapping: Annotated[list[str], NoDecode] = Field(default_factory=list)
    # IHE XDS.b / XDS-I.b under /xds (issue 11): this hub's Document Repository uniqueId and
    # homeCommunityId (default: made once per data dir, <data dir>/xds-ids.json), and the largest
    # SOAP request (MTOM documents are streamed to disk).
    xds_repository_unique_id: str | None = None
    xds_home_community_id: str | None = None
    xds_max_request_bytes: int = Field(2 * 1024**3, ge=1024)
    # XDS-I.b Imaging Document Source (RAD TF-3 4.68, adapters/xds/_source.py): the assigning
    # authority OID of XDS patientIds; a study's Patient needs an identifier with system
    # urn:oid:<it> to get a KOS manifest (unset: no manifests are made).
    xds_affinity_domain: str | None = None
    # Seconds without change to a study before its manifest is (re)built (0: at once).
    xds_manifest_quiet_seconds: float = Field(10.0, ge=0)
    # RAD-68: the ITI-41 endpoint of the external Document Repository that manifests are
    # published to (unset: manifests stay local), and the bearer token sent to it.
    xds_publish_url: str | None = None
    xds_publish_token: str | None = None
    # XDSSubmissionSet.sourceId (an OID) of published submissions; default: repositoryUniqueId.
    xds_source_id: str | None = None
    # Federation (issue 12, hub/federation): this hub's name in Via headers (default: made once
    # per data dir, <data dir>/federation/site-id), the most hubs a federated request may pass,
    # the purpose of use sent to partners (v3 PurposeOfUse code), the matches taken from one
    # site, and the seconds the merged result of a search stays pageable.
    federation_site_id: str | None = Field(None, pattern=r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,63}$")
    federation_max_hops: int = Field(3, ge=1, le=10)
    federation_purpose_of_use: str = Field("TREAT", pattern=r"^[A-Za-z0-9_.-]{1,32}$")
    federation_max_results: int = Field(1000, ge=1, le=10000)
    federation_page_ttl: float = Field(600.0, gt=0, le=86400)
    # Channels to serve besides HTTP (e.g. "dicom,hl7v2"); absent = every installed channel.
    channels: Annotated[list[str] | None, NoDecode] = None

    # --- SMART on FHIR (issue 6, hub/smart): sessions, CORS, an external issuer -------------
    # online_access refresh tokens live as long as the user's sign-in session (seconds).
    smart_session_lifetime: int = Field(8 * 3600, ge=60, le=7 * 24 * 3600)
    # Browser origins allowed by CORS on /fhir, /auth/token, /auth/revoke, /auth/jwks and the
    # .well-known documents, e.g. "https://app.example.org"; "*" allows any (never credentials).
    cors_origins: Annotated[list[str], NoDecode] = Field(default_factory=list)
    # Also accept access tokens of this external issuer (OIDC discovery + JWKS).
    external_issuer: str | None = None
    external_audience: str | None = None  # expected aud; default: the FHIR base URL
    external_jwks_uri: str | None = None  # default: from the issuer's discovery document
    external_scope_claim: Literal["scope", "scp"] = "scope"

    # --- the imaging timeline app at /app/ (issue 13, hub/http/app_routes.py) -----------------
    # The built front-end (``npm run build`` in app/); default: app/dist beside the hub package.
    app_dir: Path | None = None
    # The app's SMART client id (a public client registered with the redirect URI <origin>/app/);
    # with --demo, the demo registers one itself.
    app_client_id: str | None = Field(None, pattern=r"^[A-Za-z0-9._~-]{1,128}$")
    # A diagnostic viewer to open a study in, e.g. an OHIF URL with {StudyInstanceUID}.
    app_viewer_url_template: str | None = None

    @field_validator("app_viewer_url_template")
    @classmethod
    def _viewer_template(cls, v: str | None) -> str | None:
        """An absolute http(s) URL naming ``{StudyInstanceUID}`` (and optionally
        ``{PatientID}`` / ``{AccessionNumber}``)."""
        if v is None:
            return v
        parts = urlsplit(v)
        if parts.scheme not in ("http", "https") or not parts.netloc:
            raise ValueError("the viewer URL template is an absolute http(s) URL")
        if "{StudyInstanceUID}" not in v:
            raise ValueError("the viewer URL template must contain {StudyInstanceUID}")
        return v

    @field_validator("cors_origins", mode="before")
    @classmethod
    def _cors_origins(cls, v: Any) -> Any:
        """Comma-separated; each ``*`` or an origin ``scheme://host[:port]`` (RFC 6454 §6.2)."""
        if isinstance(v, str):
            v = [t.strip() for t in v.split(",") if t.strip()]
        for origin in v if isinstance(v, list) else []:
            parts = urlsplit(origin) if isinstance(origin, str) else None
            if origin != "*" and (
                parts is None
                or parts.scheme not in ("http", "https")
                or not parts.hostname
                or origin != f"{parts.scheme}://{parts.netloc}"
            ):
                raise ValueError(f"{origin!r} is not an origin like https://app.example.org")
        return v

    @field_validator("dicom_aet")
    @classmethod
    def _aet_chars(cls, v: str) -> str:
        if not v.isascii() or "\\" in v or v != v.strip():
            raise ValueError("AE title: up to 16 ASCII characters, no backslash (DICOM PS3.5 6.2)")
        return v

    @field_validator(
        "auth_tokens",
        "channels",
        "dicom_allowed_peers",
        "dicom_destinations",
        "hl7_allowed_peers",
        "media_dicom_wrapping",
        mode="before",
    )
    @classmethod
    def _comma_list(cls, v: Any) -> Any:
        if isinstance(v, str):
            return [t.strip() for t in v.split(",") if t.strip()]
        return v

    @classmethod
    def settings_customise_sources(
        cls,
        settings_cls: type[BaseSettings],
        init_settings: PydanticBaseSettingsSource,
        env_settings: PydanticBaseSettingsSource,
        dotenv_settings: PydanticBaseSettingsSource,
        file_secret_settings: PydanticBaseSettingsSource,
    ) -> tuple[PydanticBaseSettingsSource, ...]:
        toml_path = os.environ.get("PIXELHUB_CONFIG", "pixelhub.toml")
        toml = TomlConfigSettingsSource(settings_cls, toml_file=toml_path)
        return (init_settings, env_settings, toml)

    @property
    def keys_dir(self) -> Path:
        """Where the token-signing keys live."""
        return self.data_dir / "keys"

    @property
    def clients_file(self) -> Path:
        """Where the registered OAuth clients live."""
        return self.data_dir / "smart" / "clients.json"

    @property
    def users_file(self) -> Path:
        """Where the local users (who sign in to SMART apps) live."""
        return self.data_dir / "smart" / "users.json"

    def issuer(self, fhir_base: str) -> str:
        """The authorization server's issuer URL: ``smart_issuer`` or ``<FHIR base>/../auth``."""
        if self.smart_issuer:
            return self.smart_issuer.rstrip("/")
        base = fhir_base.rstrip("/")
        return f"{base.removesuffix('/fhir')}/auth"

    @property
    def app_directory(self) -> Path:
        """The built web app (``app_dir``, default ``<repository>/app/dist``)."""
        return self.app_dir or _REPOSITORY / "app" / "dist"

    @property
    def partners_file(self) -> Path:
        """Where the federation partners live (``pixelhub partners``)."""
        return self.data_dir / "federation" / "partners.json"

    @property
    def audit_directory(self) -> Path:
        """This node's audit journal (``audit_dir``, default ``<data_dir>/audit``)."""
        return self.audit_dir or self.data_dir / "audit"

    @property
    def database(self) -> str:
        return self.database_url or f"sqlite:///{self.data_dir / 'pixelhub.db'}"


def load_settings(config_file: str | None = None, **overrides: Any) -> Settings:
    """Build the settings; ``overrides`` are CLI flags (``None`` values mean "not given")."""
    given = {k: v for k, v in overrides.items() if v is not None}
    if config_file is not None:
        if not Path(config_file).is_file():
            raise FileNotFoundError(f"configuration file not found: {config_file}")
        previous = os.environ.get("PIXELHUB_CONFIG")
        os.environ["PIXELHUB_CONFIG"] = config_file
        try:
            return Settings(**given)
        finally:
            if previous is None:
                del os.environ["PIXELHUB_CONFIG"]
            else:
                os.environ["PIXELHUB_CONFIG"] = previous
    return Settings(**given)
