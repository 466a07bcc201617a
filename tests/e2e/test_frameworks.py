"""Agents written with PydanticAI and LangGraph, unmodified (no corral import), under
``corral run`` against the scripted model server: the requests that reach it, the journal,
a budget, and a kill -9 of the daemon mid-run. Each agent is a file of
tests/door/frameworks/ that docs/agents.md shows whole."""

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
from tests.models.fake_servers import FakeServer, Reply, anthropic_body, openai_body
from tests.projects import KEY, KEY_VAR, fake_model

pytestmark = pytest.mark.framework

FRAMEWORKS = Path(__file__).parent.parent / "door" / "frameworks"
PACKAGES = {
    "openai_sdk": "openai",
    "anthropic_sdk": "anthropic",
    "agents_sdk": "agents",
    "pydantic_ai_agent": "pydantic_ai",
    "langgraph_agent": "langchain.agents",
}
"""Each agent file and the package it needs (the ``test`` extra installs them)."""
QUESTION = "What is 2 + 3?"


def _installed(name: str) -> str:
    """``name``, or a skip when the package its agent file needs is not installed. Found, not
    imported: tests/mcp/ would shadow the ``mcp`` package the SDKs import."""
    package = PACKAGES[name]
    if importlib.util.find_spec(package.split(".")[0]) is None or importlib.util.find_spec(package) is None:
        pytest.skip(f"{package} is not installed (pip install -e '.[test]')")
    return name


@pytest.fixture(params=["pydantic_ai_agent", "langgraph_agent"])
def framework(request: pytest.FixtureRequest) -> str:
    """An agent written with a framework that runs its own tool loop."""
    return _installed(request.param)


@pytest.fixture
def project(corral_project: CorralProject, server: FakeServer, monkeypatch: pytest.MonkeyPatch) -> CorralProject:
    """Model ``fake`` (Chat Completions) on ``server``, one try per call."""
    monkeypatch.setenv(KEY_VAR, KEY)
    corral_project.models["fake"] = fake_model(server.url, retry_attempts=1)
    return corral_project


def _agent(project: CorralProject, name: str, models: tuple[str, ...] = ("fake",), **table: Any) -> None:
    project.agent(name, (FRAMEWORKS / f"{name}.py").read_text(), models=list(models), input=QUESTION, **table)


SDK_EXAMPLES = {
    "openai_sdk": ("fake", [Reply(body=openai_body("5"))], "5"),
    "anthropic_sdk": ("claude", [Reply(body=anthropic_body("5"))], "5"),
    "agents_sdk": (
        "fake",
        [
            Reply(body=openai_body(None, [("h1", "transfer_to_maths", "{}")], finish="tool_calls")),
            Reply(body=openai_body(None, [("t1", "add", '{"a": 2, "b": 3}')], finish="tool_calls")),
            Reply(body=openai_body("it is 5")),
        ],
        "it is 5",
    ),
}
"""The other examples docs/agents.md shows: the model each is granted, the model's turns, the result."""


@pytest.mark.parametrize("name", sorted(SDK_EXAMPLES))
def test_the_sdk_examples_the_docs_show_run_as_written(project: CorralProject, server: FakeServer, name: str) -> None:
    """PydanticAI's and LangGraph's examples are the agents of the tests below."""
    model, replies, result = SDK_EXAMPLES[_installed(name)]
    project.models["claude"] = fake_model(server.url, provider="anthropic", base_url=server.url, retry_attempts=1)
    _agent(project, name, models=(model,))
    server.enqueue(*replies)
    run = _run(project, name)
    assert run["state"] == "succeeded", run["error"]
    assert run["result"] == result
    assert len(server.requests) == len(replies) == run["spent"]["calls"]


def _sums(server: FakeServer, *, delay: float = 0.0) -> None:
    """The model's two turns: call ``add`` with 2 and 3, then say the sum (after ``delay`` s)."""
    server.enqueue(
        Reply(body=openai_body(None, [("call_1", "add", '{"a": 2, "b": 3}')], finish="tool_calls")),
        Reply(body=openai_body("it is 5"), delay=delay),
    )


