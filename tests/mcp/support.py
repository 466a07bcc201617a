"""What the MCP tests share: the agent that calls tools as its input says, and the servers' paths."""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import Any

from corral.testing import CorralProject

HERE = Path(__file__).parent
FAULT_SERVER = str(HERE / "fault_server.py")
GARBAGE_SERVER = str(HERE / "garbage_server.py")
BIN = Path(sys.executable).parent
"""Where the reference servers' commands are installed (the test extra)."""
READABLE = {"read_only": [str(HERE)]}
"""An agent's sandbox that lets a stdio server it starts read the test servers' code."""

CALLER = """
import os
import corral

def attempt(ctx, name, **args):
    try:
        return {"ok": ctx.tool(name, **args)}
    except corral.ToolCallError as exc:
        return {"error": exc.kind, "message": str(exc)}

def run(ctx):
    out = {"tools": ctx.tools, "env_has_token": any("mcp-docs-token" in v for v in os.environ.values())}
    for label, call in ctx.input.items():
        out[label] = attempt(ctx, call["tool"], **call["args"])
    return out
"""
"""An agent that lists its tools, then calls each ``{label: {"tool", "args"}}`` of its input
and returns what each answered (or the error kind and message)."""


def fault_server(*options: str, **table: Any) -> dict[str, Any]:
    """An ``[mcp.NAME]`` table running the fault server over stdio."""
    return {"command": [sys.executable, FAULT_SERVER, "stdio", *options], **table}


def call(project: CorralProject, agent: str, calls: dict[str, tuple[str, dict[str, Any]]]) -> dict[str, Any]:
    """Run ``agent`` in the foreground with these calls; the finished run as ``--json`` shows it."""
    payload = {label: {"tool": tool, "args": args} for label, (tool, args) in calls.items()}
    result = project.cli("run", agent, "--input", json.dumps(payload), "--wait", "--json", timeout=240)
    assert result.returncode in (0, 1, 2), result.stdout + result.stderr
    answer: dict[str, Any] = json.loads(result.stdout)
    return answer


def steps(project: CorralProject, run_id: str) -> list[dict[str, Any]]:
    """The run's journal, as ``corral trace --json`` shows it."""
    trace: dict[str, Any] = project.cli_json("trace", run_id)
    return list(trace["steps"])
