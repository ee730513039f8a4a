import os
import stat
from pathlib import Path

import jwt
import pytest

from hub.smart.keys import KeyStore, thumbprint


def test_generated_once_private_and_stable(tmp_path: Path) -> None:
    keys_dir = tmp_path / "keys"
    store = KeyStore(keys_dir)
    assert not keys_dir.exists()  # nothing happens until the keys are needed
    jwks = store.jwks()
    assert sorted(p.name for p in keys_dir.iterdir()) == [
        "es384.pem",
        "rs256-id-token.pem",
        "rs384.pem",
    ]
    for path in keys_dir.iterdir():
        assert stat.S_IMODE(os.stat(path).st_mode) == 0o600
    assert KeyStore(keys_dir).jwks() == jwks


def test_jwks_members_and_kids(tmp_path: Path) -> None:
    store = KeyStore(tmp_path)
    by_alg = {k["alg"]: k for k in store.jwks()["keys"]}
    assert set(by_alg) == {"RS384", "ES384", "RS256"}
    assert store.id_token_key().kid == by_alg["RS256"]["kid"]
    assert set(by_alg["RS384"]) == {"kty", "n", "e", "kid", "alg", "use"}
    assert set(by_alg["ES384"]) == {"kty", "crv", "x", "y", "kid", "alg", "use"}
    assert by_alg["ES384"]["crv"] == "P-384"
    for alg, jwk in by_alg.items():
        assert jwk["kid"] == thumbprint(jwk)
        assert store.by_kid(jwk["kid"]) is store.signing_key(alg)
    assert store.by_kid("nope") is None


def test_published_key_verifies_what_the_private_key_signs(tmp_path: Path) -> None:
    store = KeyStore(tmp_path)
    for key in (store.signing_key("RS384"), store.signing_key("ES384"), store.id_token_key()):
        alg = key.alg
        token = jwt.encode({"a": 1}, key.private_key, algorithm=alg)
        public = jwt.PyJWK(key.jwk()).key
        assert jwt.decode(token, public, algorithms=[alg]) == {"a": 1}


def test_rfc7638_thumbprint_example() -> None:
    # RFC 7638 §3.1
    jwk = {
        "kty": "RSA",
        "n": "0vx7agoebGcQSuuPiLJXZptN9nndrQmbXEps2aiAFbWhM78LhWx4cbbfAAtVT86zwu1RK7aPFFxuhDR1L6tSoc_BJECPebWKRXjBZCiFV4n3oknjhMstn64tZ_2W-5JsGY4Hc5n9yBXArwl93lqt7_RN5w6Cf0h4QyQ5v-65YGjQR0_FDW2QvzqY368QQMicAtaSqzs8KJZgnYb9c7d0zgdAZHzu6qMQvRL5hajrn1n91CbOpbISD08qNLyrdkt-bFTWhAI4vMQFh6WeZu0fM4lFd2NcRwr3XPksINHaQ-G_xBniIqbw0Ls1jF44-csFCur-kEgU8awapJzKnqDKgw",
        "e": "AQAB",
        "alg": "RS256",
        "kid": "2011-04-29",
    }
    assert thumbprint(jwk) == "NzbLsXh8uDCcd-6MNwXF4W_7noWXFZAfHkxZsRGC9Xs"


def test_a_wrong_key_file_is_refused(tmp_path: Path) -> None:
    KeyStore(tmp_path).load()
    (tmp_path / "rs384.pem").write_bytes((tmp_path / "es384.pem").read_bytes())
    with pytest.raises(ValueError, match="RS384"):
        KeyStore(tmp_path).load()
