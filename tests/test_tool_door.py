"""The tool door: every run's granted tools as an MCP server at ``/mcp`` on the run's door,
spoken to by the ``mcp`` SDK's own Streamable HTTP client inside real agents under
``corral run --wait``."""

from __future__ import annotations

import json
from typing import Any

from corral.testing import CorralProject
from tests.door.mcp_agents import RAW, SDK_CLIENT, TAKING_TURNS, TOOLS_PLUGIN
from tests.e2e.support import run_succeeded
from tests.mcp.support import BIN

ENVIRONMENT = """
import os

def run(ctx):
    names = ("CORRAL_MCP_URL", "CORRAL_DOOR_TOKEN", "OPENAI_BASE_URL", "OPENAI_API_KEY", "ANTHROPIC_API_KEY")
    return {name: os.environ.get(name) for name in names}
"""


def test_every_run_has_a_door_and_an_agent_without_models_keeps_its_own_sdk_variables(
    corral_project: CorralProject,
) -> None:
    corral_project.agent("plain", ENVIRONMENT, env={"OPENAI_API_KEY": "its-own"})
    seen = run_succeeded(corral_project, "plain")["result"]
    assert seen["CORRAL_MCP_URL"].startswith("http://127.0.0.1:") and seen["CORRAL_MCP_URL"].endswith("/mcp")
    assert seen["CORRAL_DOOR_TOKEN"].startswith("corral-")
    assert seen["OPENAI_API_KEY"] == "its-own", "no models granted: the agent's env entry stands"
    assert seen["OPENAI_BASE_URL"] is None and seen["ANTHROPIC_API_KEY"] is None


def _tooled(project: CorralProject) -> CorralProject:
    plugin = project.root / "door_tools.py"
    plugin.write_text(TOOLS_PLUGIN)
    project.corral["plugins"] = [str(plugin)]
    return project


def _steps(project: CorralProject, run_id: str) -> list[dict[str, Any]]:
    return list(json.loads(project.cli("trace", run_id, "--json", check=True).stdout)["steps"])


def test_the_sdk_client_lists_and_calls_the_granted_tools_in_both_eras(corral_project: CorralProject) -> None:
    project = _tooled(corral_project)
    project.tables["mcp.time"] = {"command": [str(BIN / "mcp-server-time"), "--local-timezone", "UTC"]}
    project.agent("client", SDK_CLIENT, tools=["add", "refuse", "time.get_current_time"])
    run = run_succeeded(project, "client")
    modern, legacy = run["result"]["modern"], run["result"]["legacy"]
    assert modern["version"] == "2026-07-28" and legacy["version"] == "2025-11-25"
    for seen in (modern, legacy):
        assert list(seen["tools"]) == ["add", "refuse", "time__get_current_time"], "dots aliased as model APIs need"
        add = seen["tools"]["add"]
        assert add["description"] == "Add two integers."
        assert add["schema"]["properties"]["a"] == {"type": "integer", "description": "the first"}
        assert add["hints"] == {"readOnlyHint": True, "idempotentHint": True}
        assert seen["tools"]["refuse"]["hints"] == {}
        assert seen["tools"]["time__get_current_time"]["hints"]["readOnlyHint"] is True, "the server's own hints"
    assert modern["add"] == {"error": False, "text": ["5"], "structured": 5, "kind": None}
    assert legacy["add"] == {"error": False, "text": ["42"], "structured": None, "kind": None}, "objects only, then"
    assert modern["time"]["error"] is False and '"timezone": "UTC"' in modern["time"]["text"][0]
    refusals = {label: modern[label] for label in ("bad arguments", "not granted", "tool error", "huge int")}
    assert all(seen["error"] for seen in refusals.values()), refusals
    assert refusals["bad arguments"]["kind"] == "refused" and "is not of type" in refusals["bad arguments"]["text"][0]
    assert refusals["not granted"]["kind"] == "refused" and "is not granted" in refusals["not granted"]["text"][0]
    assert refusals["tool error"] == {
        "error": True,
        "text": ["tool 'refuse' failed: no, thanks"],
        "structured": None,
        "kind": "failed",
    }
    assert "cannot be journaled" in refusals["huge int"]["text"][0]
    steps = [(step["kind"], step["name"], (step.get("error") or {}).get("kind")) for step in _steps(project, run["id"])]
    assert steps == [
        ("mcp", "time", None),
        ("tool", "add", None),
        ("tool", "add", "refused"),
        ("tool", "launch_missiles", "refused"),
        ("tool", "refuse", "failed"),
        ("tool", "time.get_current_time", None),
        ("tool", "add", None),
    ], "every call one step, as ctx.tool's; the huge int never reached the daemon"


