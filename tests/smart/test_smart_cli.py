"""``pixelhub clients`` and ``pixelhub users``: what they refuse, and what they never print."""

from __future__ import annotations

import json
from pathlib import Path

from click.testing import CliRunner

import hub.smart
from hub.cli import main


def run(*args: str, stdin: str | None = None) -> tuple[int, str]:
    result = CliRunner().invoke(main, list(args), input=stdin)
    return result.exit_code, result.output


def test_clients_add_refusals(tmp_path: Path) -> None:
    d = ["--data-dir", str(tmp_path)]
    code, out = run("clients", "add", "x", "--type", "public", "--scope", "user/*.rs", *d)
    assert code == 2 and "redirect URI" in out
    code, out = run(
        "clients", "add", "x", "--type", "confidential-symmetric", "--scope", "patient/*.rs", *d
    )
    assert code == 2 and "redirect URI" in out
    bad = tmp_path / "bad.json"
    bad.write_text("{not json")
    code, out = run(
        "clients", "add", "x", "--type", "confidential-asymmetric", "--jwks", str(bad),
        "--scope", "system/*.rs", *d,
    )  # fmt: skip
    assert code == 2 and "not a JSON file" in out
    private = tmp_path / "private.json"
    private.write_text(json.dumps({"keys": [{"kty": "RSA", "n": "x", "e": "AQAB", "d": "s"}]}))
    code, out = run(
        "clients", "add", "x", "--type", "confidential-asymmetric", "--jwks", str(private),
        "--scope", "system/*.rs", *d,
    )  # fmt: skip
    assert code == 2 and "private key" in out
    assert run("clients", "list", *d) == (0, "")


def test_clients_add_prints_the_secret_once(tmp_path: Path) -> None:
    d = ["--data-dir", str(tmp_path)]
    code, out = run(
        "clients", "add", "p", "--type", "confidential-symmetric",
        "--scope", "system/ImagingStudy.rs system/Patient.r", *d,
    )  # fmt: skip
    assert code == 0
    secret = out.split("client_secret: ", 1)[1].split()[0]
    code, listed = run("clients", "list", *d)
    assert "system/ImagingStudy.rs system/Patient.r" in listed and secret not in listed


def test_users_add_and_list(tmp_path: Path) -> None:
    d = ["--data-dir", str(tmp_path)]
    code, out = run(
        "users", "add", "ann", "--role", "auditor", "--fhir-user", "Practitioner/7", *d,
        stdin="a-long-password\na-long-password\n",
    )  # fmt: skip
    assert code == 0, out
    code, out = run(
        "users", "add", "bob", "--role", "auditor", "--fhir-user", "Practitioner/8", *d,
        stdin="short\nshort\n",
    )  # fmt: skip
    assert code == 2 and "8 characters" in out
    code, out = run("users", "list", *d)
    assert out == "ann\tauditor\tPractitioner/7\n"
    assert "a-long-password" not in (tmp_path / "smart" / "users.json").read_text()


def test_public_surface() -> None:
    assert sorted(hub.smart.__all__) == [
        "AuthorizationServer",
        "CLIENT_TYPES",
        "Client",
        "ClientStore",
        "Endpoints",
        "InvalidToken",
        "KeyStore",
        "OAuthError",
        "ResourceScope",
        "parse_scope",
        "parse_scopes",
    ]
