"""Local users who sign in at ``/auth/authorize`` (SMART App Launch 2.2 ``app-launch.html``).

Kept in ``<data_dir>/smart/users.json`` (mode 0600). Passwords are stored only as salted scrypt
hashes (RFC 7914). Each user has roles and the ``fhirUser`` they act as (a Practitioner, Patient,
PractitionerRole, Person or RelatedPerson reference, SMART ``scopes-and-launch-context.html``
§"fhirUser").
"""

from __future__ import annotations

import json
import os
import re
import threading
from dataclasses import asdict, dataclass
from pathlib import Path

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


class UserStore:
    """The local users of one data directory; re-read when the file changes."""

    def __init__(self, path: Path) -> None:
        self._path = path
        self._lock = threading.Lock()
        self._stamp: tuple[int, int] | None = None
        self._users: dict[str, User] = {}

    def _load(self) -> dict[str, User]:
        try:
            stat = self._path.stat()
        except FileNotFoundError:
            return {}
        with self._lock:
            if (stat.st_mtime_ns, stat.st_size) != self._stamp:
                raw = json.loads(self._path.read_text(encoding="utf-8"))
                self._users = {
                    u["username"]: User(**{**u, "roles": tuple(u["roles"])}) for u in raw["users"]
                }
                self._stamp = (stat.st_mtime_ns, stat.st_size)
            return self._users

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
        self._path.parent.mkdir(parents=True, exist_ok=True)
        tmp = self._path.with_suffix(".tmp")
        fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
        with os.fdopen(fd, "w", encoding="utf-8") as out:
            json.dump({"users": [asdict(u) for u in users]}, out, indent=2)
        os.replace(tmp, self._path)
        return user
