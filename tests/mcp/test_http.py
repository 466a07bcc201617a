"""Tools of a Streamable HTTP MCP server, called by the daemon for a real agent.

The server is ``fault_server.py`` (the ``mcp`` SDK) on 127.0.0.1, in front of which a
fault file makes it answer 401, 429 or 503. The secret in its headers is filled in by the
daemon alone: the agent's process, its environment and the journal never hold it.
"""

from __future__ import annotations

import json
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from corral.testing import CorralProject
from tests.mcp.support import CALLER, FAULT_SERVER, call

TOKEN = "mcp-docs-token-0123456789abcdef"


class Server:
    """The fault server over HTTP in its own folder; ``faults`` is the file it obeys."""

    def __init__(self, folder: Path) -> None:
        self.folder = folder
        with socket.socket() as probe:
            probe.bind(("127.0.0.1", 0))
            self.port = probe.getsockname()[1]
        self.faults = folder / "faults"
        self.faults.write_text("")
        self.process = subprocess.Popen(
            [sys.executable, FAULT_SERVER, "http", str(self.port), "--http-faults", str(self.faults)],
            cwd=folder,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline:
            try:
                socket.create_connection(("127.0.0.1", self.port), timeout=0.2).close()
                return
            except OSError:
                time.sleep(0.05)
        raise AssertionError("the MCP fault server did not start")

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}/mcp"

    def headers_seen(self) -> list[str]:
        log = self.folder / "headers.log"
        return log.read_text().splitlines() if log.exists() else []


@pytest.fixture
def server(tmp_path: Path) -> Iterator[Server]:
    folder = tmp_path / "server"
    folder.mkdir()
    started = Server(folder)
    try:
        yield started
    finally:
        started.process.kill()
        started.process.wait(10)


def project_with(project: CorralProject, server: Server, **mcp: Any) -> None:
    project.tables["mcp.docs"] = {
        "url": server.url,
        "headers": {"Authorization": "Bearer ${secret:DOCS_TOKEN}"},
        "retries": 2,
        "backoff": "0.1s..0.2s",
        "breaker_failures": 3,
        **mcp,
    }
    project.agent("reader", CALLER, tools=["docs.*"], sandbox={"network": [f"127.0.0.1:{server.port}"]})
    stored = subprocess.run(
        [sys.executable, "-m", "corral", "secrets", "set", "DOCS_TOKEN", "--backend", "file"],
        input=TOKEN,
        text=True,
        capture_output=True,
        env=project.env,
    )
    assert stored.returncode == 0, stored.stderr


def run(project: CorralProject, calls: dict[str, tuple[str, dict[str, Any]]]) -> dict[str, Any]:
    answer = call(project, "reader", calls)
    assert answer["state"] == "succeeded", answer
    return answer


def test_the_daemon_calls_the_server_and_the_secret_never_reaches_the_agent(
    corral_project: CorralProject, server: Server
) -> None:
    project_with(corral_project, server)
    got = run(corral_project, {"echo": ("docs.echo", {"text": "hi"}), "n": ("docs.structured", {"n": 4})})
    result = got["result"]
    assert "docs.echo" in result["tools"] and "docs.delete" in result["tools"]
    assert result["echo"] == {"ok": {"result": "hi"}}
    assert result["n"] == {"ok": {"n": 4, "double": 8}}
    assert result["env_has_token"] is False
    assert f"Bearer {TOKEN}" in server.headers_seen()
    for path in corral_project.home.rglob("*"):
        if path.is_file() and path.name != "secrets.json" and not path.name.endswith(".sock"):
            assert TOKEN.encode() not in path.read_bytes(), f"{path} holds the MCP server's token"


@pytest.mark.slow
def test_401_is_not_retried_and_names_the_secret_to_fix(corral_project: CorralProject, server: Server) -> None:
    project_with(corral_project, server)
    got = run(corral_project, {"first": ("docs.echo", {"text": "x"})})
    server.faults.write_text("401\n" * 10)
    trace = corral_project.cli_json("trace", got["id"])
    assert [s["kind"] for s in trace["steps"]][:2] == ["mcp", "tool"]
    got = run(corral_project, {"denied": ("docs.echo", {"text": "x"})})
    denied = got["result"]
    assert denied["tools"] == []  # the list itself was refused: no tool is offered
    assert denied["denied"]["error"] == "unauthorized"
    assert "does not accept corral's credentials" in denied["denied"]["message"]
    steps = corral_project.cli_json("trace", got["id"])["steps"]
    listing = steps[0]
    assert listing["kind"] == "mcp" and listing["error"]["kind"] == "unauthorized"
    assert "corral secrets set DOCS_TOKEN" in listing["error"]["message"]
    assert listing["tries"] == 1


