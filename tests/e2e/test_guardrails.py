"""Guardrails and human approval end to end: a real daemon, real agents, a real store,
the built-in tool-calling agent against a scripted model server on 127.0.0.1."""

from __future__ import annotations

import json
import time
from typing import Any

import pytest

from corral.testing import CorralProject
from tests.models.fake_servers import FakeServer, Reply, openai_body
from tests.projects import deployed, run_until_held


def test_a_high_stakes_call_waits_for_approval_across_a_restart_and_runs_once(deployer: CorralProject) -> None:
    daemon = deployer.start_daemon()
    approval, run = run_until_held(deployer, "prod")
    assert deployed(deployer) == [], "nothing runs before a human approves"
    deadline = time.monotonic() + 15
    while not any(a["alert"]["key"] == f"approval:{approval}" for a in deployer.cli_json("alerts")):
        assert time.monotonic() < deadline, "the approval alert was not raised"
        time.sleep(0.2)
    assert daemon.stop() == 0
    deployer.start_daemon()
    assert [r["id"] for r in deployer.cli_json("approvals")] == [approval], "the request survived the restart"
    approved = deployer.cli("approve", approval)
    assert approved.returncode == 0, approved.stderr
    final = deployer.wait_for_run(run["id"], states=("succeeded", "failed"))
    assert final["state"] == "succeeded" and final["result"] == "deployed to prod", final
    assert deployed(deployer) == ["prod"]
    again = deployer.cli("approve", approval)
    assert again.returncode == 5 and "already" in again.stderr, "an approval is used once"
    trace = deployer.cli_json("trace", run["id"])
    [step] = trace["steps"]
    assert step["approval"] == approval and step["approval_state"] == "approved"
    assert step["guardrail"]["guardrail"] == "approval"
    text = deployer.cli("trace", run["id"], check=True).stdout
    assert "approval" in text


def test_a_denial_reaches_the_agent_as_a_tool_error_with_the_reason(deployer: CorralProject) -> None:
    deployer.start_daemon()
    approval, run = run_until_held(deployer, "staging")
    denied = deployer.cli("deny", approval, "--reason", "not on a Friday")
    assert denied.returncode == 0, denied.stderr
    final = deployer.wait_for_run(run["id"], states=("succeeded", "failed"))
    assert final["result"]["refused"] == "denied" and "not on a Friday" in final["result"]["message"], final
    assert deployed(deployer) == []
    assert deployer.cli_json("approvals") == []
    text = deployer.cli("trace", run["id"], check=True).stdout
    assert "denied" in text and "replayed" not in text, "the denial ended the step in the resumed attempt"


def test_an_unanswered_request_expires_as_a_denial(deployer: CorralProject) -> None:
    deployer.agents["deployer"]["guardrails"] = {"approval_timeout": "1s"}
    deployer.start_daemon()
    started = deployer.cli_json("run", "deployer", "--input", '"prod"')
    final = deployer.wait_for_run(started["id"], states=("succeeded", "failed"), timeout=30)
    assert final["result"]["refused"] == "denied" and "expired" in final["result"]["message"], final
    assert deployed(deployer) == []
    [expired] = deployer.cli_json("approvals", "--all")
    assert expired["state"] == "expired" and expired["run_id"] == started["id"]


def test_with_the_daemon_down_approve_resumes_the_run_in_the_foreground(deployer: CorralProject) -> None:
    held = deployer.cli("run", "deployer", "--input", '"prod"', "--wait", "--json")
    run = json.loads(held.stdout)
    assert run["state"] == "on_hold", run
    [request] = deployer.cli_json("approvals")
    result = deployer.cli("approve", request["id"], "--json")
    assert result.returncode == 0, result.stderr
    assert json.loads(result.stdout)["result"] == "deployed to prod"
    assert deployed(deployer) == ["prod"]


def test_a_tool_call_limit_stops_the_run_and_the_trace_says_which_guardrail(corral_project: CorralProject) -> None:
    corral_project.agent(
        "busy",
        "def run(ctx):\n    for i in range(5):\n        ctx.tool('word_count', text=f'w{i}')\n",
        tools=["word_count"],
        guardrails={"max_tool_calls": 2},
    )
    run = json.loads(corral_project.cli("run", "busy", "--wait", "--json").stdout)
    assert run["state"] == "failed" and run["error"]["kind"] == "guardrail", run
    assert "max_tool_calls (2)" in run["error"]["message"]
    steps = corral_project.cli_json("trace", run["id"])["steps"]
    assert [s.get("guardrail", {}).get("verdict") for s in steps] == [None, None, "stop"]
    assert "limits" in corral_project.cli("trace", run["id"], check=True).stdout