def test_bad_messages_get_clear_errors_and_the_door_goes_on(corral_project: CorralProject) -> None:
    project = _tooled(corral_project)
    project.agent("raw", RAW, tools=["add", "refuse"])
    seen = run_succeeded(project, "raw")["result"]

    def error(label: str) -> tuple[int, int, str]:
        status, body, _ = seen[label]
        return status, body["error"]["code"], body["error"]["message"]

    assert error("no token")[:2] == error("wrong token")[:2] == (401, -32600)
    assert "CORRAL_DOOR_TOKEN" in error("no token")[2]
    assert seen["get"][0] == seen["delete"][0] == 405 and seen["get"][2] == "POST", "no stream, no session to end"
    assert error("not json")[:2] == (400, -32700)
    assert error("batch")[:2] == (400, -32600) and "one JSON-RPC message per POST" in error("batch")[2]
    assert error("too big")[0] == 413
    assert error("too deep")[:2] == (400, -32600) and "nests deeper than 64" in error("too deep")[2]
    assert error("no method")[:2] == (400, -32600)
    assert error("unknown method")[:2] == (404, -32601) and "prompts/list" in error("unknown method")[2]
    assert error("header mismatch") == (400, -32020, "header mcp-name is 'refuse', the body says 'add'")
    assert error("no routing headers")[:2] == (400, -32020)
    status, body, _ = seen["old version"]
    assert (status, body["error"]["code"]) == (400, -32022)
    assert body["error"]["data"] == {
        "supported": ["2026-07-28", "2025-11-25", "2025-06-18", "2025-03-26", "2024-11-05"],
        "requested": "1999-01-01",
    }
    assert seen["notification"] == [202, None, None]
    assert error("response")[:2] == (400, -32600)
    assert error("origin")[0] == 403
    assert seen["legacy ping"][:2] == [200, {"jsonrpc": "2.0", "id": 5, "result": {}}]
    assert error("legacy unknown")[:2] == (200, -32601), "the handshake era's JSON-RPC errors come with 200"
    assert error("bad params") == (400, -32602, "tools/call: params.name: Field required")
    assert seen["named base64"][1]["result"]["structuredContent"] == 3, "Mcp-Name decoded before it is compared"
    huge = seen["huge arguments"][1]["result"]
    assert huge["isError"] and huge["_meta"]["io.corral/error-kind"] == "refused"
    assert "max_tool_args_bytes" in huge["content"][0]["text"], "the daemon's cap, read by the model"
    answer = seen["still works"][1]["result"]
    assert answer["content"] == [{"type": "text", "text": "42"}] and answer["resultType"] == "complete"
    assert answer["_meta"]["io.modelcontextprotocol/serverInfo"]["name"] == "corral"
    assert all(entry[2] is None for entry in seen.values() if entry[0] == 200), "no Mcp-Session-Id, ever"


def test_calls_take_turns_and_a_tool_that_calls_the_door_is_answered_at_once(corral_project: CorralProject) -> None:
    project = _tooled(corral_project)
    project.agent("turns", TAKING_TURNS, tools=["slow", "nested", "add"])
    seen = run_succeeded(project, "turns")["result"]
    spans = sorted(call["structured"][1:] for call in seen["parallel"])
    assert not any(call["error"] for call in seen["parallel"]), seen["parallel"]
    assert all(spans[i][1] <= spans[i + 1][0] for i in range(2)), f"one tool at a time: {spans}"
    nested = seen["nested"]
    assert nested["result"]["isError"] and nested["result"]["_meta"]["io.corral/error-kind"] == "busy"
    assert "tool nested is running" in nested["result"]["content"][0]["text"]
    assert nested["seconds"] < 5, "answered at once, not after a wait for itself"
