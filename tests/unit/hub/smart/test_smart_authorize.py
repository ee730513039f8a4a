from pathlib import Path

import pytest

from hub.smart import AuthorizationServer, ClientStore, Endpoints, KeyStore, OAuthError
from hub.smart.authorize import AuthorizeError, CodeFlow, s256
from hub.smart.users import UserStore

VERIFIER = "v" * 50
REDIRECT = "https://app.example/cb"


class Clock:
    now = 1_000_000.0

    def __call__(self) -> float:
        return self.now


class Patients:
    def list_patients(self) -> list[tuple[str, str]]:
        return [("p1", "Maria Garcia")]

    def display(self, patient_id: str) -> str | None:
        return "Maria Garcia" if patient_id == "p1" else None


@pytest.fixture
def flow(tmp_path: Path) -> CodeFlow:
    clock = Clock()
    server = AuthorizationServer(
        KeyStore(tmp_path / "keys"),
        ClientStore(tmp_path / "clients.json"),
        Endpoints("https://hub.example/auth", "https://hub.example/fhir"),
        clock=clock,
    )
    users = UserStore(tmp_path / "users.json")
    users.add("alice", "password-1", ("clinician",), "Practitioner/1")
    return CodeFlow(server, users, patients=Patients(), clock=clock)


def _code(flow: CodeFlow) -> tuple[str, str]:
    client, _ = flow.server.clients.add(
        "app", "public", ("user/*.rs", "offline_access"), redirect_uris=(REDIRECT,)
    )
    pending = flow.begin(
        {
            "response_type": "code",
            "client_id": client.client_id,
            "redirect_uri": REDIRECT,
            "scope": "user/*.rs offline_access",
            "state": "s",
            "aud": "https://hub.example/fhir",
            "code_challenge": s256(VERIFIER),
            "code_challenge_method": "S256",
        }
    )
    assert flow.login(pending, "alice", "password-1")
    return client.client_id, flow.approve(pending)


def test_s256_rfc7636_appendix_b() -> None:
    assert (
        s256("dBjftJeZ4CVP-mB92K27uhbUJU1p1r_wW1gFWFOEjXk")
        == "E9Melhoa2OwvFrEMTJguCHaoeK1t8URWbuGJSstw-cM"
    )


def test_codes_expire_after_a_minute(flow: CodeFlow) -> None:
    client_id, code = _code(flow)
    client = flow.server.clients.get(client_id)
    assert client is not None
    flow._clock.now += 61  # type: ignore[attr-defined]
    with pytest.raises(OAuthError, match="invalid_grant"):
        flow.exchange_code(
            client, {"code": code, "redirect_uri": REDIRECT, "code_verifier": VERIFIER}
        )


def test_state_is_forgotten_once_expired(flow: CodeFlow) -> None:
    client_id, code = _code(flow)
    client = flow.server.clients.get(client_id)
    assert client is not None
    body = flow.exchange_code(
        client, {"code": code, "redirect_uri": REDIRECT, "code_verifier": VERIFIER}
    )
    assert body["refresh_token"]
    assert flow._spent_codes and flow._refresh and flow._family_jtis
    flow._clock.now += 31 * 24 * 3600  # type: ignore[attr-defined]
    _code(flow)  # approving purges
    assert not flow._spent_codes and not flow._refresh and not flow._family_jtis
    assert len(flow._codes) == 1


def test_pending_requests_expire(flow: CodeFlow) -> None:
    client, _ = flow.server.clients.add("app", "public", ("user/*.rs",), redirect_uris=(REDIRECT,))
    pending = flow.begin(
        {
            "response_type": "code",
            "client_id": client.client_id,
            "redirect_uri": REDIRECT,
            "scope": "user/*.rs",
            "state": "s",
            "aud": "https://hub.example/fhir",
            "code_challenge": s256(VERIFIER),
            "code_challenge_method": "S256",
        }
    )
    assert flow.pending(pending.id, pending.browser_secret, pending.csrf) is pending
    flow._clock.now += 601  # type: ignore[attr-defined]
    with pytest.raises(AuthorizeError):
        flow.pending(pending.id, pending.browser_secret, pending.csrf)