ASSISTANT_KEY = "sk-assistant-test-0123456789"


@pytest.fixture
def assistant(corral_project: CorralProject, server: FakeServer, monkeypatch: pytest.MonkeyPatch) -> CorralProject:
    monkeypatch.setenv("FAKE_KEY", ASSISTANT_KEY)
    corral_project.models["fake"] = {
        "provider": "openai",
        "base_url": f"{server.url}/v1",
        "model": "fake",
        "api_key_env": "FAKE_KEY",
        "retry_attempts": 1,
    }
    corral_project.agents["helper"] = {
        "code": "agents",
        "entry": "corral.assistant:run",
        "models": ["fake"],
        "tools": ["word_count"],
        "input": {"goal": "count the words of 'a b a'", "system": "Be exact."},
    }
    corral_project.write()
    return corral_project


def _call(name: str, args: dict[str, Any], call_id: str = "c1") -> Reply:
    return Reply(body=openai_body("", [(call_id, name, json.dumps(args))]))


def test_the_built_in_agent_runs_tools_until_the_model_calls_finish(
    assistant: CorralProject, server: FakeServer
) -> None:
    server.enqueue(_call("word_count", {"text": "a b a"}), _call("finish", {"result": "a: 2, b: 1"}, "c2"))
    run = json.loads(assistant.cli("run", "helper", "--wait", "--json").stdout)
    assert run["state"] == "succeeded" and run["result"] == "a: 2, b: 1", run
    first, second = (r.json() for r in server.requests)
    assert first["messages"][0] == {"role": "system", "content": "Be exact."}
    assert {t["function"]["name"] for t in first["tools"]} == {"word_count", "finish"}
    tool_turn = second["messages"][-1]
    assert tool_turn["role"] == "tool" and json.loads(tool_turn["content"]) == {"a": 2, "b": 1}


def test_a_model_repeating_itself_is_warned_then_stopped(assistant: CorralProject, server: FakeServer) -> None:
    assistant.agents["helper"]["guardrails"] = {"repeat_warn": 2, "repeat_stop": 3}
    assistant.write()
    server.enqueue(*(_call("word_count", {"text": "same"}, f"c{i}") for i in range(5)))
    run = json.loads(assistant.cli("run", "helper", "--wait", "--json").stdout)
    assert run["state"] == "failed" and run["error"]["kind"] == "guardrail", run
    assert "repeats" in run["error"]["message"]
    third = server.requests[2].json()["messages"][-1]
    assert third["role"] == "tool" and "Change approach or finish" in third["content"], "the warning reached the model"
    verdicts = [s.get("guardrail", {}).get("verdict") for s in assistant.cli_json("trace", run["id"])["steps"]]
    assert verdicts.count("warn") == 1 and verdicts[-1] == "stop"


def test_a_model_that_keeps_calling_unknown_tools_is_stopped(assistant: CorralProject, server: FakeServer) -> None:
    assistant.agents["helper"]["guardrails"] = {"max_refusals": 2}
    assistant.write()
    server.enqueue(_call("wordcount", {"text": "x"}, "c1"), _call("wordcount", {"text": "y"}, "c2"))
    run = json.loads(assistant.cli("run", "helper", "--wait", "--json").stdout)
    assert run["state"] == "failed" and "refusals" in run["error"]["message"], run
    correction = server.requests[1].json()["messages"][-1]["content"]
    assert "did you mean 'word_count'?" in correction, "the refusal names the nearest granted tool"


def test_a_goal_is_required(assistant: CorralProject, server: FakeServer) -> None:
    result = assistant.cli("run", "helper", "--input", "{}", "--wait", "--json")
    run = json.loads(result.stdout)
    assert run["state"] == "failed" and "needs a goal" in run["error"]["message"], run
    assert not server.requests


NO_DELETES = """
import corral
from corral.guardrails import Decision, Verdict


class NoDeletes:
    name = "no-deletes"

    def start(self, run, agent):
        return self

    def before(self, action):
        if action.kind == "tool" and action.args.get("text", "").startswith("delete"):
            return Decision(Verdict.DENY, "deleting is not allowed here; archive instead")
        return None

    def after(self, step):
        return None


class Broken:
    name = "broken"

    def start(self, run, agent):
        return self

    def before(self, action):
        raise RuntimeError("bug in a plugin")

    def after(self, step):
        return None


@corral.hookimpl
def corral_register_guardrails(register):
    register(NoDeletes())
    register(Broken())
"""


