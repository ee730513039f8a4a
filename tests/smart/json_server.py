"""A local HTTP server that serves JSON documents by path (a client's JWKS URL, an external
issuer's discovery document and JWKS) and counts the requests for each path."""

from __future__ import annotations

import json
import threading
from collections import Counter
from collections.abc import Iterator
from contextlib import contextmanager
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any


class JsonServer:
    def __init__(self, server: ThreadingHTTPServer) -> None:
        self._server = server
        self.documents: dict[str, Any] = {}
        self.raw: dict[str, bytes] = {}  # served as is (e.g. an oversized body)
        self.hits: Counter[str] = Counter()

    @property
    def url(self) -> str:
        port = self._server.server_address[1]
        return f"http://127.0.0.1:{port}"


@contextmanager
def json_server() -> Iterator[JsonServer]:
    holder: list[JsonServer] = []

    class Handler(BaseHTTPRequestHandler):
        def do_GET(self) -> None:
            served = holder[0]
            served.hits[self.path] += 1
            if self.path in served.raw:
                body = served.raw[self.path]
            elif self.path in served.documents:
                body = json.dumps(served.documents[self.path]).encode()
            else:
                self.send_error(404)
                return
            self.send_response(200)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        def log_message(self, format: str, *args: Any) -> None:
            pass

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    server.daemon_threads = True
    holder.append(JsonServer(server))
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield holder[0]
    finally:
        server.shutdown()
        server.server_close()
        thread.join()
