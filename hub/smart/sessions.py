"""Sign-in sessions at the authorization server, for ``online_access`` (SMART App Launch 2.2
``scopes-and-launch-context.html`` §"Scopes for requesting a refresh token").

A session starts when a user signs in on PixelHub's sign-in page (the browser keeps its id in a
cookie) and ends at sign-out (``POST /auth/logout``) or ``lifetime`` seconds after sign-in.
Refresh tokens granted with ``online_access`` are bound to the session and stop working when it
ends; ``offline_access`` refresh tokens are not bound to any session. Sessions live in this
process's memory.
"""

from __future__ import annotations

import secrets
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass

DEFAULT_SESSION_LIFETIME = 8 * 3600


@dataclass(frozen=True)
class Session:
    id: str
    username: str
    expires: float


class SessionStore:
    """The live sign-in sessions; ``on_end`` hears of every session that is ended explicitly."""

    def __init__(
        self,
        lifetime: float = DEFAULT_SESSION_LIFETIME,
        *,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self.lifetime = lifetime
        self._clock = clock
        self._lock = threading.Lock()
        self._sessions: dict[str, Session] = {}
        self.on_end: list[Callable[[str], None]] = []

    def start(self, username: str, previous: str | None = None) -> Session:
        """The session of ``username`` in a browser that holds session ``previous``: that one
        when it is still live and the same user's, else a new one (ending ``previous``)."""
        current = self.get(previous) if previous else None
        if current is not None and current.username == username:
            return current
        if current is not None:
            self.end(current.id)
        session = Session(secrets.token_urlsafe(32), username, self._clock() + self.lifetime)
        now = self._clock()
        with self._lock:
            self._sessions = {k: s for k, s in self._sessions.items() if s.expires >= now}
            self._sessions[session.id] = session
        return session

    def get(self, session_id: str) -> Session | None:
        """The live session ``session_id``, ``None`` when unknown, ended or expired."""
        with self._lock:
            session = self._sessions.get(session_id)
        return session if session is not None and session.expires >= self._clock() else None

    def active(self, session_id: str) -> bool:
        return self.get(session_id) is not None

    def end(self, session_id: str) -> bool:
        """Sign out: True when a live session ended."""
        with self._lock:
            session = self._sessions.pop(session_id, None)
        if session is None:
            return False
        for listener in self.on_end:
            listener(session_id)
        return True
