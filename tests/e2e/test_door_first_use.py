"""Every run serves a door, and pays for each of its parts at the first request to it: a real
agent under ``corral run --wait`` reports which modules its process holds before it calls the
door and after each call (the model door in its three dialects, the tool door, the state and
log API), and each call works."""

from __future__ import annotations

import pytest

from corral.testing import CorralProject
from tests.door.mcp_agents import TOOLS_PLUGIN
from tests.e2e.support import run_succeeded
from tests.models.fake_servers import FakeServer, Reply, anthropic_body, openai_body
from tests.projects import KEY, KEY_VAR, fake_model

CALLER = """
import json, os, sys, urllib.request

WATCHED = (
    "corral.sandbox.door.chat", "corral.sandbox.door.messages", "corral.sandbox.door.responses",
    "corral.sandbox.door.tools", "corral.sandbox.door.api", "corral.models.types", "msgspec",
    "mcp_types", "jsonschema",
)
TOKEN = os.environ["CORRAL_DOOR_TOKEN"]
META = {"io.modelcontextprotocol/protocolVersion": "2026-07-28", "io.modelcontextprotocol/clientCapabilities": {}}


def loaded():
    return [name for name in WATCHED if name in sys.modules]


def call(url, body, method="POST", **headers):
    sent = {"authorization": "Bearer " + TOKEN, "content-type": "application/json", **headers}
    request = urllib.request.Request(url, json.dumps(body).encode(), sent, method=method)
    with urllib.request.urlopen(request, timeout=30) as answer:
        return json.loads(answer.read())


def run(ctx):
    seen = {"start": loaded()}
    user = [{"role": "user", "content": "hi"}]
    answer = call(os.environ["OPENAI_BASE_URL"] + "/chat/completions", {"model": "fake", "messages": user})
    seen["chat"] = [answer["choices"][0]["message"]["content"], loaded()]
    answer = call(os.environ["ANTHROPIC_BASE_URL"] + "/v1/messages",
                  {"model": "claude", "max_tokens": 5, "messages": user}, **{"anthropic-version": "2023-06-01"})
    seen["messages"] = [answer["content"][0]["text"], loaded()]
    answer = call(os.environ["OPENAI_BASE_URL"] + "/responses", {"model": "fake", "input": "hi"})
    seen["responses"] = [answer["output"][0]["content"][0]["text"], loaded()]
    params = {"name": "add", "arguments": {"a": 2, "b": 3}, "_meta": META}
    answer = call(os.environ["CORRAL_MCP_URL"], {"jsonrpc": "2.0", "id": 1, "method": "tools/call", "params": params},
                  **{"mcp-protocol-version": "2026-07-28", "mcp-method": "tools/call", "mcp-name": "add"})
    seen["tools"] = [answer["result"]["structuredContent"], loaded()]
    answer = call(os.environ["CORRAL_API_URL"] + "/state/note", {"value": "kept"}, method="PUT")
    seen["api"] = [ctx.state["note"], loaded()]
    return seen
"""


@pytest.fixture
def caller(corral_project: CorralProject, server: FakeServer, monkeypatch: pytest.MonkeyPatch) -> CorralProject:
    """Agent ``caller``, granted tool ``add`` and models ``fake`` (OpenAI) and ``claude`` (Anthropic)."""
    monkeypatch.setenv(KEY_VAR, KEY)
    plugin = corral_project.root / "door_tools.py"
    plugin.write_text(TOOLS_PLUGIN)
    corral_project.corral["plugins"] = [str(plugin)]
    corral_project.models["fake"] = fake_model(server.url, retry_attempts=1)
    corral_project.models["claude"] = fake_model(
        server.url, provider="anthropic", base_url=server.url, model="fake-claude", retry_attempts=1
    )
    corral_project.agent("caller", CALLER, tools=["add"], models=["fake", "claude"])
    return corral_project


def test_a_run_loads_each_part_of_its_door_at_the_first_request_to_it(
    caller: CorralProject, server: FakeServer
) -> None:
    server.enqueue(
        Reply(body=openai_body("from chat")),
        Reply(body=anthropic_body("from claude")),
        Reply(body=openai_body("from responses")),
    )
    seen = run_succeeded(caller, "caller")["result"]
    assert seen["start"] == [], "a run that has not called its door holds none of its parts"
    models = ["corral.models.types", "msgspec"]
    assert seen["chat"] == ["from chat", ["corral.sandbox.door.chat", *models]]
    assert seen["messages"] == ["from claude", ["corral.sandbox.door.chat", "corral.sandbox.door.messages", *models]]
    dialects = ["corral.sandbox.door.chat", "corral.sandbox.door.messages", "corral.sandbox.door.responses"]
    assert seen["responses"] == ["from responses", [*dialects, *models]]
    assert seen["tools"] == [5, [*dialects, "corral.sandbox.door.tools", *models, "mcp_types"]]
    # the daemon checks a tool's arguments against its schema: jsonschema never enters the agent's process
    assert seen["api"] == [
        "kept",
        [*dialects, "corral.sandbox.door.tools", "corral.sandbox.door.api", *models, "mcp_types"],
    ]
