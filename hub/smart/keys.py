"""The hub's token-signing keys and their JWKS (RFC 7517, RFC 7518 §3.1/§3.4, RFC 7638).

Three key pairs live under ``<data_dir>/keys/``: an RSA key (RS384) and a P-384 EC key (ES384),
the two algorithms SMART App Launch 2.2 ``backend-services`` names, for access tokens; and a
separate RSA key for OpenID Connect id_tokens (RS256), so no key ever signs with two algorithms.
They are generated (PKCS#8 PEM, file mode 0600, directory 0700) when first needed (``KeyStore.load``
at ``pixelhub serve`` start-up, the first token or JWKS request) and loaded afterwards. Each key's
``kid`` is its RFC 7638 thumbprint, so a token names exactly the key (and algorithm) that signed it.

Rotation by ``kid`` (``pixelhub keys rotate``): a new key per algorithm becomes the active one
and the key ring ``keyring.json`` records it; the keys it replaces stay in ``/auth/jwks`` and keep
verifying the tokens they signed until ``pixelhub keys retire KID`` removes them. A running hub
picks the change up within a second.
"""

from __future__ import annotations

import base64
import hashlib
import json
import os
import secrets
import threading
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass, replace
from pathlib import Path
from typing import Any

from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec, rsa
from cryptography.hazmat.primitives.asymmetric.types import PrivateKeyTypes

RETIRED_FILE = "retired-public.json"
SIGNING_ALGORITHMS = ("RS384", "ES384")  # access tokens
ID_TOKEN_ALGORITHM = "RS256"  # OpenID Connect Core §15.1: id_tokens are verifiable with RS256
_FILES = {"RS384": "rs384.pem", "ES384": "es384.pem", "RS256": "rs256-id-token.pem"}
MANIFEST = "keyring.json"  # written by the first rotation; absent: the three _FILES, all active
_REQUIRED_MEMBERS = {"RSA": ("e", "kty", "n"), "EC": ("crv", "kty", "x", "y")}


def _b64url_uint(value: int, length: int | None = None) -> str:
    size = length or max(1, (value.bit_length() + 7) // 8)
    return base64.urlsafe_b64encode(value.to_bytes(size, "big")).rstrip(b"=").decode()


def public_jwk(key: rsa.RSAPrivateKey | ec.EllipticCurvePrivateKey) -> dict[str, str]:
    """The public JWK members of ``key`` (RFC 7518 §6.2.1, §6.3.1), without ``kid``/``alg``."""
    if isinstance(key, rsa.RSAPrivateKey):
        numbers = key.public_key().public_numbers()
        return {"kty": "RSA", "n": _b64url_uint(numbers.n), "e": _b64url_uint(numbers.e)}
    point = key.public_key().public_numbers()
    size = (key.curve.key_size + 7) // 8
    return {
        "kty": "EC",
        "crv": "P-384",
        "x": _b64url_uint(point.x, size),
        "y": _b64url_uint(point.y, size),
    }


def thumbprint(jwk: dict[str, str]) -> str:
    """The RFC 7638 JWK thumbprint (SHA-256 over the required members, lexically ordered)."""
    members = {name: jwk[name] for name in _REQUIRED_MEMBERS[jwk["kty"]]}
    canonical = json.dumps(members, separators=(",", ":"), sort_keys=True).encode()
    return base64.urlsafe_b64encode(hashlib.sha256(canonical).digest()).rstrip(b"=").decode()


@dataclass(frozen=True)
class SigningKey:
    """One private signing key with its algorithm and ``kid``."""

    alg: str
    kid: str
    private_key: rsa.RSAPrivateKey | ec.EllipticCurvePrivateKey

    def jwk(self) -> dict[str, str]:
        """The public JWK as published at ``/auth/jwks``."""
        return {**public_jwk(self.private_key), "kid": self.kid, "alg": self.alg, "use": "sig"}


def _generate(alg: str) -> rsa.RSAPrivateKey | ec.EllipticCurvePrivateKey:
    if alg in ("RS384", "RS256"):
        return rsa.generate_private_key(public_exponent=65537, key_size=3072)
    return ec.generate_private_key(ec.SECP384R1())


def load_or_create_key(path: Path, alg: str) -> rsa.RSAPrivateKey | ec.EllipticCurvePrivateKey:
    """The PKCS#8 private key for ``alg`` at ``path``, generated (mode 0600) when absent."""
    if not path.exists():
        pem = _generate(alg).private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.PKCS8,
            serialization.NoEncryption(),
        )
        try:  # O_EXCL: when two processes start at once, the first key written wins
            fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        except FileExistsError:
            pass
        else:
            with os.fdopen(fd, "wb") as out:
                out.write(pem)
    loaded: PrivateKeyTypes = serialization.load_pem_private_key(path.read_bytes(), None)
    if alg in ("RS384", "RS256") and isinstance(loaded, rsa.RSAPrivateKey):
        return loaded
    if (
        alg == "ES384"
        and isinstance(loaded, ec.EllipticCurvePrivateKey)
        and isinstance(loaded.curve, ec.SECP384R1)
    ):
        return loaded
    raise ValueError(f"{path} does not hold a key for {alg}")


@dataclass(frozen=True)
class _Entry:
    """One key of the key ring: its PEM file, algorithm and whether it signs new tokens."""

    file: str
    alg: str
    active: bool


def _default_ring() -> list[_Entry]:
    return [_Entry(_FILES[alg], alg, True) for alg in (*SIGNING_ALGORITHMS, ID_TOKEN_ALGORITHM)]


