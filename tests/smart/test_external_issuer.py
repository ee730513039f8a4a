"""External authorization server mode (issue 6, item 5): access tokens of a configured issuer,
found by OpenID Connect discovery, verified against its JWKS. The issuer is a local HTTP server;
the tests sign its tokens. Attacks: wrong ``iss``, wrong ``aud``, unknown ``kid``, ``alg: none``,
HS256 keyed with the public key, expired, tampered payload, a discovery document naming another
issuer."""

from __future__ import annotations

import json
import time
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import jwt
import pytest
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec, rsa
from fastapi.testclient import TestClient

from hub.composition import Hub
from hub.smart.external import ExternalIssuer
from hub.smart.keys import public_jwk
from hub.smart.server import InvalidToken
from tests.e2e.support import TOKEN, make_hub, patient, study
from tests.smart.json_server import JsonServer, json_server
from tests.smart.support import b64, forge, hs256_with

RSA_KEY = rsa.generate_private_key(public_exponent=65537, key_size=2048)
EC_KEY = ec.generate_private_key(ec.SECP256R1())
AUD = "http://testserver/fhir"


@pytest.fixture
def issuer() -> Iterator[JsonServer]:
    with json_server() as served:
        served.documents["/realms/ehr/.well-known/openid-configuration"] = {
            "issuer": f"{served.url}/realms/ehr",
            "jwks_uri": f"{served.url}/realms/ehr/certs",
        }
        served.documents["/realms/ehr/certs"] = {
            "keys": [
                {**public_jwk(RSA_KEY), "kid": "rsa-1", "alg": "RS256", "use": "sig"},
                {
                    "kty": "EC",
                    "crv": "P-256",
                    "kid": "ec-1",
                    "x": b64(EC_KEY.public_key().public_numbers().x.to_bytes(32, "big")),
                    "y": b64(EC_KEY.public_key().public_numbers().y.to_bytes(32, "big")),
                },
            ]
        }
        yield served


@pytest.fixture
def hub(tmp_path: Path, issuer: JsonServer) -> Iterator[Hub]:
    h = make_hub(tmp_path / "data", external_issuer=f"{issuer.url}/realms/ehr")
    yield h
    h.close()


def claims(issuer: JsonServer, **extra: Any) -> dict[str, Any]:
    now = int(time.time())
    body = {
        "iss": f"{issuer.url}/realms/ehr",
        "aud": AUD,
        "sub": "ehr-user-7",
        "azp": "ehr-viewer",
        "scope": "openid user/ImagingStudy.rs",
        "iat": now,
        "exp": now + 300,
        "jti": uuid.uuid4().hex,
        **extra,
    }
    return {k: v for k, v in body.items() if v is not None}


def sign(body: dict[str, Any], kid: str = "rsa-1", alg: str = "RS256") -> str:
    key = RSA_KEY if alg.startswith(("RS", "PS")) else EC_KEY
    return jwt.encode(body, key, algorithm=alg, headers={"kid": kid})


def search(http: TestClient, token: str) -> int:
    return http.get("/fhir/ImagingStudy", headers={"Authorization": f"Bearer {token}"}).status_code


@pytest.fixture
def seeded(http: TestClient) -> None:
    admin = {"Authorization": f"Bearer {TOKEN}"}
    pid = http.post("/fhir/Patient", json=patient(), headers=admin).json()["id"]
    http.post("/fhir/ImagingStudy", json=study(f"Patient/{pid}"), headers=admin)


def test_external_tokens_are_accepted(http: TestClient, issuer: JsonServer, seeded: None) -> None:
    r = http.get("/fhir/ImagingStudy", headers={"Authorization": f"Bearer {sign(claims(issuer))}"})
    assert r.status_code == 200 and r.json()["total"] == 1
    assert search(http, sign(claims(issuer), kid="ec-1", alg="ES256")) == 200
    # scopes decide: no DocumentReference scope
    token = sign(claims(issuer))
    headers = {"Authorization": f"Bearer {token}"}
    assert http.get("/fhir/DocumentReference", headers=headers).status_code == 403
    # discovery and keys were fetched once
    assert issuer.hits["/realms/ehr/.well-known/openid-configuration"] == 1
    assert issuer.hits["/realms/ehr/certs"] == 1
    # PixelHub's own tokens and static tokens still work beside them
    assert search(http, TOKEN) == 200


def test_scp_claim(tmp_path: Path, issuer: JsonServer) -> None:
    h = make_hub(
        tmp_path / "d", external_issuer=f"{issuer.url}/realms/ehr", external_scope_claim="scp"
    )
    try:
        with TestClient(h.app) as http:
            token = sign(claims(issuer, scope=None, scp=["user/ImagingStudy.rs"]))
            assert search(http, token) == 200
            assert search(http, sign(claims(issuer))) == 401  # "scope" is not the claim now
    finally:
        h.close()


