"""Tools of stdio MCP servers, called by real agents through a foreground `corral run`.

The servers are real: the reference ``mcp-server-time`` and ``mcp-server-git`` from PyPI, and
``fault_server.py`` (written with the ``mcp`` SDK) for the faults. Each runs inside the
agent's sandbox, started at the run's first use of it.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import Any

from corral.testing import CorralProject

FAULT_SERVER = str(Path(__file__).with_name("fault_server.py"))
BIN = Path(sys.executable).parent

CALLER = """
import corral

def attempt(ctx, name, **args):
    try:
        return {"ok": ctx.tool(name, **args)}
    except corral.ToolCallError as exc:
        return {"error": exc.kind, "message": str(exc)}

def run(ctx):
    out = {"tools": ctx.tools}
    for label, call in ctx.input.items():
        out[label] = attempt(ctx, call["tool"], **call["args"])
    return out
"""


def run(project: CorralProject, agent: str, calls: dict[str, tuple[str, dict[str, Any]]]) -> dict[str, Any]:
    payload = {label: {"tool": tool, "args": args} for label, (tool, args) in calls.items()}
    result = project.cli("run", agent, "--input", json.dumps(payload), "--wait", "--json", timeout=180)
    assert result.returncode in (0, 1), result.stdout + result.stderr
    answer: dict[str, Any] = json.loads(result.stdout)
    return answer


def steps(project: CorralProject, run_id: str) -> list[dict[str, Any]]:
    trace: dict[str, Any] = project.cli_json("trace", run_id)
    return list(trace["steps"])


def test_reference_time_server_tools_are_listed_journaled_and_called(corral_project: CorralProject) -> None:
    project = corral_project
    project.tables["mcp.time"] = {"command": [str(BIN / "mcp-server-time"), "--local-timezone", "UTC"]}
    project.agent("clock", CALLER, tools=["time.*"])
    got = run(
        project,
        "clock",
        {
            "now": ("time.get_current_time", {"timezone": "Europe/Paris"}),
            "bad": ("time.get_current_time", {"zone": "UTC"}),
            "missing": ("time.nope", {}),
        },
    )
    assert got["state"] == "succeeded", got
    result = got["result"]
    assert result["tools"] == ["time.convert_time", "time.get_current_time"]
    assert result["now"]["ok"]["timezone"] == "Europe/Paris"
    assert result["bad"]["error"] == "refused" and "zone" in result["bad"]["message"]
    assert result["missing"]["error"] == "refused"
    kinds = [(s["kind"], s["name"]) for s in steps(project, got["id"])]
    assert kinds[0] == ("mcp", "time")
    assert ("tool", "time.get_current_time") in kinds
