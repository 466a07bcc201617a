"""A real HTTP server on 127.0.0.1 that fails on purpose, for the tool retry and breaker tests.

Routes (``NAME`` keeps each test's counters apart):

- ``/burst/NAME/N``: 503 for the first N requests, then 200 ``ok NAME``;
- ``/down/NAME``: 503 for ever;
- ``/limited/NAME/S``: 429 with ``Retry-After: S`` the first time, then 200;
- ``/auth/NAME``: 401 for ever (a request that needs a fix, not a retry);
- ``/slam/NAME``: closes the connection without an answer, after reading the request;
- ``/hold/NAME/S[/R]``: 503 with ``Retry-After: R`` (default 3) for S seconds after its first request,
  then 200.

Every request is counted by path (:attr:`Faults.hits`).
"""

from __future__ import annotations

import collections
import threading
import time
from http.server import BaseHTTPRequestHandler


class Faults:
    """The running server: its URL and what it was asked."""

    def __init__(self, url: str) -> None:
        self.url = url
        self.hits: collections.Counter[str] = collections.Counter()
        self.first: dict[str, float] = {}
        self.lock = threading.Lock()

    def count(self, path: str) -> int:
        """This request's number on ``path`` (1 for the first)."""
        with self.lock:
            self.hits[path] += 1
            self.first.setdefault(path, time.monotonic())
            return self.hits[path]


class Handler(BaseHTTPRequestHandler):
    """Answers by route; see the module docstring."""

    faults: Faults

    def do_GET(self) -> None:  # noqa: N802 - the name http.server calls
        self._answer()

    def do_POST(self) -> None:  # noqa: N802 - the name http.server calls
        length = int(self.headers.get("Content-Length") or 0)
        self.rfile.read(length)
        self._answer()

    def _answer(self) -> None:
        faults, path = self.faults, self.path
        number = faults.count(path)
        parts = path.strip("/").split("/")
        route, name = parts[0], parts[1] if len(parts) > 1 else ""
        if route == "burst" and number > int(parts[2]) or route in ("limited", "hold") and self._recovered(parts):
            self._send(200, f"ok {name}".encode())
        elif route == "limited":
            self._send(429, b"slow down", {"Retry-After": parts[2]})
        elif route == "hold":
            self._send(503, b"unavailable", {"Retry-After": parts[3] if len(parts) > 3 else "3"})
        elif route in ("burst", "down"):
            self._send(503, b"unavailable")
        elif route == "auth":
            self._send(401, b"bad token")
        elif route == "slam":
            self.close_connection = True
            self.connection.close()
        else:
            self._send(404, b"no such route")

    def _recovered(self, parts: list[str]) -> bool:
        if parts[0] == "limited":
            return self.faults.hits[self.path] > 1
        return time.monotonic() - self.faults.first[self.path] >= float(parts[2])

    def _send(self, status: int, body: bytes, headers: dict[str, str] | None = None) -> None:
        self.send_response(status)
        for key, value in (headers or {}).items():
            self.send_header(key, value)
        self.send_header("Content-Type", "text/plain")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, format: str, *args: object) -> None:  # noqa: A002 - http.server's signature
        """Quiet: the tests assert on what was counted."""