def test_explicit_audience_and_jwks_uri(tmp_path: Path, issuer: JsonServer) -> None:
    h = make_hub(
        tmp_path / "d",
        external_issuer=f"{issuer.url}/realms/ehr",
        external_audience="pixelhub",
        external_jwks_uri=f"{issuer.url}/realms/ehr/certs",
    )
    try:
        with TestClient(h.app) as http:
            assert search(http, sign(claims(issuer, aud="pixelhub"))) == 200
            assert search(http, sign(claims(issuer))) == 401
            assert issuer.hits["/realms/ehr/.well-known/openid-configuration"] == 0
    finally:
        h.close()


def _pem() -> bytes:
    return RSA_KEY.public_key().public_bytes(
        serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo
    )


@pytest.mark.parametrize(
    "make",
    [
        lambda s: sign(claims(s, iss="https://evil.example/realms/ehr")),
        lambda s: sign(claims(s, aud="https://other-hub.example/fhir")),
        lambda s: sign(claims(s, aud=None)),
        lambda s: sign(claims(s), kid="rsa-unknown"),
        lambda s: sign(claims(s, exp=int(time.time()) - 120)),
        lambda s: sign(claims(s, scope=None)),
        lambda s: sign(claims(s), kid="ec-1"),  # an RSA signature under the EC key's kid
        lambda s: forge({"alg": "none", "kid": "rsa-1"}, claims(s), lambda _: b""),
        lambda s: forge({"alg": "HS256", "kid": "rsa-1"}, claims(s), hs256_with(_pem())),
        lambda s: forge({"alg": "HS256", "kid": "rsa-1"}, claims(s), hs256_with(b"secret")),
        lambda s: _tamper(sign(claims(s, scope="user/Patient.rs"))),
    ],
    ids=[
        "wrong-iss",
        "wrong-aud",
        "no-aud",
        "unknown-kid",
        "expired",
        "no-scope",
        "wrong-key-type",
        "alg-none",
        "hs256-with-public-key",
        "hs256",
        "tampered",
    ],
)
def test_attacks(http: TestClient, issuer: JsonServer, seeded: None, make: Any) -> None:
    r = http.get("/fhir/ImagingStudy", headers={"Authorization": f"Bearer {make(issuer)}"})
    assert r.status_code == 401
    assert "invalid_token" in r.headers["www-authenticate"]


def _tamper(token: str) -> str:
    header, payload, signature = token.split(".")
    body = json.loads(jwt.utils.base64url_decode(payload))
    body["scope"] = "user/*.cruds"
    return f"{header}.{b64(json.dumps(body).encode())}.{signature}"


def test_unknown_kids_refetch_at_most_once_per_interval(
    http: TestClient, issuer: JsonServer
) -> None:
    for _ in range(5):
        assert search(http, sign(claims(issuer), kid=f"made-up-{uuid.uuid4().hex}")) == 401
    assert issuer.hits["/realms/ehr/certs"] == 1


def test_the_issuer_rotates_its_keys(issuer: JsonServer) -> None:
    now = [0.0]
    verify = ExternalIssuer(f"{issuer.url}/realms/ehr", audience=AUD, clock=lambda: now[0])
    assert verify(sign(claims(issuer)))["client_id"] == "ehr-viewer"
    new_key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    issuer.documents["/realms/ehr/certs"]["keys"].append(
        {**public_jwk(new_key), "kid": "rsa-2", "alg": "RS256"}
    )
    token = jwt.encode(claims(issuer), new_key, algorithm="RS256", headers={"kid": "rsa-2"})
    with pytest.raises(InvalidToken):  # the keys were fetched just now: no refetch yet
        verify(token)
    now[0] += 31
    verified = verify(token)
    assert verified["scope"] == "openid user/ImagingStudy.rs"
    assert verified["sub"] == "ehr-user-7"


def test_discovery_naming_another_issuer_is_refused(issuer: JsonServer) -> None:
    issuer.documents["/realms/ehr/.well-known/openid-configuration"]["issuer"] = "https://evil"
    verify = ExternalIssuer(f"{issuer.url}/realms/ehr", audience=AUD)
    with pytest.raises(InvalidToken, match="another issuer"):
        verify(sign(claims(issuer)))
    assert issuer.hits["/realms/ehr/certs"] == 0


def test_issuer_down_then_up(issuer: JsonServer) -> None:
    now = [0.0]
    document = issuer.documents.pop("/realms/ehr/.well-known/openid-configuration")
    verify = ExternalIssuer(f"{issuer.url}/realms/ehr", audience=AUD, clock=lambda: now[0])
    with pytest.raises(InvalidToken, match="not available"):
        verify(sign(claims(issuer)))
    issuer.documents["/realms/ehr/.well-known/openid-configuration"] = document
    with pytest.raises(InvalidToken):  # not retried within the interval
        verify(sign(claims(issuer)))
    now[0] += 31
    assert verify(sign(claims(issuer)))["iss"] == f"{issuer.url}/realms/ehr"


def test_only_asymmetric_algorithms_can_be_configured() -> None:
    with pytest.raises(ValueError):
        ExternalIssuer("https://x", audience=AUD, algorithms=("HS256",))
