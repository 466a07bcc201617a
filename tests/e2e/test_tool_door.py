"""The tool door from a framework's own MCP client: an OpenAI Agents SDK agent whose model is
the model door (the scripted server on 127.0.0.1 upstream) and whose tools are corral
tools reached through ``MCPServerStreamableHttp``, with a guardrail and a kill -9 of the
daemon mid-run."""

from __future__ import annotations

import importlib.util
import json
import os
import signal
import time
from pathlib import Path
from typing import Any

import pytest

from corral.testing import CorralProject
from tests.door.mcp_agents import AGENTS_SDK_MCP, TOOLS_PLUGIN
from tests.models.fake_servers import FakeServer, Reply, openai_body
from tests.projects import KEY, KEY_VAR, fake_model

pytestmark = pytest.mark.framework


@pytest.fixture
def clerk(corral_project: CorralProject, server: FakeServer, monkeypatch: pytest.MonkeyPatch) -> CorralProject:
    """The Agents SDK agent ``clerk``, granted ``note`` and ``pause`` and model ``fake``."""
    if importlib.util.find_spec("agents") is None:
        pytest.skip("the OpenAI Agents SDK is not installed (pip install openai-agents)")
    monkeypatch.setenv(KEY_VAR, KEY)
    plugin = corral_project.root / "door_tools.py"
    plugin.write_text(TOOLS_PLUGIN)
    corral_project.corral["plugins"] = [str(plugin)]
    corral_project.models["fake"] = fake_model(server.url, retry_attempts=1)
    corral_project.agent("clerk", AGENTS_SDK_MCP, tools=["note", "pause"], models=["fake"])
    return corral_project


def _calls(*tools: tuple[str, dict[str, Any]]) -> list[Reply]:
    """The model's turns: one tool call each, through the tool door."""
    return [
        Reply(body=openai_body(None, [(f"call_{i}", name, json.dumps(args))], finish="tool_calls"))
        for i, (name, args) in enumerate(tools)
    ]


def _steps(project: CorralProject, run_id: str) -> list[tuple[str, str]]:
    trace = json.loads(project.cli("trace", run_id, "--json", check=True).stdout)
    return [(step["kind"], step["name"]) for step in trace["steps"]]


def _notes(project: CorralProject) -> list[str]:
    path = project.home / "agents" / "clerk" / "notes.txt"
    return path.read_text().splitlines() if path.exists() else []


def _wait_file(path: Path, timeout: float = 60.0) -> None:
    deadline = time.monotonic() + timeout
    while not path.exists():
        assert time.monotonic() < deadline, f"{path} never appeared"
        time.sleep(0.05)


def test_the_agents_sdk_calls_corral_tools_over_mcp_and_a_resume_after_kill_9_repeats_nothing(
    clerk: CorralProject, server: FakeServer
) -> None:
    workdir = clerk.home / "agents" / "clerk"
    daemon = clerk.start_daemon()
    server.enqueue(*_calls(("note", {"text": "first"}), ("pause", {})))
    run_id = clerk.cli_json("run", "clerk")["id"]
    _wait_file(workdir / "paused")
    os.kill(daemon.pid, signal.SIGKILL)  # while the tool called through the door runs
    daemon.process.wait(10)
    assert len(server.requests) == 2 and _notes(clerk) == ["first"]
    (workdir / "go").touch()
    server.enqueue(Reply(body=openai_body("noted and paused")))
    clerk.start_daemon()
    run = clerk.wait_for_run(run_id, timeout=90)
    assert run["state"] == "succeeded", run.get("error")
    assert run["result"] == "noted and paused"
    assert len(server.requests) == 3, "the two answered model calls were not asked again"
    assert run["spent"]["calls"] == 3
    assert _notes(clerk) == ["first"], "the finished tool call did not run again"
    assert _steps(clerk, run_id) == [
        ("model", "fake"),
        ("tool", "note"),
        ("model", "fake"),
        ("tool", "pause"),
        ("model", "fake"),
    ]
    sent = [request.json() for request in server.requests]
    assert sorted(tool["function"]["name"] for tool in sent[0]["tools"]) == ["note", "pause"], "the door's list"
    assert sent[1]["messages"][-1] == {"role": "tool", "tool_call_id": "call_0", "content": "noted first"}


def test_a_tool_call_limit_stops_an_agents_sdk_run_at_the_door(clerk: CorralProject, server: FakeServer) -> None:
    clerk.agents["clerk"]["guardrails"] = {"max_tool_calls": 2}
    clerk.write()
    server.enqueue(*_calls(("note", {"text": "a"}), ("note", {"text": "b"}), ("note", {"text": "c"})))
    server.enqueue(Reply(body=openai_body("never asked")))
    run = json.loads(clerk.cli("run", "clerk", "--wait", "--json").stdout)
    assert run["state"] == "failed" and run["error"]["kind"] == "guardrail", run
    assert "max_tool_calls (2)" in run["error"]["message"]
    assert _notes(clerk) == ["a", "b"], "the call past the limit never ran"
    assert len(server.requests) == 3
    assert [kind for kind, _ in _steps(clerk, run["id"])] == ["model", "tool", "model", "tool", "model", "tool"]
