import os
import stat
from pathlib import Path

import pytest

from hub.smart.users import UserStore


def test_add_authenticate_list(tmp_path: Path) -> None:
    path = tmp_path / "users.json"
    store = UserStore(path)
    user = store.add("alice", "long-password", ("clinician", "admin"), "Practitioner/123")
    assert stat.S_IMODE(os.stat(path).st_mode) == 0o600
    assert "long-password" not in path.read_text()
    other = UserStore(path)
    assert other.authenticate("alice", "long-password") == user
    assert other.authenticate("alice", "long-passwore") is None
    assert other.authenticate("bob", "long-password") is None
    assert [u.username for u in other.list()] == ["alice"]


@pytest.mark.parametrize(
    ("name", "password", "roles", "fhir_user", "message"),
    [
        ("a b", "long-password", ("clinician",), "Practitioner/1", "user names"),
        ("alice", "short", ("clinician",), "Practitioner/1", "8 characters"),
        ("alice", "long-password", ("root",), "Practitioner/1", "roles"),
        ("alice", "long-password", (), "Practitioner/1", "roles"),
        ("alice", "long-password", ("clinician",), "Observation/1", "fhirUser"),
        ("alice", "long-password", ("clinician",), "http://x/Practitioner/1", "fhirUser"),
    ],
)
def test_refused(
    tmp_path: Path,
    name: str,
    password: str,
    roles: tuple[str, ...],
    fhir_user: str,
    message: str,
) -> None:
    with pytest.raises(ValueError, match=message):
        UserStore(tmp_path / "u.json").add(name, password, roles, fhir_user)


def test_no_duplicates(tmp_path: Path) -> None:
    store = UserStore(tmp_path / "u.json")
    store.add("alice", "long-password", ("auditor",), "Practitioner/1")
    with pytest.raises(ValueError, match="exists"):
        store.add("alice", "other-password", ("auditor",), "Practitioner/2")
