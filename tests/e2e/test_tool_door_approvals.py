"""A tool that needs a human's approval, called through the tool door by the ``mcp`` SDK's
client: the run goes on hold as for ``ctx.tool``, and once approved the call runs once."""

from __future__ import annotations

import json

from corral.testing import CorralProject
from tests.door.mcp_agents import LAUNCHER, TOOLS_PLUGIN


def test_an_approval_holds_the_run_and_the_resumed_call_runs_once(corral_project: CorralProject) -> None:
    project = corral_project
    plugin = project.root / "door_tools.py"
    plugin.write_text(TOOLS_PLUGIN)
    project.corral["plugins"] = [str(plugin)]
    project.agent("launcher", LAUNCHER, tools=["launch"])
    held = json.loads(project.cli("run", "launcher", "--input", '"prod"', "--wait", "--json").stdout)
    assert held["state"] == "on_hold" and held["error"]["kind"] == "approval", held
    launched = project.home / "agents" / "launcher" / "launched.txt"
    assert not launched.exists(), "nothing runs before a human says yes"
    [request] = project.cli_json("approvals")
    assert request["tool"] == "launch" and request["args"] == {"target": "prod"}
    approved = project.cli("approve", request["id"], "--json")
    assert approved.returncode == 0, approved.stderr
    result = json.loads(approved.stdout)["result"]
    assert result == {"error": False, "text": ["launched at prod"], "structured": None, "kind": None}
    assert launched.read_text() == "prod\n", "the approved call ran once"
    steps = project.cli_json("trace", held["id"])["steps"]
    tools = [step["name"] for step in steps if step["kind"] == "tool"]
    assert tools == ["launch"]
