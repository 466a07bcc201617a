"""ctx.model end to end: a real daemon or foreground run, a real HTTP model server on 127.0.0.1."""

from __future__ import annotations

import json
import os
import signal
import time
from typing import Any

import pytest

from corral.testing import CorralProject
from tests.models.fake_servers import FakeServer, Reply, anthropic_body, openai_body
from tests.projects import KEY, KEY_VAR


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
    chat_project: CorralProject, server: FakeServer
) -> None:
    server.enqueue(Reply(body=openai_body("", [("c1", "word_count", '{"text": "a b c"}')], usage=(100, 20))))
    run = _run(chat_project, {"calls": 1})
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
    trace = json.loads(chat_project.cli("trace", run["id"], "--json", check=True).stdout)
    model_steps = [s for s in trace["steps"] if s["kind"] == "model"]
    assert model_steps[0]["usage"] == {"input_tokens": 100, "output_tokens": 20}
    assert model_steps[0]["cost_usd"] == "0.00036"  # 100 * 2/1e6 + 20 * 8/1e6
    assert KEY not in _everything_written(chat_project) + json.dumps(trace)


def test_401_is_not_retried_and_the_agent_sees_what_to_fix(chat_project: CorralProject, server: FakeServer) -> None:
    server.enqueue(Reply(status=401, body={"error": {"message": "Incorrect API key provided"}}))
    run = _run(chat_project, {"calls": 1})
    answer = run["result"]["answers"][0]
    assert answer["error"] == "auth" and KEY_VAR in answer["message"], answer
    assert len(server.requests) == 1
    assert KEY not in answer["message"]