class KeyStore:
    """The signing keys of one data directory, by ``kid``; picks up rotations by other
    processes (the manifest is checked at most once per ``recheck`` seconds)."""

    def __init__(
        self,
        keys_dir: Path,
        *,
        recheck: float = 1.0,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self._dir = keys_dir
        self._manifest = keys_dir / MANIFEST
        self._recheck = recheck
        self._clock = clock
        self._lock = threading.Lock()
        self._keys: dict[str, SigningKey] = {}
        self._by_alg: dict[str, SigningKey] = {}
        self._stamp: tuple[int, int] | None = None
        self._checked: float | None = None

    def _ring(self) -> list[_Entry]:
        if not self._manifest.exists():
            return _default_ring()
        raw = json.loads(self._manifest.read_text(encoding="utf-8"))
        return [_Entry(e["file"], e["alg"], bool(e["active"])) for e in raw["keys"]]

    def _manifest_stamp(self) -> tuple[int, int] | None:
        try:
            stat = self._manifest.stat()
        except FileNotFoundError:
            return None
        return (stat.st_mtime_ns, stat.st_size)

    def load(self, *, force: bool = False) -> None:
        """Load the keys, generating the initial ones that do not exist yet; reload when the
        key ring changed (checked at most once per ``recheck`` seconds unless ``force``)."""
        now = self._clock()
        if (
            not force
            and self._by_alg
            and self._checked is not None
            and now - self._checked < self._recheck
        ):
            return
        with self._lock:
            self._checked = now
            stamp = self._manifest_stamp()
            if self._by_alg and stamp == self._stamp:
                return
            self._dir.mkdir(parents=True, exist_ok=True)
            os.chmod(self._dir, 0o700)
            keys: dict[str, SigningKey] = {}
            by_alg: dict[str, SigningKey] = {}
            for entry in self._ring():
                private = load_or_create_key(self._dir / entry.file, entry.alg)
                key = SigningKey(entry.alg, thumbprint(public_jwk(private)), private)
                keys[key.kid] = key
                if entry.active:
                    by_alg[entry.alg] = key
            self._keys, self._by_alg, self._stamp = keys, by_alg, stamp

    def signing_key(self, alg: str = "RS384") -> SigningKey:
        """The key that signs new tokens with ``alg``."""
        self.load()
        return self._by_alg[alg]

    def id_token_key(self) -> SigningKey:
        """The key that signs OpenID Connect id_tokens."""
        self.load()
        return self._by_alg[ID_TOKEN_ALGORITHM]

    def by_kid(self, kid: str) -> SigningKey | None:
        """The published key ``kid`` (active or not yet retired)."""
        self.load()
        key = self._keys.get(kid)
        if key is None:  # perhaps rotated in just now by another process
            self.load()
        return self._keys.get(kid)

    def jwks(self) -> dict[str, Any]:
        """The public JWK Set (RFC 7517 §5): every published key, active or not yet retired."""
        self.load()
        return {"keys": [key.jwk() for key in self._keys.values()]}

    def listing(self) -> list[tuple[SigningKey, bool]]:
        """Every published key and whether it signs new tokens."""
        self.load(force=True)
        active = {key.kid for key in self._by_alg.values()}
        return [(key, key.kid in active) for key in self._keys.values()]

    def _write_ring(self, ring: list[_Entry]) -> None:
        tmp = self._manifest.with_suffix(".tmp")
        fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
        with os.fdopen(fd, "w", encoding="utf-8") as out:
            json.dump({"keys": [asdict(e) for e in ring]}, out, indent=2)
        os.replace(tmp, self._manifest)

    def rotate(
        self, algs: tuple[str, ...] = (*SIGNING_ALGORITHMS, ID_TOKEN_ALGORITHM)
    ) -> list[str]:
        """New active keys for ``algs``; the keys they replace stay published (in the JWKS and
        verifying the tokens they signed) until ``retire``. Returns the new ``kid`` values."""
        self.load(force=True)
        ring = self._ring()
        stamp = time.strftime("%Y%m%dT%H%M%S", time.gmtime())
        for alg in algs:
            name = f"{alg.lower()}-{stamp}-{secrets.token_hex(3)}.pem"
            load_or_create_key(self._dir / name, alg)
            ring = [replace(e, active=False) if e.alg == alg else e for e in ring]
            ring.append(_Entry(name, alg, True))
        self._write_ring(ring)
        self.load(force=True)
        return [self._by_alg[alg].kid for alg in algs]

    def retire(self, kid: str) -> None:
        """Unpublish the inactive key ``kid``: tokens it signed stop verifying."""
        self.load(force=True)
        key = self._keys.get(kid)
        if key is None:
            raise ValueError(f"no published key {kid!r}")
        if self._by_alg.get(key.alg) is key:
            raise ValueError(f"{kid!r} is the active {key.alg} key; rotate first")
        ring = self._ring()
        kept: list[_Entry] = []
        gone: list[_Entry] = []
        for entry in ring:
            private = load_or_create_key(self._dir / entry.file, entry.alg)
            (gone if thumbprint(public_jwk(private)) == kid else kept).append(entry)
        self._write_ring(kept)
        retired = self._retired()
        retired[kid] = key.jwk()  # public only: what signed audit checkpoints stays checkable
        path = self._dir / RETIRED_FILE
        path.write_text(json.dumps({"keys": list(retired.values())}, indent=1))
        for entry in gone:
            (self._dir / entry.file).unlink(missing_ok=True)
        self.load(force=True)

    def _retired(self) -> dict[str, dict[str, str]]:
        path = self._dir / RETIRED_FILE
        if not path.exists():
            return {}
        return {k["kid"]: k for k in json.loads(path.read_text())["keys"]}

    def retired_public_key(self, kid: str) -> dict[str, str] | None:
        """The public JWK of a retired key: tokens no longer verify with it, but the audit
        trail's signed checkpoints (``hub.audit.signing``) still do."""
        return self._retired().get(kid)
