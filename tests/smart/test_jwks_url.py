"""Asymmetric clients registered with a JWKS URL (SMART App Launch 2.2
``client-confidential-asymmetric.html``): the set is fetched with a timeout and a size cap,
cached by ``kid``, refetched on an unknown ``kid`` at most once per interval; a ``jku`` header
other than the registered URL is refused."""

from __future__ import annotations

import time
import uuid
from collections.abc import Iterator
from pathlib import Path

import jwt
import pytest
from cryptography.hazmat.primitives.asymmetric import ec, rsa
from fastapi.testclient import TestClient

from hub.composition import Hub
from hub.smart import ClientStore
from hub.smart.keys import public_jwk
from hub.smart.remote_jwks import FetchError, JwksCache, RemoteJwks, fetch_url
from tests.e2e.support import make_hub
from tests.smart.json_server import JsonServer, json_server
from tests.smart.support import TOKEN_URL, auth_server, token_form

NOW = [0.0]


@pytest.fixture
def keyserver() -> Iterator[JsonServer]:
    with json_server() as served:
        yield served


@pytest.fixture
def hub(tmp_path: Path) -> Iterator[Hub]:
    h = make_hub(tmp_path / "data")
    auth_server(h).jwks_cache = JwksCache(clock=lambda: NOW[0])  # refetch at most every 30 s
    yield h
    h.close()


def signed(client_id: str, key: rsa.RSAPrivateKey | ec.EllipticCurvePrivateKey, kid: str,
           alg: str = "RS384", **header: str) -> str:  # fmt: skip
    claims = {
        "iss": client_id,
        "sub": client_id,
        "aud": TOKEN_URL,
        "exp": int(time.time()) + 120,
        "jti": uuid.uuid4().hex,
    }
    return jwt.encode(claims, key, algorithm=alg, headers={"kid": kid, **header})


def test_client_keys_from_a_jwks_url(hub: Hub, http: TestClient, keyserver: JsonServer) -> None:
    first = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    keyserver.documents["/jwks.json"] = {
        "keys": [{**public_jwk(first), "kid": "k1", "alg": "RS384"}]
    }
    url = f"{keyserver.url}/jwks.json"
    client, _ = ClientStore(hub.settings.clients_file).add(
        "hie", "confidential-asymmetric", ("system/ImagingStudy.rs",), jwks_uri=url
    )
    cid = client.client_id
    r = http.post("/auth/token", data=token_form(signed(cid, first, "k1")))
    assert r.status_code == 200, r.text
    r = http.post("/auth/token", data=token_form(signed(cid, first, "k1")))
    assert r.status_code == 200
    assert keyserver.hits["/jwks.json"] == 1  # cached by kid

    # the client rotates: a new kid triggers a refetch
    NOW[0] += 31
    second = ec.generate_private_key(ec.SECP384R1())
    keyserver.documents["/jwks.json"]["keys"].append(
        {**public_jwk(second), "kid": "k2", "alg": "ES384"}
    )
    r = http.post("/auth/token", data=token_form(signed(cid, second, "k2", "ES384")))
    assert r.status_code == 200, r.text
    assert keyserver.hits["/jwks.json"] == 2

    # made-up kids cost at most one fetch per interval
    NOW[0] += 31
    for _ in range(5):
        r = http.post("/auth/token", data=token_form(signed(cid, first, "nope")))
        assert (r.status_code, r.json()["error"]) == (401, "invalid_client")
    assert keyserver.hits["/jwks.json"] == 3

    # jku: only the registered URL
    r = http.post("/auth/token", data=token_form(signed(cid, first, "k1", jku=url)))
    assert r.status_code == 200
    evil = f"{keyserver.url}/evil.json"
    r = http.post("/auth/token", data=token_form(signed(cid, first, "k1", jku=evil)))
    assert r.status_code == 401
    assert keyserver.hits["/evil.json"] == 0

    # a key of the wrong type for the algorithm, and a forged signature, are refused
    attacker = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    r = http.post("/auth/token", data=token_form(signed(cid, attacker, "k1")))
    assert r.status_code == 401


def test_fetch_limits(keyserver: JsonServer) -> None:
    keyserver.raw["/big"] = b"{" + b" " * 300_000 + b"}"
    with pytest.raises(FetchError, match="larger than"):
        fetch_url(f"{keyserver.url}/big")
    with pytest.raises(FetchError):
        fetch_url(f"{keyserver.url}/missing")
    with pytest.raises(FetchError):  # nothing listens there: refused, not hung
        fetch_url("http://127.0.0.1:9/jwks.json", timeout=1)


def test_a_failed_refetch_keeps_the_keys(keyserver: JsonServer) -> None:
    key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    keyserver.documents["/jwks.json"] = {"keys": [{**public_jwk(key), "kid": "k1"}]}
    now = [0.0]
    remote = RemoteJwks(
        f"{keyserver.url}/jwks.json", max_age=10, min_refresh_interval=1, clock=lambda: now[0]
    )
    assert remote.key("k1") is not None
    del keyserver.documents["/jwks.json"]
    now[0] = 11  # stale: refetch fails, the old keys stay
    assert remote.key("k1") is not None
    assert keyserver.hits["/jwks.json"] == 2


def test_jwks_url_registration_checks(hub: Hub) -> None:
    store = ClientStore(hub.settings.clients_file)
    scopes = ("system/ImagingStudy.rs",)
    for bad in ("http://keys.example.org/jwks", "ftp://x/jwks", "https://x/jwks#frag", "jwks"):
        with pytest.raises(ValueError):
            store.add("c", "confidential-asymmetric", scopes, jwks_uri=bad)
    with pytest.raises(ValueError, match="one of them"):
        store.add("c", "confidential-asymmetric", scopes)
    with pytest.raises(ValueError, match="asymmetric"):
        store.add("c", "confidential-symmetric", scopes, jwks_uri="https://x/jwks")
    client, _ = store.add("c", "confidential-asymmetric", scopes, jwks_uri="https://x.org/jwks")
    assert ClientStore(hub.settings.clients_file).get(client.client_id) == client
