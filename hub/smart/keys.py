"""The hub's token-signing keys and their JWKS (RFC 7517, RFC 7518 §3.1/§3.4, RFC 7638).

Three key pairs live under ``<data_dir>/keys/``: an RSA key (RS384) and a P-384 EC key (ES384),
the two algorithms SMART App Launch 2.2 ``backend-services`` names, for access tokens; and a
separate RSA key for OpenID Connect id_tokens (RS256), so no key ever signs with two algorithms.
They are generated (PKCS#8 PEM, file mode 0600, directory 0700) when first needed (``KeyStore.load``
at ``pixelhub serve`` start-up, the first token or JWKS request) and loaded afterwards. Each key's
``kid`` is its RFC 7638 thumbprint, so a token names exactly the key (and algorithm) that signed it.
"""

from __future__ import annotations

import base64
import hashlib
import json
import os
import threading
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec, rsa
from cryptography.hazmat.primitives.asymmetric.types import PrivateKeyTypes

SIGNING_ALGORITHMS = ("RS384", "ES384")  # access tokens
ID_TOKEN_ALGORITHM = "RS256"  # OpenID Connect Core §15.1: id_tokens are verifiable with RS256
_FILES = {"RS384": "rs384.pem", "ES384": "es384.pem", "RS256": "rs256-id-token.pem"}
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


def _load_or_create(path: Path, alg: str) -> rsa.RSAPrivateKey | ec.EllipticCurvePrivateKey:
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


class KeyStore:
    """The signing keys of one data directory, by ``kid``."""

    def __init__(self, keys_dir: Path) -> None:
        self._dir = keys_dir
        self._lock = threading.Lock()
        self._keys: dict[str, SigningKey] = {}
        self._by_alg: dict[str, SigningKey] = {}

    def load(self) -> None:
        """Load the keys, generating those that do not exist yet."""
        with self._lock:
            if self._by_alg:
                return
            self._dir.mkdir(parents=True, exist_ok=True)
            os.chmod(self._dir, 0o700)
            for alg in (*SIGNING_ALGORITHMS, ID_TOKEN_ALGORITHM):
                private = _load_or_create(self._dir / _FILES[alg], alg)
                key = SigningKey(alg, thumbprint(public_jwk(private)), private)
                self._keys[key.kid] = key
                self._by_alg[alg] = key

    def signing_key(self, alg: str = "RS384") -> SigningKey:
        """The key that signs new tokens with ``alg``."""
        self.load()
        return self._by_alg[alg]

    def id_token_key(self) -> SigningKey:
        """The key that signs OpenID Connect id_tokens."""
        self.load()
        return self._by_alg[ID_TOKEN_ALGORITHM]

    def by_kid(self, kid: str) -> SigningKey | None:
        self.load()
        return self._keys.get(kid)

    def jwks(self) -> dict[str, Any]:
        """The public JWK Set (RFC 7517 §5)."""
        self.load()
        return {"keys": [key.jwk() for key in self._keys.values()]}
