"""ctx.model end to end: a real daemon or foreground run, a real HTTP model server on 127.0.0.1."""

from __future__ import annotations

import json
import os
import signal
import time
from typing import Any

import pytest

from corral.testing import CorralProject
from tests.models.fake_servers import FakeServer, Reply, openai_body

KEY = "sk-test-e2e-0123456789abcdef"
KEY_VAR = "FAKE_MODEL_KEY"

CHAT = """
import os
import corral

def run(ctx):
    answers = []
    for i in range(ctx.input["calls"]):
        try:
            r = ctx.model([{"role": "user", "text": f"question {i}"}], tools=["word_count"], max_tokens=50)
        except corral.ModelCallError as exc:
            answers.append({"error": exc.kind, "message": str(exc)})
            break
        answers.append({"text": r.text, "calls": [[c.name, c.arguments] for c in r.tool_calls],
                        "tokens": [r.usage.input_tokens, r.usage.output_tokens]})
        if ctx.input.get("wait_for"):
            import time, pathlib
            while i == 1 and not pathlib.Path(ctx.input["wait_for"]).exists():
                time.sleep(0.05)
    return {"answers": answers, "env_has_key": any("sk-test" in v for v in os.environ.values())}
"""


@pytest.fixture
def project(corral_project: CorralProject, server: FakeServer, monkeypatch: pytest.MonkeyPatch) -> CorralProject:
    monkeypatch.setenv(KEY_VAR, KEY)
    corral_project.models["fake"] = {
        "provider": "openai",
        "base_url": f"{server.url}/v1",
        "model": "fake-gpt",
        "api_key_env": KEY_VAR,
        "retry_attempts": 2,
        "retry_initial_wait": 0.05,
        "prices": {"input": 2.0, "output": 8.0},
    }
    corral_project.agent("chat", CHAT, tools=["word_count"], models=["fake"])
    return corral_project


def _run(project: CorralProject, payload: dict[str, Any]) -> dict[str, Any]:
    result = project.cli("run", "chat", "--input", json.dumps(payload), "--wait", "--json")
    assert result.returncode in (0, 1), result.stderr
    return json.loads(result.stdout)


def _everything_written(project: CorralProject) -> str:
    """Every log file, the store's files and the trace, as text."""
    text = ""
    for path in project.home.rglob("*"):
        if path.is_file() and not path.name.endswith(".sock"):
            text += path.read_bytes().decode("utf-8", "replace")
    return text


def test_a_model_call_with_tool_calls_is_brokered_journaled_and_priced(
    project: CorralProject, server: FakeServer
) -> None:
    server.enqueue(Reply(body=openai_body("", [("c1", "word_count", '{"text": "a b c"}')], usage=(100, 20))))
    run = _run(project, {"calls": 1})
    assert run["state"] == "succeeded", run
    answer = run["result"]["answers"][0]
    assert answer == {"text": "", "calls": [["word_count", {"text": "a b c"}]], "tokens": [100, 20]}
    assert run["result"]["env_has_key"] is False, "the agent's process must never see the API key"
    sent = server.requests[0]
    assert sent.headers["authorization"] == f"Bearer {KEY}"
    body = sent.json()
    assert body["messages"] == [{"role": "user", "content": "question 0"}]
    assert body["tools"][0]["function"]["name"] == "word_count"
    assert body["tools"][0]["function"]["parameters"]["properties"]["text"]["type"] == "string"
    trace = json.loads(project.cli("trace", run["id"], "--json", check=True).stdout)
    model_steps = [s for s in trace["steps"] if s["kind"] == "model"]
    assert model_steps[0]["usage"] == {"input_tokens": 100, "output_tokens": 20}
    assert model_steps[0]["cost_usd"] == "0.00036"  # 100 * 2/1e6 + 20 * 8/1e6
    assert KEY not in _everything_written(project) + json.dumps(trace)


def test_401_is_not_retried_and_the_agent_sees_what_to_fix(project: CorralProject, server: FakeServer) -> None:
    server.enqueue(Reply(status=401, body={"error": {"message": "Incorrect API key provided"}}))
    run = _run(project, {"calls": 1})
    answer = run["result"]["answers"][0]
    assert answer["error"] == "auth" and KEY_VAR in answer["message"], answer
    assert len(server.requests) == 1
    assert KEY not in answer["message"]


def test_a_missing_key_is_reported_as_not_configured(
    project: CorralProject, server: FakeServer, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.delenv(KEY_VAR)
    run = _run(project, {"calls": 1})
    answer = run["result"]["answers"][0]
    assert answer["error"] == "not_configured" and f"set {KEY_VAR}" in answer["message"], answer
    assert not server.requests


def test_the_run_budget_stops_the_run_before_the_call_that_would_exceed_it(
    project: CorralProject, server: FakeServer
) -> None:
    project.agents["chat"]["budget"] = {"run_calls": 1}
    project.write()
    server.enqueue(Reply(body=openai_body("one")), Reply(body=openai_body("two")))
    run = _run(project, {"calls": 2})
    assert run["state"] == "failed" and run["error"]["kind"] == "budget", run
    assert "run_calls" in run["error"]["message"]
    assert len(server.requests) == 1, "the call over budget must not reach the provider"


def test_transient_errors_are_retried_then_the_run_is_interrupted_and_resumes_without_rebilling(
    project: CorralProject, server: FakeServer
) -> None:
    """Call 1 succeeds; call 2 meets 503 on every retry of two attempts' worth: the run is
    interrupted and retried; its retry answers call 1 from the journal (not sent again)."""
    project.agents["chat"]["max_attempts"] = 2
    project.write()
    server.enqueue(
        Reply(body=openai_body("first")),
        Reply(status=503),
        Reply(status=503),
        Reply(body=openai_body("second")),
    )
    run = _run(project, {"calls": 2})
    assert run["state"] == "succeeded" and run["attempt"] == 2, run
    assert [a["text"] for a in run["result"]["answers"]] == ["first", "second"]
    assert len(server.requests) == 4, "call 1 is replayed from the journal on the retry, not sent again"


def test_kill_9_of_the_daemon_mid_run_resumes_without_rebilling_finished_calls(
    project: CorralProject, server: FakeServer
) -> None:
    go = project.root / "go"
    server.enqueue(*(Reply(body=openai_body(f"answer {i}")) for i in range(3)))
    daemon = project.start_daemon()
    started = project.cli("run", "chat", "--input", json.dumps({"calls": 3, "wait_for": str(go)}), "--json", check=True)
    run_id = json.loads(started.stdout)["id"]
    deadline = time.monotonic() + 60
    while len(server.requests) < 2 and time.monotonic() < deadline:
        time.sleep(0.05)
    time.sleep(0.5)  # call 2's answer journaled; the agent now waits for the go file
    os.kill(daemon.pid, signal.SIGKILL)
    daemon.process.wait(10)
    go.touch()
    project.start_daemon()
    final = project.wait_for_run(run_id)
    assert final["state"] == "succeeded", final
    assert [a["text"] for a in final["result"]["answers"]] == ["answer 0", "answer 1", "answer 2"]
    assert len(server.requests) == 3, "calls finished before the kill are answered from the journal"
