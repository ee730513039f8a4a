"""Rotation of PixelHub's own signing keys by ``kid`` (RFC 7517 §4.5, ``/auth/jwks``):
``pixelhub keys rotate`` makes new keys active, the old ones stay published and keep verifying
until ``pixelhub keys retire``; a running hub picks the change up."""

from __future__ import annotations

import time
from pathlib import Path

import jwt
import pytest
from click.testing import CliRunner
from fastapi.testclient import TestClient

from hub.cli import main
from hub.composition import Hub
from hub.smart import KeyStore
from tests.smart.support import ClientKeys, assertion, auth_server, token_form


def cli(*args: str) -> str:
    result = CliRunner().invoke(main, list(args))
    assert result.exit_code == 0, result.output
    return result.output


def token(http: TestClient, clients: ClientKeys) -> str:
    r = http.post("/auth/token", data=token_form(assertion(clients)))
    assert r.status_code == 200, r.text
    value: str = r.json()["access_token"]
    return value


def status(http: TestClient, access_token: str) -> int:
    headers = {"Authorization": f"Bearer {access_token}"}
    return http.get("/fhir/ImagingStudy", headers=headers).status_code


def kid(access_token: str) -> str:
    value: str = jwt.get_unverified_header(access_token)["kid"]
    return value


def test_rotate_then_retire(hub: Hub, http: TestClient, clients: ClientKeys) -> None:
    auth_server(hub).keys._recheck = 0  # notice the CLI's change at once (default: within 1 s)
    data = ["--data-dir", str(hub.settings.data_dir)]
    old = token(http, clients)
    old_kid = kid(old)
    listed = cli("keys", "list", *data)
    assert f"{old_kid}\tRS384\tactive" in listed

    out = cli("keys", "rotate", "--alg", "RS384", *data)
    new_kid = out.split("active: ", 1)[1].strip()
    assert new_kid != old_kid

    new = token(http, clients)
    assert kid(new) == new_kid
    assert status(http, old) == 200  # the old key still verifies
    assert status(http, new) == 200
    published = {k["kid"] for k in http.get("/auth/jwks").json()["keys"]}
    assert {old_kid, new_kid} <= published
    listed = cli("keys", "list", *data)
    assert f"{old_kid}\tRS384\tpublished" in listed and f"{new_kid}\tRS384\tactive" in listed

    # the active key cannot be retired; the old one can, and its tokens die with it
    result = CliRunner().invoke(main, ["keys", "retire", *data, "--", new_kid])
    assert result.exit_code == 2 and "rotate first" in result.output
    cli("keys", "retire", *data, "--", old_kid)  # a kid may begin with "-"
    assert status(http, old) == 401
    assert status(http, new) == 200
    assert old_kid not in {k["kid"] for k in http.get("/auth/jwks").json()["keys"]}
    result = CliRunner().invoke(main, ["keys", "retire", *data, "--", "no-such-kid"])
    assert result.exit_code == 2


def test_rotation_survives_a_restart(tmp_path: Path) -> None:
    keys = KeyStore(tmp_path / "keys")
    before = {alg: keys.signing_key(alg).kid for alg in ("RS384", "ES384", "RS256")}
    new = keys.rotate()
    assert set(new).isdisjoint(before.values())
    again = KeyStore(tmp_path / "keys")
    assert again.signing_key("RS384").kid == new[0]
    assert again.signing_key("ES384").kid == new[1]
    assert again.id_token_key().kid == new[2]
    assert {k["kid"] for k in again.jwks()["keys"]} == set(new) | set(before.values())
    assert all(again.by_kid(k) is not None for k in before.values())
    assert (tmp_path / "keys" / "keyring.json").stat().st_mode & 0o777 == 0o600


def test_a_running_hub_notices_within_the_recheck_interval(tmp_path: Path) -> None:
    now = [0.0]
    running = KeyStore(tmp_path / "keys", clock=lambda: now[0])
    first = running.signing_key().kid
    rotated = KeyStore(tmp_path / "keys").rotate(("RS384",))[0]
    assert running.signing_key().kid == first  # checked less than a second ago
    now[0] += 1.1
    assert running.signing_key().kid == rotated
    assert running.by_kid(first) is not None


def test_a_token_seen_before_still_expires(
    hub: Hub, http: TestClient, clients: ClientKeys, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Verified tokens are remembered (the signature is checked once per token), never past
    their ``exp``."""
    access = token(http, clients)
    assert status(http, access) == 200
    exp = jwt.decode(access, options={"verify_signature": False})["exp"]
    real = time.time
    monkeypatch.setattr(time, "time", lambda: real() + (exp - real()) + 1)
    assert status(http, access) == 401