@pytest.mark.slow
def test_429_and_503_bursts_are_retried_and_503_forever_opens_the_breaker(
    corral_project: CorralProject, server: Server
) -> None:
    project_with(corral_project, server)
    server.faults.write_text("429 1\n503\n")
    started = time.monotonic()
    got = run(corral_project, {"a": ("docs.echo", {"text": "a"}), "b": ("docs.echo", {"text": "b"})})
    assert got["result"]["a"] == {"ok": {"result": "a"}}
    assert time.monotonic() - started >= 1, "the Retry-After of the 429 was not waited for"
    server.faults.write_text("503\n" * 200)
    got = run(corral_project, {f"c{i}": ("docs.echo", {"text": "c"}) for i in range(3)})
    errors = [got["result"][f"c{i}"] for i in range(3)]
    assert all("error" in e for e in errors), errors
    assert any(e["error"] == "breaker_open" for e in errors), errors
    assert "circuit breaker is open" in errors[-1]["message"]


@pytest.mark.slow
def test_an_agent_denied_network_cannot_reach_the_server_itself(corral_project: CorralProject, server: Server) -> None:
    direct = f"""
import urllib.request

def run(ctx):
    try:
        urllib.request.urlopen("{server.url}", timeout=3)
    except Exception as exc:
        return {{"reached": False, "error": type(exc).__name__}}
    return {{"reached": True}}
"""
    corral_project.agent("cut_off", direct)
    result = corral_project.cli("run", "cut_off", "--wait", "--json", timeout=120)
    answer = json.loads(result.stdout)
    assert answer["state"] == "succeeded" and answer["result"]["reached"] is False, answer
    corral_project.tables["mcp.docs"] = {"url": server.url}
    corral_project.agent("cut_off", direct, tools=["docs.*"])
    refused = corral_project.cli("check")
    assert refused.returncode != 0
    assert "[agents.cut_off] tools" in refused.stdout + refused.stderr
    assert f"127.0.0.1:{server.port}" in refused.stdout + refused.stderr


def test_a_result_far_over_the_cap_is_cut_off_as_it_arrives(corral_project: CorralProject, server: Server) -> None:
    """50 MiB from a 256 KiB cap: the daemon stops reading past the cap (plus framing), so
    neither its memory nor the call's time grows with what the server sends."""
    import psutil

    project_with(corral_project, server, max_result_kb=256)
    payload = {
        "big": {"tool": "docs.big", "args": {"size": 50 * 1024 * 1024}},
        "after": {"tool": "docs.echo", "args": {"text": "ok"}},
    }
    started = time.monotonic()
    daemon = subprocess.Popen(
        [sys.executable, "-m", "corral", "run", "reader", "--input", json.dumps(payload), "--wait", "--json"],
        env=corral_project.env,
        cwd=corral_project.root,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    watched, peak = psutil.Process(daemon.pid), 0
    while daemon.poll() is None:
        try:
            peak = max(peak, watched.memory_info().rss)
        except psutil.NoSuchProcess:
            break
        time.sleep(0.01)
    out, err = daemon.communicate(timeout=120)
    elapsed = time.monotonic() - started
    answer = json.loads(out)
    assert answer["state"] == "succeeded", (answer, err)
    big = answer["result"]["big"]
    assert big["error"] == "too_large" and "[mcp.docs] max_result_kb" in big["message"], big
    assert answer["result"]["after"] == {"ok": {"result": "ok"}}
    assert peak < 200 * 1024 * 1024, f"the daemon grew to {peak / 2**20:.0f} MiB"
    print(f"50 MiB result: {elapsed:.1f}s, daemon peak RSS {peak / 2**20:.0f} MiB")
