"""Helpers for the SMART tests: client key pairs, client assertions, forged access tokens."""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
import time
import uuid
from dataclasses import dataclass
from typing import Any

import jwt
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec, rsa

from hub.composition import Hub
from hub.smart import AuthorizationServer, ClientStore
from hub.smart.keys import public_jwk

TOKEN_URL = "http://testserver/auth/token"
ISSUER = "http://testserver/auth"
AUD = "http://testserver/fhir"
JWT_BEARER = "urn:ietf:params:oauth:client-assertion-type:jwt-bearer"
SCOPES = ("system/ImagingStudy.rs", "system/Patient.rs", "system/DocumentReference.read")


@dataclass
class ClientKeys:
    rs_id: str  # asymmetric client with an RS384 key (kid "rs-1") and an ES384 key ("es-1")
    rsa: rsa.RSAPrivateKey
    ec: ec.EllipticCurvePrivateKey
    secret_id: str  # symmetric client
    secret: str


def auth_server(hub: Hub) -> AuthorizationServer:
    server = hub.app.state.hub.auth_server
    assert isinstance(server, AuthorizationServer)
    return server


def register_clients(hub: Hub) -> ClientKeys:
    rsa_key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    ec_key = ec.generate_private_key(ec.SECP384R1())
    jwks = {
        "keys": [
            {**public_jwk(rsa_key), "kid": "rs-1", "alg": "RS384"},
            {**public_jwk(ec_key), "kid": "es-1", "alg": "ES384"},
        ]
    }
    store = ClientStore(hub.settings.clients_file)
    asym, _ = store.add("backend", "confidential-asymmetric", SCOPES, jwks=jwks)
    sym, secret = store.add("partner", "confidential-symmetric", SCOPES)
    assert secret is not None
    return ClientKeys(asym.client_id, rsa_key, ec_key, sym.client_id, secret)


def assertion(keys: ClientKeys, *, alg: str = "RS384", **claims: Any) -> str:
    """A SMART backend-services client assertion; ``claims`` override the defaults."""
    now = int(time.time())
    body = {
        "iss": keys.rs_id,
        "sub": keys.rs_id,
        "aud": TOKEN_URL,
        "exp": now + 240,
        "jti": uuid.uuid4().hex,
        **claims,
    }
    body = {k: v for k, v in body.items() if v is not None}
    key = keys.rsa if alg == "RS384" else keys.ec
    kid = "rs-1" if alg == "RS384" else "es-1"
    return jwt.encode(body, key, algorithm=alg, headers={"kid": kid})


def token_form(client_assertion: str, scope: str = "system/ImagingStudy.rs") -> dict[str, str]:
    return {
        "grant_type": "client_credentials",
        "scope": scope,
        "client_assertion_type": JWT_BEARER,
        "client_assertion": client_assertion,
    }


def b64(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


def forge(header: dict[str, Any], claims: dict[str, Any], signer: Any) -> str:
    """A compact JWS with arbitrary header and claims; ``signer(signing_input) -> bytes``."""
    signing_input = f"{b64(json.dumps(header).encode())}.{b64(json.dumps(claims).encode())}"
    return f"{signing_input}.{b64(signer(signing_input.encode()))}"


def hs256_with(secret: bytes) -> Any:
    return lambda data: hmac.new(secret, data, hashlib.sha256).digest()


def public_pem(hub: Hub) -> bytes:
    key = auth_server(hub).keys.signing_key("RS384").private_key
    return key.public_key().public_bytes(
        serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo
    )


def access_claims(client_id: str = "someone", **claims: Any) -> dict[str, Any]:
    now = int(time.time())
    return {
        "iss": ISSUER,
        "sub": client_id,
        "aud": AUD,
        "client_id": client_id,
        "scope": "system/ImagingStudy.rs",
        "iat": now,
        "exp": now + 60,
        "jti": uuid.uuid4().hex,
        **claims,
    }
