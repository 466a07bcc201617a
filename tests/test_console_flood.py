"""A flood of connections costs the console, never the daemon: connections past the console's
limit are closed at once, a request that never finishes is cut off after a few seconds, runs
and the CLI go on meanwhile, and the log stays short. Accepts that fail for want of
descriptors are one log line, not a traceback each."""

from __future__ import annotations

import asyncio
import errno
import json
import socket
import time
from urllib.parse import urlsplit

import httpx
import pytest
from structlog.testing import CapturingLogger

from corral.console.connections import MAX_CONNECTIONS, REQUEST_DEADLINE
from corral.daemon.loopfaults import ACCEPT_FAULT, AcceptFaults
from corral.testing import CorralProject, wait_for

HELLO = "def run(ctx):\n    return 'hi'\n"
FLOOD = 300
HALF_A_REQUEST = b"GET / HTTP/1.1\r\nHost: x\r\n"


def _closed(conn: socket.socket) -> bool:
    """Whether the console closed this connection (its end read, or reset)."""
    try:
        return conn.recv(100) == b""
    except BlockingIOError:
        return False
    except OSError:
        return True


@pytest.mark.slow
def test_idle_half_requests_are_capped_and_cut_off_and_the_daemon_serves_on(corral_project: CorralProject) -> None:
    corral_project.tables["console"] = {"listen": "127.0.0.1:0"}
    corral_project.agent("hello", HELLO)
    corral_project.start_daemon()
    found = corral_project.cli_json("console")
    port = int(urlsplit(found["url"]).port or 0)
    flood = []
    try:
        for _ in range(FLOOD):
            conn = socket.create_connection(("127.0.0.1", port), timeout=5)
            conn.sendall(HALF_A_REQUEST)
            conn.setblocking(False)
            flood.append(conn)
        started = time.monotonic()
        assert corral_project.cli_json("run", "hello", "--wait")["state"] == "succeeded", "runs go on"
        assert corral_project.cli("status").returncode == 0, "and the CLI"
        time.sleep(0.5)
        held = [conn for conn in flood if not _closed(conn)]
        assert len(held) <= MAX_CONNECTIONS, f"{len(held)} connections held past the limit"
        wait_for(lambda: all(_closed(conn) for conn in held), "unfinished requests cut off", REQUEST_DEADLINE + 10)
        assert time.monotonic() - started < REQUEST_DEADLINE + 10
    finally:
        for conn in flood:
            conn.close()
    browser = httpx.Client(base_url=found["url"], follow_redirects=False, timeout=10)
    assert browser.get(found["login"]).status_code == 303 and browser.get("/").status_code == 200, "the console too"
    log = (corral_project.home / "logs" / "corral.log").read_text()
    assert len(log) < 50_000, f"{len(log)} bytes of log"
    limits = [line for line in log.splitlines() if "connection limit" in json.loads(line).get("event", "")]
    assert len(limits) == 1 and json.loads(limits[0])["limit"] == MAX_CONNECTIONS


def test_failed_accepts_are_one_log_line_with_a_count() -> None:
    log = CapturingLogger()

    async def flood() -> None:
        loop = asyncio.get_running_loop()
        loop.set_exception_handler(AcceptFaults(log))
        for _ in range(6000):
            loop.call_exception_handler({"message": ACCEPT_FAULT, "exception": OSError(errno.EMFILE, "Too many")})

    asyncio.run(flood())
    [line] = log.calls
    event, fields = line.args[0], line.kwargs
    assert "out of file descriptors" in event and fields["error"] == "Too many" and "minfds" in fields["fix"]
