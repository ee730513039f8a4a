import json
import os
import stat
from pathlib import Path

import pytest

from hub.smart.clients import ClientStore, hash_secret, verify_secret

JWKS = {"keys": [{"kty": "EC", "crv": "P-384", "x": "AA", "y": "AA", "kid": "k"}]}


def test_secret_hashing() -> None:
    stored = hash_secret("s3cret")
    assert stored.startswith("scrypt$") and "s3cret" not in stored
    assert verify_secret("s3cret", stored)
    assert not verify_secret("s3cre", stored)
    assert hash_secret("s3cret") != stored  # salted
    assert not verify_secret("s3cret", "md5$x")
    assert not verify_secret("s3cret", "garbage")


def test_add_list_and_reload(tmp_path: Path) -> None:
    path = tmp_path / "smart" / "clients.json"
    store = ClientStore(path)
    sym, secret = store.add("b", "confidential-symmetric", ("system/ImagingStudy.rs",))
    asym, none = store.add("a", "confidential-asymmetric", ("system/*.read",), jwks=JWKS)
    assert secret and none is None
    assert stat.S_IMODE(os.stat(path).st_mode) == 0o600
    assert secret not in path.read_text()
    assert [c.name for c in store.list()] == ["a", "b"]
    other = ClientStore(path)  # another process sees them
    got = other.get(sym.client_id)
    assert got is not None and got.secret_hash and verify_secret(secret, got.secret_hash)
    assert other.get(asym.client_id) == asym
    assert other.get("unknown") is None
    # a change made elsewhere is picked up
    store.add("c", "confidential-symmetric", ("system/Patient.r",))
    assert len(other.list()) == 3
    assert json.loads(path.read_text())["clients"][0]["name"] == "b"


@pytest.mark.parametrize(
    ("kind", "scopes", "jwks", "message"),
    [
        ("confidential-symmetric", ("user/Patient.r",), None, "redirect URI"),
        ("confidential-symmetric", ("patient/Patient.r",), None, "redirect URI"),
        ("confidential-symmetric", ("openid",), None, "redirect URI"),
        ("confidential-symmetric", ("profile",), None, "not a scope"),
        ("confidential-symmetric", (), None, "at least one scope"),
        ("confidential-symmetric", ("system/Patient.r",), JWKS, "not a JWKS"),
        ("confidential-asymmetric", ("system/Patient.r",), None, "needs a JWKS"),
        ("confidential-asymmetric", ("system/Patient.r",), {"keys": []}, "non-empty"),
        (
            "confidential-asymmetric",
            ("system/Patient.r",),
            {"keys": [{**JWKS["keys"][0], "d": "secret"}]},
            "private key",
        ),
        ("confidential-asymmetric", ("system/Patient.r",), {"keys": [{"kty": "oct"}]}, "RSA or EC"),
        ("public", ("user/Patient.r",), None, "needs a redirect URI"),
        ("other", ("system/Patient.r",), None, "unknown client type"),
    ],
)
def test_refused_registrations(
    tmp_path: Path, kind: str, scopes: tuple[str, ...], jwks: object, message: str
) -> None:
    with pytest.raises(ValueError, match=message):
        ClientStore(tmp_path / "c.json").add("x", kind, scopes, jwks=jwks)  # type: ignore[arg-type]
    assert not (tmp_path / "c.json").exists()


@pytest.mark.parametrize(
    ("uris", "scopes", "message"),
    [
        (("http://app.example/cb",), ("user/*.rs",), "only for localhost"),
        (("https://app.example/cb#frag",), ("user/*.rs",), "without fragment"),
        (("/relative",), ("user/*.rs",), "absolute"),
        (("ftp://app.example/cb",), ("user/*.rs",), "absolute"),
        (("https://app.example/cb",), ("system/*.rs",), "confidential clients only"),
    ],
)
def test_refused_public_clients(
    tmp_path: Path, uris: tuple[str, ...], scopes: tuple[str, ...], message: str
) -> None:
    with pytest.raises(ValueError, match=message):
        ClientStore(tmp_path / "c.json").add("x", "public", scopes, redirect_uris=uris)


def test_public_client_with_patient_scopes(tmp_path: Path) -> None:
    """``patient/`` scopes register now that the compartment filter confines them (hub.auth)."""
    client, _ = ClientStore(tmp_path / "c.json").add(
        "app", "public", ("launch/patient", "patient/*.rs"), redirect_uris=("https://a.example/cb",)
    )
    assert "patient/*.rs" in client.scopes


def test_public_client_with_launch_scopes(tmp_path: Path) -> None:
    store = ClientStore(tmp_path / "c.json")
    scopes = ("openid", "fhirUser", "launch/patient", "offline_access", "user/*.rs")
    client, secret = store.add(
        "app", "public", scopes, redirect_uris=("https://app.example/cb", "http://127.0.0.1:8/cb")
    )
    assert secret is None
    assert ClientStore(tmp_path / "c.json").get(client.client_id) == client


def test_add_under_a_chosen_id_replaces_that_registration(tmp_path: Path) -> None:
    store = ClientStore(tmp_path / "clients.json")
    other, _ = store.add("other", "confidential-symmetric", ("system/Patient.rs",))
    uri = "http://127.0.0.1:8080/app/"
    first, secret = store.add(
        "app",
        "public",
        ("launch/patient", "patient/*.rs"),
        redirect_uris=(uri,),
        client_id="my-app",
    )
    assert first.client_id == "my-app" and secret is None
    again, _ = store.add(
        "app", "public", ("launch/patient", "patient/ImagingStudy.rs"),
        redirect_uris=("http://127.0.0.1:9090/app/",), client_id="my-app",
    )  # fmt: skip
    assert [c.client_id for c in store.list()] == ["my-app", other.client_id]
    assert store.get("my-app") == again
    for bad in ("", "has space", "x" * 129, "a/b"):
        with pytest.raises(ValueError, match="client id"):
            store.add("app", "public", ("patient/*.rs",), redirect_uris=(uri,), client_id=bad)
