"""`[models.NAME] fallbacks` (issue 18, item 4): a model that cannot answer (its retries
exhausted, its breaker open, a daily budget refusing it) hands the call to the next granted
fallback, in a real daemon against two scripted model servers on 127.0.0.1; the journal
says which model answered and why, spend counts against it, and one alert per episode."""

from __future__ import annotations

import json
import time
from collections.abc import Iterator
from typing import Any

import pytest

from corral.testing import CorralProject
from tests.models.fake_servers import FakeServer, Reply, openai_body
from tests.projects import CHAT, KEY, KEY_VAR, fake_model


@pytest.fixture
def local() -> Iterator[FakeServer]:
    """The fallback's server: a local model without prices, as an Ollama would be."""
    fake = FakeServer().start()
    yield fake
    fake.stop()


@pytest.fixture
def chain(
    corral_project: CorralProject, server: FakeServer, local: FakeServer, monkeypatch: pytest.MonkeyPatch
) -> CorralProject:
    monkeypatch.setenv(KEY_VAR, KEY)
    corral_project.models["fake"] = fake_model(
        server.url, retry_attempts=1, breaker_failures=1, breaker_cool_down=60.0, fallbacks=["local"]
    )
    corral_project.models["local"] = {
        "provider": "openai",
        "base_url": f"{local.url}/v1",
        "model": "llama",
        "retry_attempts": 1,
    }
    corral_project.agent("chat", CHAT, tools=["word_count"], models=["fake", "local"])
    return corral_project


def _model_steps(project: CorralProject, run_id: str) -> list[dict[str, Any]]:
    return [s for s in project.cli_json("trace", run_id)["steps"] if s["kind"] == "model"]


def _failover_alerts(project: CorralProject) -> list[dict[str, Any]]:
    return [r["alert"] for r in project.cli_json("alerts") if r["alert"]["key"] == "failover:fake"]


@pytest.mark.slow
def test_a_failing_model_fails_over_once_per_episode_and_recovers(
    chain: CorralProject, server: FakeServer, local: FakeServer
) -> None:
    chain.models["fake"]["breaker_cool_down"] = 2.0
    chain.write()
    chain.start_daemon()
    server.enqueue(Reply(status=503, body={"error": {"message": "overloaded"}}))
    local.enqueue(Reply(body=openai_body("from local", usage=(10, 2))), Reply(body=openai_body("again", usage=(10, 2))))

    run = chain.wait_for_run(chain.cli_json("run", "chat", "--input", '{"calls": 2}')["id"], ("succeeded", "failed"))
    assert run["state"] == "succeeded", run
    assert [a["text"] for a in run["result"]["answers"]] == ["from local", "again"]
    assert len(server.requests) == 1, "the open breaker sends the second call straight to the fallback"
    assert len(local.requests) == 2
    first, second = _model_steps(chain, run["id"])
    assert first["model"] == "local" and first["failed_over"][0]["model"] == "fake", first
    assert "503" in first["failed_over"][0]["reason"] or "overloaded" in first["failed_over"][0]["reason"], first
    assert second["model"] == "local" and "breaker" in second["failed_over"][0]["reason"], second
    assert "local (after fake)" in chain.cli("trace", run["id"], check=True).stdout
    spend = chain.cli_json("spend", "--by", "model")["groups"]
    assert set(spend) == {"local"} and spend["local"]["calls"] == 2, spend

    (alert,) = _failover_alerts(chain)
    assert alert["title"] == "model 'fake' failing over to 'local'" and not alert["resolved"], alert

    time.sleep(2.2)  # the primary's breaker half-opens; its trial call succeeds
    server.enqueue(Reply(body=openai_body("primary back")))
    again = chain.wait_for_run(chain.cli_json("run", "chat", "--input", '{"calls": 1}')["id"], ("succeeded", "failed"))
    assert again["result"]["answers"][0]["text"] == "primary back", again
    (step,) = _model_steps(chain, again["id"])
    assert step["model"] == "fake" and "failed_over" not in step, step
    deadline = time.monotonic() + 10
    while not any(a["resolved"] for a in _failover_alerts(chain)):
        assert time.monotonic() < deadline, _failover_alerts(chain)
        time.sleep(0.1)
    assert sum(not a["resolved"] for a in _failover_alerts(chain)) == 1, "one alert for the whole episode"


def test_a_spent_daily_budget_fails_over_to_a_cheap_local_model(
    chain: CorralProject, server: FakeServer, local: FakeServer
) -> None:
    """The primary's worst case no longer fits the agent's day; the cheap fallback's does,
    so the call is made there and the agent is not paused."""
    chain.models["local"]["prices"] = {"input": 0.01, "output": 0.01}
    chain.agents["chat"]["budget"] = {"day_cost_usd": 0.0001}
    chain.write()
    local.enqueue(Reply(body=openai_body("free")))
    result = chain.cli("run", "chat", "--input", '{"calls": 1}', "--wait", "--json")
    assert result.stdout, result.stderr
    run = json.loads(result.stdout)
    assert run["state"] == "succeeded" and run["result"]["answers"][0]["text"] == "free", run
    assert not server.requests
    (step,) = _model_steps(chain, run["id"])
    assert step["model"] == "local" and "day_cost_usd" in step["failed_over"][0]["reason"], step
    assert chain.cli_json("status")["agents"]["chat"]["state"] != "paused"


def test_the_last_model_fails_as_one_without_fallbacks_naming_each_it_tried(
    chain: CorralProject, server: FakeServer, local: FakeServer
) -> None:
    server.enqueue(Reply(status=503))
    local.enqueue(Reply(status=503))
    result = chain.cli("run", "chat", "--input", '{"calls": 1}', "--wait", "--json")
    assert result.stdout, result.stderr
    run = json.loads(result.stdout)
    assert run["state"] == "failed" and run["error"]["resumable"], run
    message = run["error"]["message"]
    assert "model 'local' did not answer" in message and "failed over from model 'fake'" in message, message


def test_a_fallback_the_agent_is_not_granted_is_not_used(
    chain: CorralProject, server: FakeServer, local: FakeServer
) -> None:
    chain.agents["chat"]["models"] = ["fake"]
    chain.write()
    server.enqueue(Reply(status=503))
    result = chain.cli("run", "chat", "--input", '{"calls": 1}', "--wait", "--json")
    assert result.stdout, result.stderr
    run = json.loads(result.stdout)
    assert run["state"] == "failed" and "failed over" not in run["error"]["message"], run
    assert not local.requests


@pytest.mark.parametrize(
    ("fallbacks", "phrase"),
    [
        (["fake"], "'fake' cannot be its own fallback"),
        (["nowhere"], "'nowhere' is not a configured model (configured: local)"),
        (["local", "local"], "'local' is listed twice"),
        ("local", "is not a list of non-empty strings"),
    ],
)
def test_bad_fallbacks_are_refused_with_the_fix(chain: CorralProject, fallbacks: Any, phrase: str) -> None:
    chain.models["fake"]["fallbacks"] = fallbacks
    chain.write()
    result = chain.cli("check")
    assert result.returncode == 3 and "[models.fake] fallbacks" in result.stderr and phrase in result.stderr, (
        result.stderr
    )