def test_a_missing_key_is_reported_as_not_configured(
    chat_project: CorralProject, server: FakeServer, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.delenv(KEY_VAR)
    run = _run(chat_project, {"calls": 1})
    answer = run["result"]["answers"][0]
    assert answer["error"] == "not_configured" and f"set {KEY_VAR}" in answer["message"], answer
    assert not server.requests


def test_the_run_budget_stops_the_run_before_the_call_that_would_exceed_it(
    chat_project: CorralProject, server: FakeServer
) -> None:
    chat_project.agents["chat"]["budget"] = {"run_calls": 1}
    chat_project.write()
    server.enqueue(Reply(body=openai_body("one")), Reply(body=openai_body("two")))
    run = _run(chat_project, {"calls": 2})
    assert run["state"] == "failed" and run["error"]["kind"] == "budget", run
    assert "run_calls" in run["error"]["message"]
    assert len(server.requests) == 1, "the call over budget must not reach the provider"


def test_transient_errors_past_every_retry_fail_the_run_resumable_and_retry_does_not_rebill(
    chat_project: CorralProject, server: FakeServer
) -> None:
    """Call 1 succeeds; call 2 meets 503 on both of its tries: the run fails, marked
    resumable, with the alert raised; `corral retry` answers call 1 from the journal (not
    sent again) and makes call 2 now."""
    server.enqueue(Reply(body=openai_body("first")), Reply(status=503), Reply(status=503))
    run = _run(chat_project, {"calls": 2})
    assert run["state"] == "failed" and run["error"]["kind"] == "model" and run["error"]["resumable"], run
    assert "did not answer after every retry" in run["error"]["message"]
    assert len(server.requests) == 3
    assert "model calls failing" in (chat_project.home / "logs" / "chat.log").read_text()
    server.enqueue(Reply(body=openai_body("second")))
    retried = chat_project.cli("retry", run["id"], "--wait", "--json")
    assert retried.returncode == 0, retried.stderr
    final = json.loads(retried.stdout)
    assert final["state"] == "succeeded", final
    assert [a["text"] for a in final["result"]["answers"]] == ["first", "second"]
    assert len(server.requests) == 4, "call 1 is replayed from the journal on the retry, not sent again"
    assert final["spent"]["calls"] == 2
    again = chat_project.cli("retry", run["id"])
    assert again.returncode == 5 and "succeeded" in again.stderr and "corral run" in again.stderr


def test_an_open_breaker_makes_other_calls_wait_for_the_endpoint_then_go_through(
    chat_project: CorralProject, server: FakeServer
) -> None:
    # a cool-down longer than a loaded machine takes to start the second run, so it finds the breaker open
    chat_project.models["fake"].update(retry_attempts=1, breaker_failures=1, breaker_cool_down=10.0, breaker_wait=30)
    chat_project.start_daemon()  # one daemon: its breaker is shared by both runs
    server.enqueue(Reply(status=503))
    first = _run(chat_project, {"calls": 1})
    assert first["state"] == "failed" and first["error"]["resumable"], first
    server.enqueue(Reply(body=openai_body("back")))
    second = _run(chat_project, {"calls": 1})
    assert second["state"] == "succeeded", second
    assert second["result"]["answers"][0]["text"] == "back"
    assert "waiting for model endpoint to recover" in (chat_project.home / "logs" / "chat.log").read_text()


def test_with_breaker_wait_0_an_open_breaker_fails_the_run_at_once_without_sending(
    chat_project: CorralProject, server: FakeServer
) -> None:
    chat_project.models["fake"].update(retry_attempts=1, breaker_failures=1, breaker_cool_down=60.0, breaker_wait=0)
    chat_project.start_daemon()
    server.enqueue(Reply(status=503))
    assert _run(chat_project, {"calls": 1})["state"] == "failed"
    second = _run(chat_project, {"calls": 1})
    assert second["state"] == "failed" and "circuit" in second["error"]["message"], second
    assert len(server.requests) == 1, "an open breaker does not hammer a dead endpoint"


def test_a_429_retry_after_is_waited_out_before_the_next_try(chat_project: CorralProject, server: FakeServer) -> None:
    server.enqueue(Reply(status=429, headers={"Retry-After": "1"}), Reply(body=openai_body("patient")))
    run = _run(chat_project, {"calls": 1})
    assert run["state"] == "succeeded", run
    first, second = server.requests
    assert second.at - first.at >= 0.95, "the retry honoured Retry-After: 1"


def test_the_daily_budget_stops_the_agent_for_the_day_and_alerts(
    chat_project: CorralProject, server: FakeServer
) -> None:
    chat_project.agents["chat"]["budget"] = {"day_calls": 2, "soft_alerts": [0.5]}
    chat_project.write()
    server.enqueue(*(Reply(body=openai_body(f"a{i}")) for i in range(3)))
    assert _run(chat_project, {"calls": 2})["state"] == "succeeded"
    refused = _run(chat_project, {"calls": 1})
    assert refused["state"] == "failed" and refused["error"]["kind"] == "budget", refused
    assert "day_calls" in refused["error"]["message"] and refused["error"]["resumable"]
    assert len(server.requests) == 2, "the call over the daily cap never reached the provider"
    log = (chat_project.home / "logs" / "chat.log").read_text()
    assert "used 50% of the daily calls budget" in log and "daily model budget spent" in log
    spend = json.loads(chat_project.cli("spend", "--json", check=True).stdout)
    assert spend["groups"]["chat"]["calls"] == 2 and spend["total"]["input_tokens"] > 0
    runs = json.loads(chat_project.cli("runs", "--json", check=True).stdout)
    assert sum(r.get("spent", {}).get("calls", 0) for r in runs) == 2


def test_kill_9_of_the_daemon_mid_run_resumes_without_rebilling_finished_calls(
    chat_project: CorralProject, server: FakeServer
) -> None:
    go = chat_project.home / "agents" / "chat" / "go"  # where the agent can see it: nothing else is in its sandbox
    server.enqueue(*(Reply(body=openai_body(f"answer {i}")) for i in range(3)))
    daemon = chat_project.start_daemon()
    started = chat_project.cli(
        "run", "chat", "--input", json.dumps({"calls": 3, "wait_for": str(go)}), "--json", check=True
    )
    run_id = json.loads(started.stdout)["id"]
    deadline = time.monotonic() + 60
    while len(server.requests) < 2 and time.monotonic() < deadline:
        time.sleep(0.05)
    time.sleep(0.5)  # call 2's answer journaled; the agent now waits for the go file
    os.kill(daemon.pid, signal.SIGKILL)
    daemon.process.wait(10)
    go.touch()
    chat_project.start_daemon()
    final = chat_project.wait_for_run(run_id)
    assert final["state"] == "succeeded", final
    assert [a["text"] for a in final["result"]["answers"]] == ["answer 0", "answer 1", "answer 2"]
    assert len(server.requests) == 3, "calls finished before the kill are answered from the journal"


def test_an_anthropic_model_with_tool_use_is_brokered_and_the_key_stays_in_the_daemon(
    chat_project: CorralProject, server: FakeServer
) -> None:
    chat_project.models["claude"] = {
        "provider": "anthropic",
        "base_url": server.url,
        "model": "fake-claude",
        "api_key_env": KEY_VAR,
        "retry_attempts": 2,
        "retry_initial_wait": 0.05,
        "prices": {"input": 1.0, "output": 5.0},
    }
    chat_project.agents["chat"]["models"] = ["claude"]
    chat_project.write()
    server.enqueue(
        Reply(status=529, body={"type": "error", "error": {"type": "overloaded_error", "message": "Overloaded"}}),
        Reply(body=anthropic_body("", [("tu_1", "word_count", {"text": "x y"})], usage=(30, 10))),
    )
    run = _run(chat_project, {"calls": 1})
    assert run["state"] == "succeeded", run
    assert run["result"]["answers"][0]["calls"] == [["word_count", {"text": "x y"}]]
    assert run["result"]["env_has_key"] is False
    sent = server.requests[-1]
    assert sent.path == "/v1/messages" and sent.headers["x-api-key"] == KEY
    assert sent.json()["tools"][0]["input_schema"]["properties"]["text"]["type"] == "string"
    trace = chat_project.cli("trace", run["id"], "--json", check=True).stdout
    assert json.loads(trace)["steps"][0]["cost_usd"] == "0.00008"  # 30 * 1/1e6 + 10 * 5/1e6
    assert KEY not in _everything_written(chat_project) + trace


ECHO_PROVIDER = """
import json

import corral
from corral.models.provider import HttpCall
from corral.models.types import Response, Usage


class Echo:
    name = "echo"

    def build(self, endpoint, request):
        return HttpCall("/echo", {"content-type": "application/json"}, {"say": request.messages[-1].text})

    def parse(self, endpoint, body, headers):
        said = json.loads(body)["said"]
        return Response(said, (), "stop", "done", Usage(3, 2), endpoint.model, self.name)


@corral.hookimpl
def corral_register_model_providers(register):
    register(Echo())
"""


def test_a_plugin_adds_a_model_provider_with_the_same_retries_journal_and_cost(
    chat_project: CorralProject, server: FakeServer
) -> None:
    plugin = chat_project.root / "echo_provider.py"
    plugin.write_text(ECHO_PROVIDER)
    chat_project.corral["plugins"] = [str(plugin)]
    chat_project.models["fake"].update(provider="echo")
    chat_project.write()
    server.enqueue(Reply(status=503), Reply(body={"said": "hello back"}))
    run = _run(chat_project, {"calls": 1})
    assert run["state"] == "succeeded", run
    assert run["result"]["answers"][0]["text"] == "hello back"
    assert [r.path for r in server.requests] == ["/v1/echo", "/v1/echo"], "retried like any provider"
    assert server.requests[1].json() == {"say": "question 0"}
    assert run["spent"]["calls"] == 1 and run["spent"]["input_tokens"] == 3
    chat_project.models["fake"].update(provider="nonesuch")
    chat_project.write()
    check = chat_project.cli("check")
    assert check.returncode == 1 and "no installed plugin provides 'nonesuch'" in check.stderr
