"""Stdio MCP servers that fail: each fault fails the call with an error naming the server and
what happened, and the run goes on (or, for a call whose outcome is unknown, waits for a human)."""

from __future__ import annotations

import sys

import pytest

from corral.testing import CorralProject
from tests.mcp.support import CALLER, GARBAGE_SERVER, READABLE, call, fault_server, steps


@pytest.mark.slow
def test_each_server_fault_fails_its_call_clearly(corral_project: CorralProject) -> None:
    project = corral_project
    project.tables["mcp.slow"] = fault_server(timeout="2s", max_result_kb=1)
    project.tables["mcp.crashy"] = fault_server()
    project.tables["mcp.broken"] = fault_server("--fail-start")
    project.tables["mcp.garbage"] = {"command": [sys.executable, GARBAGE_SERVER]}
    project.tables["mcp.missing"] = {"command": ["/nonexistent/mcp-server"]}
    grants = ["slow.*", "crashy.*", "broken.*", "garbage.*", "missing.*"]
    project.agent("prober", CALLER, tools=grants, sandbox=READABLE)
    got = call(
        project,
        "prober",
        {
            "big": ("slow.big", {"size": 5000}),
            "fail": ("slow.fail", {}),
            "hang": ("slow.hang", {}),
            "after_hang": ("slow.echo", {"text": "back"}),
            "crash": ("crashy.crash", {}),
            "dead": ("crashy.echo", {"text": "x"}),
            "start": ("broken.echo", {"text": "x"}),
            "garbage": ("garbage.echo", {}),
            "missing": ("missing.anything", {}),
        },
    )
    assert got["state"] == "succeeded", got
    r = got["result"]
    assert r["big"]["error"] == "too_large" and "[mcp.slow] max_result_kb" in r["big"]["message"]
    assert r["fail"]["error"] == "failed" and "Error executing tool fail" in r["fail"]["message"]
    assert r["hang"]["error"] == "timeout" and "within 2s ([mcp.slow] timeout)" in r["hang"]["message"]
    assert r["after_hang"] == {"ok": {"result": "back"}}, "a hung server is started again at the next call"
    assert r["crash"]["error"] == "unavailable" and "died during the call, twice" in r["crash"]["message"]
    assert "died twice in this run and is not started again" in r["dead"]["message"]
    assert r["start"]["error"] == "unavailable"
    assert "fault_server.py stdio --fail-start" in r["start"]["message"]
    assert "cannot open the database /nonexistent/db" in r["start"]["message"], "the server's stderr is quoted"
    assert r["garbage"]["error"] == "unavailable" and "malformed message" in r["garbage"]["message"]
    assert "could not start (/nonexistent/mcp-server)" in r["missing"]["message"]
    assert not any(name.startswith(("broken.", "missing.")) for name in r["tools"])
    journal = steps(project, got["id"])
    assert len({s["seq"] for s in journal}) == len(journal) and all(s["status"] == "done" for s in journal)


@pytest.mark.slow
def test_a_server_dying_during_a_call_that_is_not_idempotent_holds_the_run(corral_project: CorralProject) -> None:
    project = corral_project
    project.tables["mcp.crashy"] = fault_server()
    project.agent("writer", CALLER, tools=["crashy.*"], sandbox=READABLE)
    got = call(project, "writer", {"write": ("crashy.crash_write", {"note": "once"})})
    assert got["state"] == "on_hold", got
    held = [s for s in steps(project, got["id"]) if s["name"] == "crashy.crash_write"]
    assert held[0]["status"] == "unknown"
    assert "not idempotent, so whether it took effect is unknown" in got["error"]["message"]
    assert f"corral release {got['id']}" in got["error"]["message"]


@pytest.mark.slow
def test_a_destructive_tool_waits_for_a_human(corral_project: CorralProject) -> None:
    project = corral_project
    project.tables["mcp.faults"] = fault_server()
    project.agent("cleaner", CALLER, tools=["faults.delete"], sandbox=READABLE)
    got = call(project, "cleaner", {"delete": ("faults.delete", {"what": "everything"})})
    assert got["state"] == "on_hold", got
    assert "waits for approval" in got["error"]["message"]
    project.tables["mcp.faults"] = fault_server(approve="none")
    project.write()
    got = call(project, "cleaner", {"delete": ("faults.delete", {"what": "everything"})})
    assert got["state"] == "succeeded" and got["result"]["delete"] == {"ok": {"result": "deleted everything"}}