def _run(project: CorralProject, agent: str) -> dict[str, Any]:
    """``corral run AGENT --wait --json``: the run's record, whichever way it ended."""
    result = project.cli("run", agent, "--wait", "--json")
    assert result.returncode in (0, 1), result.stderr
    run: dict[str, Any] = json.loads(result.stdout)
    return run


def _model_steps(project: CorralProject, run_id: str) -> list[dict[str, Any]]:
    trace = json.loads(project.cli("trace", run_id, "--json", check=True).stdout)
    return [step for step in trace["steps"] if step["kind"] == "model"]


def test_an_agent_calls_its_tool_and_every_request_is_a_journaled_model_step(
    project: CorralProject, server: FakeServer, framework: str
) -> None:
    _agent(project, framework)
    _sums(server)
    run = _run(project, framework)
    assert run["state"] == "succeeded", run["error"]
    assert run["result"] == "it is 5"
    assert len(server.requests) == 2, "one upstream request per model turn"
    first, second = (request.json() for request in server.requests)
    assert first["messages"][-1] == {"role": "user", "content": QUESTION}
    assert [tool["function"]["name"] for tool in first["tools"]] == ["add"]
    assert second["messages"][-1] == {"role": "tool", "tool_call_id": "call_1", "content": "5"}, "the tool ran"
    steps = _model_steps(project, run["id"])
    assert [(step["seq"], step["name"], step["status"]) for step in steps] == [(1, "fake", "done"), (2, "fake", "done")]
    door = "responses" if framework == "pydantic_ai_agent" else "openai"  # PydanticAI's "openai:" is Responses
    assert {step["args"]["door"] for step in steps} == {door}
    assert steps[1]["args"]["messages"][-1]["text"] == "5"
    assert run["spent"]["calls"] == 2


def test_a_request_over_the_budget_ends_the_run_as_the_agents_failure(
    project: CorralProject, server: FakeServer, framework: str
) -> None:
    """The second turn is over ``run_calls``: the door answers 429 ``insufficient_quota`` with
    ``x-should-retry: false``; neither framework retries it or handles it, and its exception
    ends the run (PydanticAI's ``ModelQuotaExceededError``, LangChain's ``OpenAIRateLimitError``)."""
    _agent(project, framework, budget={"run_calls": 1})
    _sums(server)
    run = _run(project, framework)
    assert run["state"] == "failed", run
    error = run["error"]
    assert error["kind"] == "agent" and "run_calls" in error["message"], error
    spent = {"pydantic_ai_agent": "ModelQuotaExceededError", "langgraph_agent": "OpenAIRateLimitError"}
    assert error["type"] == spent[framework], "each framework's own error for OpenAI's insufficient_quota"
    assert len(server.requests) == 1, "the request over the budget never reached the model"
    assert [step["ok"] for step in _model_steps(project, run["id"])] == [True, False]


def test_a_resume_after_kill_9_mid_call_pays_for_no_finished_call_again(
    project: CorralProject, server: FakeServer, framework: str
) -> None:
    """The daemon is killed while the model's second turn is on its way; the resumed run gets
    the first from the journal (the framework's requests are the same byte for byte in
    corral's neutral form: no timestamps, no random ids) and asks only the second again."""
    _agent(project, framework)
    _sums(server, delay=60)
    daemon = project.start_daemon()
    run_id = project.cli_json("run", framework)["id"]
    _wait(lambda: len(server.requests) == 2, "the second request")
    os.kill(daemon.pid, signal.SIGKILL)
    daemon.process.wait(10)
    server.enqueue(Reply(body=openai_body("it is 5")))
    project.start_daemon()
    run = project.wait_for_run(run_id)
    assert run["state"] == "succeeded", run["error"]
    assert run["result"] == "it is 5" and run["attempt"] == 2
    assert len(server.requests) == 3, "the first turn was answered from the journal"
    assert server.requests[2].body == server.requests[1].body, "the second turn asked again, the same"
    steps = _model_steps(project, run_id)
    assert [step["attempt"] for step in steps] == [1, 2], "step 1 kept from the first attempt; step 2 made again"
    assert run["spent"]["calls"] == 2


def _wait(predicate: Any, what: str, timeout: float = 60.0) -> None:
    deadline = time.monotonic() + timeout
    while not predicate():
        assert time.monotonic() < deadline, f"timed out waiting for {what}"
        time.sleep(0.05)
