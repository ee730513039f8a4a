"""Local users who sign in at ``/auth/authorize`` (SMART App Launch 2.2 ``app-launch.html``).

Kept in ``<data_dir>/smart/users.json`` (mode 0600). Passwords are stored only as salted scrypt
hashes (RFC 7914). Each user has roles and the ``fhirUser`` they act as (a Practitioner, Patient,
PractitionerRole, Person or RelatedPerson reference, SMART ``scopes-and-launch-context.html``
§"fhirUser").
"""

from __future__ import annotations

import re
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

from hub.private_file import PrivateJsonFile
from hub.smart.clients import hash_secret, verify_secret

ROLES = ("clinician", "technologist", "auditor", "admin")
_FHIR_USER = re.compile(
    r"^(Practitioner|PractitionerRole|Patient|RelatedPerson|Person)/[A-Za-z0-9\-.]{1,64}$"
)
_NAME = re.compile(r"^[A-Za-z0-9_.@\-]{1,64}$")
# Verified against when a user name is unknown, so both cases cost the same scrypt.
_DUMMY_HASH = hash_secret("not-a-password")


@dataclass(frozen=True)
class User:
    username: str
    password_hash: str
    roles: tuple[str, ...]
    fhir_user: str


def _parse_users(raw: Any) -> dict[str, User]:
    return {u["username"]: User(**{**u, "roles": tuple(u["roles"])}) for u in raw["users"]}


class UserStore:
    """The local users of one data directory; re-read when the file changes."""

    def __init__(self, path: Path) -> None:
        self._file: PrivateJsonFile[dict[str, User]] = PrivateJsonFile(path, _parse_users, {})

    def _load(self) -> dict[str, User]:
        return self._file.value()

    def get(self, username: str) -> User | None:
        return self._load().get(username)

    def list(self) -> list[User]:
        return sorted(self._load().values(), key=lambda u: u.username)

    def authenticate(self, username: str, password: str) -> User | None:
        """The user when ``password`` is theirs, else ``None`` (same cost either way)."""
        user = self._load().get(username)
        ok = verify_secret(password, user.password_hash if user else _DUMMY_HASH)
        return user if user is not None and ok else None

    def add(self, username: str, password: str, roles: tuple[str, ...], fhir_user: str) -> User:
        if not _NAME.match(username):
            raise ValueError("user names are 1-64 letters, digits, '_', '.', '@' or '-'")
        if username in self._load():
            raise ValueError(f"user {username!r} exists already")
        if len(password) < 8:
            raise ValueError("passwords have at least 8 characters")
        if not roles or any(r not in ROLES for r in roles):
            raise ValueError(f"roles are some of {', '.join(ROLES)}")
        if not _FHIR_USER.match(fhir_user):
            raise ValueError("fhirUser is a reference such as Practitioner/123")
        user = User(username, hash_secret(password), roles, fhir_user)
        users = [*self._load().values(), user]
        self._file.write({"users": [asdict(u) for u in users]})
        return user
