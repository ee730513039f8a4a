"""Partner sites, kept in ``<data_dir>/federation/partners.json`` (mode 0600) (issue 12, item 1).

A partner is another PixelHub or any FHIR R4 server that offers SMART Backend Services
(SMART App Launch 2.2 ``backend-services.html``): this hub authenticates there with a
``private_key_jwt`` client assertion signed by its federation key (ES384, made once under
``<data_dir>/federation/``; ``pixelhub partners jwks`` prints the public JWK Set the partner
registers) or by a key of the partner's own. How a local patient is named at the partner is
configured per partner (``identifier_systems``, ``system_map``, ``pixm``: see
``hub.federation.identity``).

Each partner is also an ``Organization`` and an ``Endpoint`` in the store (``mappings/
partner_to_endpoint.py``), written by ``pixelhub partners``, so apps can see which sites a
federated result may come from. The file is re-read whenever it changes, so the CLI takes
effect on a running hub.
"""

from __future__ import annotations

import re
import secrets
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

from hub.private_file import PrivateJsonFile

__all__ = ["FEDERATED_TYPES", "Partner", "PartnerStore", "check_partner_url", "site_id"]

# The types a federated search reaches (issue 12, item 2), plus Endpoint for ImagingStudy's
# retrieval endpoints (item 5).
FEDERATED_TYPES = ("ImagingStudy", "DocumentReference", "DiagnosticReport", "Patient")
_NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9.-]{0,55}")  # "partner-<name>" is a FHIR id
_LOOPBACK = ("localhost", "127.0.0.1", "::1")


def check_partner_url(url: str, what: str) -> str:
    """An absolute https URL without query or fragment (plain http only on loopback)."""
    parts = urlsplit(url)
    if parts.scheme not in ("http", "https") or not parts.hostname or parts.query or parts.fragment:
        raise ValueError(f"{what} {url!r} is not an absolute http(s) URL without query")
    if parts.scheme == "http" and parts.hostname not in _LOOPBACK:
        raise ValueError(f"{what} {url!r}: plain http is allowed only for localhost; use https")
    return url.rstrip("/")


@dataclass(frozen=True)
class Partner:
    """One partner site and how to reach it."""

    name: str
    fhir_base: str
    client_id: str
    token_url: str | None = None  # None: from <fhir_base>/.well-known/smart-configuration
    private_key: str | None = None  # PEM file; None: this hub's federation key
    timeout: float = 5.0  # seconds for the whole exchange with this partner
    enabled: bool = True
    display: str | None = None  # the Organization's name
    identifier_systems: tuple[str, ...] = ()  # patient identifier systems the partner knows
    system_map: dict[str, str] = field(default_factory=dict)  # local system -> partner's
    pixm: bool = False  # ask the partner's PIXm $ihe-pix (ITI-83) when no mapping applies

    @property
    def label(self) -> str:
        return self.display or self.name

    @property
    def resource_id(self) -> str:
        """The id of its Organization and of its Endpoint (datatypes.html#id)."""
        return f"partner-{self.name}"

    def check(self) -> Partner:
        """This partner, or ``ValueError`` naming what is wrong."""
        if not _NAME.fullmatch(self.name):
            raise ValueError(f"{self.name!r}: a partner name is 1-56 letters, digits, '.' or '-'")
        check_partner_url(self.fhir_base, "--fhir-base")
        if self.token_url is not None:
            check_partner_url(self.token_url, "--token-url")
        if not self.client_id.strip():
            raise ValueError("--client-id is required")
        if not 0.1 <= self.timeout <= 120:
            raise ValueError("--timeout is between 0.1 and 120 seconds")
        for system in (*self.identifier_systems, *self.system_map, *self.system_map.values()):
            if not system or any(c.isspace() or c == "|" for c in system):
                raise ValueError(f"{system!r} is not an identifier system URI")
        return replace(self, fhir_base=self.fhir_base.rstrip("/"))


def _partner(raw: dict[str, Any]) -> Partner:
    return Partner(
        **{
            **raw,
            "identifier_systems": tuple(raw.get("identifier_systems", ())),
            "system_map": dict(raw.get("system_map", {})),
        }
    )


def _parse_partners(raw: Any) -> dict[str, Partner]:
    return {p["name"]: _partner(p) for p in raw["partners"]}


class PartnerStore:
    """The partners of one data directory."""

    def __init__(self, path: Path) -> None:
        self._file: PrivateJsonFile[dict[str, Partner]] = PrivateJsonFile(path, _parse_partners, {})

    @property
    def key_file(self) -> Path:
        """This hub's federation key (ES384), beside the partners file."""
        return self._file.path.parent / "client-es384.pem"

    def _load(self) -> dict[str, Partner]:
        return self._file.value()

    def get(self, name: str) -> Partner | None:
        return self._load().get(name)

    def all(self) -> list[Partner]:
        return sorted(self._load().values(), key=lambda p: p.name)

    def enabled(self) -> list[Partner]:
        return [p for p in self.all() if p.enabled]

    def put(self, partner: Partner) -> Partner:
        """Add or replace ``partner`` (checked first)."""
        partner = partner.check()
        self._write({**self._load(), partner.name: partner})
        return partner

    def remove(self, name: str) -> Partner:
        partners = dict(self._load())
        if name not in partners:
            raise KeyError(name)
        removed = partners.pop(name)
        self._write(partners)
        return removed

    def _write(self, partners: dict[str, Partner]) -> None:
        rows = [asdict(p) for p in sorted(partners.values(), key=lambda p: p.name)]
        self._file.write({"partners": rows})


def site_id(directory: Path, configured: str | None) -> str:
    """This hub's name among federated hubs: ``configured``, else one made once and kept in
    ``<directory>/site-id`` (two hubs must never share one, or each would see a loop)."""
    if configured:
        return configured
    path = directory / "site-id"
    if not path.exists():
        directory.mkdir(mode=0o700, parents=True, exist_ok=True)
        try:
            with open(path, "x", encoding="ascii") as out:
                out.write(f"pixelhub-{secrets.token_hex(6)}\n")
        except FileExistsError:
            pass
    return path.read_text(encoding="ascii").strip()
