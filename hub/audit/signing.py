"""Checkpoint signatures with the hub's own RS384 key (RFC 7515 JWS, typ ``audit-checkpoint``).

The key is the SMART server's access-token key (``hub.smart.keys``); the distinct ``typ`` keeps a
checkpoint from ever being taken for an access token, and the reverse. Verification picks the key
by ``kid``, so checkpoints made before a key rotation stay verifiable while that key is published.
"""

from __future__ import annotations

from typing import Any

import jwt
from jwt.algorithms import RSAAlgorithm

from hub.smart.keys import KeyStore

CHECKPOINT_TYPE = "audit-checkpoint+jwt"


class KeyStoreSigner:
    def __init__(self, keys: KeyStore) -> None:
        self.keys = keys

    def prepare(self) -> None:
        """Load the key now, generating it in a new data directory (RSA key generation takes
        a second or so), rather than at the first checkpoint, inside the request it falls in."""
        self.keys.signing_key("RS384")

    def sign(self, payload: dict[str, Any]) -> str:
        key = self.keys.signing_key("RS384")
        return jwt.encode(
            payload,
            key.private_key,
            algorithm=key.alg,
            headers={"kid": key.kid, "typ": CHECKPOINT_TYPE},
        )

    def verify(self, token: str) -> dict[str, Any]:
        """The payload, checked with the published key ``kid`` or, after ``pixelhub keys
        retire``, that key's kept public half."""
        header = jwt.get_unverified_header(token)
        kid = header.get("kid")
        if not isinstance(kid, str) or header.get("typ") != CHECKPOINT_TYPE:
            raise ValueError("not an audit checkpoint")
        key = self.keys.by_kid(kid)
        if key is not None:
            public: Any = key.private_key.public_key()
            alg = key.alg
        else:
            jwk = self.keys.retired_public_key(kid)
            if jwk is None:
                raise ValueError(f"unknown key {kid}")
            public, alg = RSAAlgorithm.from_jwk(jwk), jwk["alg"]
        if header.get("alg") != alg or alg != "RS384":
            raise ValueError("unexpected algorithm")
        payload: dict[str, Any] = jwt.decode(token, public, algorithms=[alg])
        return payload
