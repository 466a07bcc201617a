"""Tools of stdio MCP servers, called by real agents through a foreground `corral run`.

The servers are real: the reference ``mcp-server-time`` and ``mcp-server-git`` from PyPI, and
``fault_server.py`` (written with the ``mcp`` SDK) for the faults. Each runs inside the
agent's sandbox, started at the run's first use of it.
"""

from __future__ import annotations

import json

import pytest

from corral.testing import CorralProject
from tests.mcp.support import BIN, CALLER, READABLE, call, fault_server, steps
from tests.models.fake_servers import FakeServer, Reply, openai_body
from tests.projects import KEY, KEY_VAR, fake_model


def test_reference_time_server_tools_are_listed_journaled_and_called(corral_project: CorralProject) -> None:
    project = corral_project
    project.tables["mcp.time"] = {"command": [str(BIN / "mcp-server-time"), "--local-timezone", "UTC"]}
    project.agent("clock", CALLER, tools=["time.*"])
    got = call(
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
    assert "MCP server 'time' offers no tool 'nope'" in result["missing"]["message"]
    kinds = [(s["kind"], s["name"]) for s in steps(project, got["id"])]
    assert kinds[0] == ("mcp", "time")
    assert ("tool", "time.get_current_time") in kinds


@pytest.mark.slow
def test_corral_tools_lists_plugin_and_mcp_tools_with_source_annotations_and_schema(
    corral_project: CorralProject,
) -> None:
    project = corral_project
    project.tables["mcp.time"] = {"command": [str(BIN / "mcp-server-time"), "--local-timezone", "UTC"]}
    project.tables["mcp.faults"] = fault_server("--bad-schema")
    project.agent("clock", CALLER, tools=["read_file", "time.*", "faults.delete", "faults.broken"], sandbox=READABLE)
    before = project.cli_json("tools", "clock")["clock"]
    assert [t["name"] for t in before][0] == "read_file"
    assert any("not listed yet" in t.get("note", "") for t in before)
    got = call(
        project,
        "clock",
        {"broken": ("faults.broken", {"x": "y"}), "now": ("time.get_current_time", {"timezone": "UTC"})},
    )
    assert got["result"]["broken"]["error"] == "refused"
    assert "faults" in got["result"]["broken"]["message"] and "inputSchema" in got["result"]["broken"]["message"]
    after = {t["name"]: t for t in project.cli_json("tools", "clock")["clock"]}
    assert after["time.get_current_time"]["read_only"] and after["time.get_current_time"]["source"] == "mcp server time"
    assert after["time.get_current_time"]["parameters"]["properties"]["timezone"]["type"] == "string"
    assert after["faults.delete"]["high_stakes"] and not after["faults.delete"]["idempotent"]
    assert "not valid JSON Schema" in after["faults.broken"]["note"]
    text = project.cli("tools", "clock", "--schema", check=True).stdout
    assert "time.convert_time  (mcp server time) [read_only, idempotent]" in text


@pytest.mark.slow
def test_the_built_in_agent_calls_mcp_tools_by_names_model_apis_accept(
    corral_project: CorralProject, server: FakeServer, monkeypatch: pytest.MonkeyPatch
) -> None:
    project = corral_project
    monkeypatch.setenv("FAKE_KEY", "sk-mcp-assistant-0123456789")
    project.models["fake"] = {
        "provider": "openai",
        "base_url": f"{server.url}/v1",
        "model": "fake",
        "api_key_env": "FAKE_KEY",
    }
    project.tables["mcp.time"] = {"command": [str(BIN / "mcp-server-time"), "--local-timezone", "UTC"]}
    project.agents["helper"] = {
        "code": "agents",
        "entry": "corral.assistant:run",
        "models": ["fake"],
        "tools": ["time.get_current_time"],
        "input": {"goal": "What time is it in Tokyo?"},
    }
    project.write()
    asked = json.dumps({"timezone": "Asia/Tokyo"})
    server.enqueue(
        Reply(body=openai_body("", [("c1", "time__get_current_time", asked)])),
        Reply(body=openai_body("", [("c2", "finish", json.dumps({"result": "it is late in Tokyo"}))])),
    )
    run = json.loads(project.cli("run", "helper", "--wait", "--json", timeout=120).stdout)
    assert run["state"] == "succeeded" and run["result"] == "it is late in Tokyo", run
    first, second = (r.json() for r in server.requests)
    assert {t["function"]["name"] for t in first["tools"]} == {"time__get_current_time", "finish"}
    assert second["messages"][-2]["tool_calls"][0]["function"]["name"] == "time__get_current_time"
    assert json.loads(second["messages"][-1]["content"])["timezone"] == "Asia/Tokyo"
    journal = steps(project, run["id"])
    assert [s["name"] for s in journal if s["kind"] == "tool"] == ["time.get_current_time"]


ENVIRONMENT = """
import os


def run(ctx):
    door = [name for name in ("OPENAI_API_KEY", "OPENAI_BASE_URL", "ANTHROPIC_API_KEY") if name in os.environ]
    return {"agent": door, "server": ctx.tool("faults.environment")}
"""


def test_a_stdio_server_gets_the_agents_environment_without_the_doors_token(
    corral_project: CorralProject, server: FakeServer, monkeypatch: pytest.MonkeyPatch
) -> None:
    project = corral_project
    monkeypatch.setenv(KEY_VAR, KEY)
    project.models["fake"] = fake_model(server.url)
    project.tables["mcp.faults"] = fault_server()
    project.agent(
        "env", ENVIRONMENT, models=["fake"], tools=["faults.environment"], env={"FOR_SERVER": "yes"}, sandbox=READABLE
    )
    result = project.cli("run", "env", "--wait", "--json", timeout=120)
    assert result.stdout, result.stderr
    run = json.loads(result.stdout)
    assert run["state"] == "succeeded", run.get("error")
    assert run["result"]["agent"] == ["OPENAI_API_KEY", "OPENAI_BASE_URL", "ANTHROPIC_API_KEY"], "the door is open"
    seen = run["result"]["server"]["result"]
    assert "FOR_SERVER" in seen and "PATH" in seen
    assert not [name for name in seen if name.endswith(("_API_KEY", "_BASE_URL")) or name.startswith("CORRAL_")]
