"""MCP tools across attempts: a resumed run re-reads each server's tool list and refuses one that
changed under it; kill -9 of the daemon during a call follows the outcome-unknown rules (an
idempotent tool runs again with the same idempotency key, any other holds the run)."""

from __future__ import annotations

import json
import os
import signal
import time
from pathlib import Path

import psutil
import pytest

from corral.testing import CorralProject
from tests.mcp.support import READABLE, call, fault_server, steps

pytestmark = pytest.mark.slow

CHANGES_UNDER_IT = """
import os, pathlib

def run(ctx):
    first = ctx.tool("faults.echo", text="a")
    if ctx.attempt == 1:
        pathlib.Path("variant").write_text("1")  # the server started next offers another echo
        os._exit(3)
    return first
"""

SLOW_CALL = """
import pathlib

def run(ctx):
    slow = pathlib.Path("slow")
    if ctx.attempt == 1:
        slow.write_text("60")  # the server sleeps after its effect: a daemon can die mid-call
    else:
        slow.unlink(missing_ok=True)
    return ctx.tool(ctx.input["tool"], **ctx.input["args"])
"""


def test_a_resumed_run_whose_server_changed_a_tool_fails_clearly(corral_project: CorralProject) -> None:
    project = corral_project
    project.tables["mcp.faults"] = fault_server()
    project.agent("resumer", CHANGES_UNDER_IT, tools=["faults.*"], sandbox=READABLE)
    got = call(project, "resumer", {})
    assert got["state"] == "failed", got
    assert got["error"]["kind"] == "mcp_changed"
    assert "MCP server 'faults' now offers a different input schema for tool 'echo'" in got["error"]["message"]
    listing = [s for s in steps(project, got["id"]) if s["kind"] == "mcp"]
    assert len(listing) == 1 and listing[0]["attempt"] == 1, "the list is journaled once, by the first attempt"


def servers_left(workdir: Path, timeout: float = 10) -> list[psutil.Process]:
    """The fault servers still running in ``workdir``, once they had ``timeout`` seconds to die."""
    deadline = time.monotonic() + timeout
    while True:
        left = []
        for process in psutil.process_iter(["cmdline", "cwd"]):
            if any("fault_server.py" in part for part in process.info["cmdline"] or ()) and (
                process.info["cwd"] == str(workdir)
            ):
                left.append(process)
        if not left or time.monotonic() > deadline:
            return left
        time.sleep(0.1)


def calls_log(workdir: Path, lines: int, timeout: float = 60) -> list[str]:
    log = workdir / "calls.log"
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if log.exists() and len(found := log.read_text().splitlines()) >= lines:
            return found
        time.sleep(0.1)
    raise AssertionError(f"{log} did not get {lines} lines")


@pytest.mark.parametrize(("tool", "state"), [("faults.touch", "succeeded"), ("faults.write", "on_hold")])
def test_kill_9_of_the_daemon_during_an_mcp_call(corral_project: CorralProject, tool: str, state: str) -> None:
    project = corral_project
    project.tables["mcp.faults"] = fault_server()
    project.agent("caller", SLOW_CALL, tools=["faults.*"], sandbox=READABLE)
    workdir = project.home / "agents" / "caller"
    daemon = project.start_daemon()
    payload = {"tool": tool, "args": {tool.split(".")[1] == "touch" and "name" or "note": "x"}}
    run_id = project.cli_json("run", "caller", "--input", json.dumps(payload))["id"]
    first = calls_log(workdir, 1)
    os.kill(daemon.pid, signal.SIGKILL)
    daemon.process.wait(10)
    assert not servers_left(workdir), "the MCP server outlived its run's daemon"
    project.start_daemon()
    run = project.wait_for_run(run_id, timeout=90)
    assert run["state"] == state, run
    journal = steps(project, run_id)
    entry = next(s for s in journal if s["name"] == tool)
    if state == "succeeded":
        again = calls_log(workdir, 2)
        assert again[0] == first[0] and again[1] == first[0], "the re-run carries the same idempotency key"
        assert first[0].split()[-1] == entry["key"]
        assert entry["executions"] == 2
    else:
        assert entry["status"] == "unknown"
        assert "corral release" in run["error"]["message"]
        time.sleep(1)
        assert len((workdir / "calls.log").read_text().splitlines()) == 1, "a call of unknown outcome is not repeated"