def test_a_plugin_guardrail_denies_with_its_reason_and_a_broken_one_only_logs(
    corral_project: CorralProject,
) -> None:
    plugin = corral_project.root / "no_deletes.py"
    plugin.write_text(NO_DELETES)
    corral_project.corral["plugins"] = [str(plugin)]
    agent = """
import corral

def run(ctx):
    kept = ctx.tool("word_count", text="keep this")
    try:
        ctx.tool("word_count", text="delete everything")
    except corral.ToolCallError as exc:
        return {"kept": kept, "refused": exc.kind, "why": str(exc)}
"""
    corral_project.agent("careful", agent, tools=["word_count"])
    run = json.loads(corral_project.cli("run", "careful", "--wait", "--json").stdout)
    assert run["state"] == "succeeded", run
    assert run["result"]["refused"] == "refused" and "archive instead" in run["result"]["why"]
    steps = corral_project.cli_json("trace", run["id"])["steps"]
    assert steps[1]["guardrail"] == {
        "verdict": "deny",
        "reason": "deleting is not allowed here; archive instead",
        "guardrail": "no-deletes",
    }
    log = (corral_project.home / "logs" / "careful.log").read_text()
    assert "guardrail failed" in log and "bug in a plugin" in log


def test_with_the_daemon_down_an_expired_request_still_resumes_its_run_as_denied(deployer: CorralProject) -> None:
    deployer.agents["deployer"]["guardrails"] = {"approval_timeout": "1s"}
    deployer.write()
    run = json.loads(deployer.cli("run", "deployer", "--input", '"prod"', "--wait", "--json").stdout)
    assert run["state"] == "on_hold", run
    [request] = deployer.cli_json("approvals", "--all")
    time.sleep(1.2)
    late = deployer.cli("approve", request["id"], "--json")
    assert late.returncode == 0 and "expired" in late.stderr, late.stderr
    final = json.loads(late.stdout)
    assert final["result"]["refused"] == "denied" and "expired" in final["result"]["message"], final
    assert deployed(deployer) == []


def test_a_model_that_keeps_sending_unusable_arguments_is_stopped(assistant: CorralProject, server: FakeServer) -> None:
    """Malformed argument JSON never becomes a step, so the built-in agent bounds it itself."""
    broken = [Reply(body=openai_body("", [(f"c{i}", "word_count", '{"text": "a b')])) for i in range(5)]
    server.enqueue(*broken)
    run = json.loads(assistant.cli("run", "helper", "--wait", "--json").stdout)
    assert run["state"] == "failed", run
    assert "unusable arguments 5 times in a row" in run["error"]["message"], run["error"]
    assert len(server.requests) == 5, "no sixth paid turn"
    second = server.requests[1].json()["messages"][-1]
    assert second["role"] == "tool" and "not valid JSON" in second["content"], "the model was told what was wrong"


def test_one_unusable_call_is_corrected_and_the_run_goes_on(assistant: CorralProject, server: FakeServer) -> None:
    server.enqueue(
        Reply(body=openai_body("", [("c1", "word_count", "{not json")])),
        _call("word_count", {"text": "a b a"}, "c2"),
        _call("finish", {"result": "done"}, "c3"),
    )
    run = json.loads(assistant.cli("run", "helper", "--wait", "--json").stdout)
    assert run["state"] == "succeeded" and run["result"] == "done", run


def test_time_waiting_for_approval_does_not_count_towards_max_run_seconds(deployer: CorralProject) -> None:
    deployer.agents["deployer"]["guardrails"] = {"max_run_seconds": 3}  # two attempts take well under 3 s
    deployer.write()
    run = json.loads(deployer.cli("run", "deployer", "--input", '"prod"', "--wait", "--json").stdout)
    assert run["state"] == "on_hold", run
    time.sleep(3.5)  # longer on hold than the run may run
    [request] = deployer.cli_json("approvals")
    result = deployer.cli("approve", request["id"], "--json")
    assert result.returncode == 0, result.stderr
    final = json.loads(result.stdout)
    assert final["state"] == "succeeded" and final["result"] == "deployed to prod", final
    assert 0 < final["ran_seconds"] < 3, "only the two attempts' running time counts"
