import ssl
import subprocess
from pathlib import Path

import pytest

from hub.peers import peer_rules, tls_server_context


def test_peer_rules_secure_by_default() -> None:
    parse = str.upper
    assert peer_rules([], demo=False, setting="x_peers", parse=parse) == []
    assert peer_rules([" a ", "", "b"], demo=False, setting="x_peers", parse=parse) == ["A", "B"]
    assert peer_rules([], demo=True, setting="x_peers", parse=parse) is None
    assert peer_rules(["*"], demo=True, setting="x_peers", parse=parse) is None
    assert peer_rules(["a"], demo=True, setting="x_peers", parse=parse) == ["A"]
    with pytest.raises(ValueError, match='x_peers "\\*"'):
        peer_rules(["a", "*"], demo=False, setting="x_peers", parse=parse)


def test_tls_server_context(tmp_path: Path) -> None:
    subprocess.run(
        ["openssl", "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "1", "-subj",
         "/CN=localhost", "-keyout", "key.pem", "-out", "cert.pem"],
        cwd=tmp_path, check=True, capture_output=True,
    )  # fmt: skip
    cert, key = str(tmp_path / "cert.pem"), str(tmp_path / "key.pem")
    plain = tls_server_context(cert, key, None)
    assert plain.minimum_version == ssl.TLSVersion.TLSv1_2
    assert plain.verify_mode == ssl.CERT_NONE
    mutual = tls_server_context(cert, key, cert)
    assert mutual.verify_mode == ssl.CERT_REQUIRED
