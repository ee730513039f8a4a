"""``offline_access`` refresh tokens survive a restart of the hub (only their digests are kept),
rotation and reuse detection included; ``online_access`` ones end with the process's sessions."""

from __future__ import annotations

from pathlib import Path

from fastapi.testclient import TestClient

from tests.e2e.support import make_hub
from tests.smart.launch_support import exchange, setup_launch, sign_in


def _refresh(http: TestClient, client_id: str, token: str) -> tuple[int, dict[str, str]]:
    r = http.post(
        "/auth/token",
        data={"grant_type": "refresh_token", "refresh_token": token, "client_id": client_id},
    )
    return r.status_code, r.json()


def test_offline_refresh_tokens_survive_a_restart_and_stay_single_use(tmp_path: Path) -> None:
    data = tmp_path / "data"
    hub = make_hub(data)
    launch = setup_launch(hub)
    with TestClient(hub.app) as http:
        code, verifier = sign_in(
            http, launch.public_id, scope="openid fhirUser offline_access user/*.rs"
        )
        first = exchange(http, launch.public_id, code, verifier).json()["refresh_token"]
        status, body = _refresh(http, launch.public_id, first)
        assert status == 200
        second = body["refresh_token"]
        code, verifier = sign_in(
            http, launch.public_id, scope="openid fhirUser online_access user/*.rs"
        )
        online = exchange(http, launch.public_id, code, verifier).json()["refresh_token"]
    hub.close()
    saved = (data / "smart" / "grants.json").read_text()
    assert second not in saved and first not in saved  # digests only

    again = make_hub(data)
    try:
        with TestClient(again.app) as http:
            status, body = _refresh(http, launch.public_id, second)
            assert status == 200, body
            assert body["scope"].split() == ["openid", "fhirUser", "offline_access", "user/*.rs"]
            third = body["refresh_token"]
            status, body = _refresh(http, launch.public_id, first)  # already used before
            assert (status, body["error"]) == (400, "invalid_grant")
            status, _ = _refresh(http, launch.public_id, third)  # reuse revoked the family
            assert status == 400
            status, _ = _refresh(http, launch.public_id, online)  # its session ended
            assert status == 400
    finally:
        again.close()
