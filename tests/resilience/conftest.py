"""Fixtures for the tool retry and breaker tests: the failing server, the plugin that calls it."""

from __future__ import annotations

import threading
from collections.abc import Iterator
from http.server import ThreadingHTTPServer

import pytest

from tests.resilience.faults import Faults, Handler


@pytest.fixture
def faults() -> Iterator[Faults]:
    """The failing server on 127.0.0.1, stopped after the test."""
    handler = type("Handler", (Handler,), {})
    server = ThreadingHTTPServer(("127.0.0.1", 0), handler)
    server.daemon_threads = True
    handler.faults = Faults(f"http://127.0.0.1:{server.server_address[1]}")
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield handler.faults
    finally:
        server.shutdown()
        server.server_close()
        thread.join(5)
