"""JWK Sets fetched from a URL (RFC 7517 §5): a client's registered ``jwks_uri`` (SMART App
Launch 2.2 ``client-confidential-asymmetric.html`` §"Registering a client") and an external
issuer's ``jwks_uri`` (OpenID Connect Discovery 1.0 §3, RFC 8414 §2).

Every fetch has a timeout and a size cap. Keys are cached by ``kid`` for ``max_age`` seconds; a
``kid`` not in the cache triggers a refetch (key rotation at the other end), at most once per
``min_refresh_interval`` seconds per URL, so tokens naming made-up ``kid`` values cannot make
PixelHub hammer the key server. A failed fetch keeps the keys it had.
"""

from __future__ import annotations

import json
import logging
import threading
import time
import urllib.error
import urllib.request
from collections.abc import Callable
from typing import Any

log = logging.getLogger("pixelhub.smart")

FETCH_TIMEOUT = 5.0  # seconds
MAX_DOCUMENT_BYTES = 256 * 1024

Fetch = Callable[[str], bytes]


class FetchError(Exception):
    """A remote document could not be fetched or is not what it should be."""


def fetch_url(
    url: str, *, timeout: float = FETCH_TIMEOUT, limit: int = MAX_DOCUMENT_BYTES
) -> bytes:
    """GET ``url`` (``timeout`` per socket operation), at most ``limit`` bytes."""
    request = urllib.request.Request(url, headers={"Accept": "application/json"})
    try:
        with urllib.request.urlopen(request, timeout=timeout) as response:
            if response.status != 200:
                raise FetchError(f"{url}: HTTP {response.status}")
            body: bytes = response.read(limit + 1)
    except (urllib.error.URLError, OSError, ValueError) as exc:
        raise FetchError(f"{url}: {exc}") from None
    if len(body) > limit:
        raise FetchError(f"{url}: larger than {limit} bytes")
    return body


def fetch_json(url: str, fetch: Fetch = fetch_url) -> dict[str, Any]:
    """A JSON object from ``url``."""
    try:
        document = json.loads(fetch(url))
    except (ValueError, UnicodeDecodeError):
        raise FetchError(f"{url}: not JSON") from None
    if not isinstance(document, dict):
        raise FetchError(f"{url}: not a JSON object")
    return document


class RemoteJwks:
    """The keys of one JWK Set URL, by ``kid``."""

    def __init__(
        self,
        url: str,
        *,
        fetch: Fetch = fetch_url,
        max_age: float = 3600.0,
        min_refresh_interval: float = 30.0,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.url = url
        self._fetch = fetch
        self._max_age = max_age
        self._min_interval = min_refresh_interval
        self._clock = clock
        self._lock = threading.Lock()
        self._keys: dict[str, dict[str, Any]] = {}
        self._fetched: float | None = None  # when the keys were last fetched successfully
        self._tried: float | None = None  # when a fetch was last attempted

    def key(self, kid: str) -> dict[str, Any] | None:
        """The public JWK ``kid``, refetching the set when it is stale or lacks ``kid``."""
        with self._lock:
            now = self._clock()
            stale = self._fetched is None or now - self._fetched > self._max_age
            if (stale or kid not in self._keys) and (
                self._tried is None or now - self._tried >= self._min_interval
            ):
                self._tried = now
                self._refresh(now)
            return self._keys.get(kid)

    def _refresh(self, now: float) -> None:
        try:
            document = fetch_json(self.url, self._fetch)
        except FetchError as exc:
            log.warning("JWKS fetch failed: %s", exc)
            return
        keys = document.get("keys")
        if not isinstance(keys, list):
            log.warning("JWKS fetch failed: %s has no 'keys' array", self.url)
            return
        self._keys = {
            k["kid"]: k
            for k in keys
            if isinstance(k, dict) and isinstance(k.get("kid"), str) and "d" not in k
        }
        self._fetched = now


class JwksCache:
    """``RemoteJwks`` per URL, shared by every client that registered a JWKS URL."""

    def __init__(
        self,
        *,
        fetch: Fetch = fetch_url,
        min_refresh_interval: float = 30.0,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self._fetch = fetch
        self._min_interval = min_refresh_interval
        self._clock = clock
        self._lock = threading.Lock()
        self._sets: dict[str, RemoteJwks] = {}

    def key(self, url: str, kid: str) -> dict[str, Any] | None:
        with self._lock:
            remote = self._sets.get(url)
            if remote is None:
                remote = RemoteJwks(
                    url,
                    fetch=self._fetch,
                    min_refresh_interval=self._min_interval,
                    clock=self._clock,
                )
                self._sets[url] = remote
        return remote.key(kid)
