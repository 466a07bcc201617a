"""Regressions found reviewing issues 3 and 4 (budgets, model calls, guardrails, approvals):
each test failed before its fix, against a real store, real processes and real loopback HTTP."""

from __future__ import annotations

import asyncio
import dataclasses
import json
import time
from pathlib import Path
from typing import Any

import pytest

from corral.approvals import Approvals
from corral.budget import Refusal, Reservation, Tally, Worst, next_day
from corral.config import load_config
from corral.host import host
from corral.store import Store
from corral.testing import CorralProject
from tests.e2e.test_guardrails import _deployed, _held, deployer  # noqa: F401 - fixture
from tests.e2e.test_models import project  # noqa: F401 - fixture
from tests.models.fake_servers import FakeServer, Reply, openai_body
from tests.test_budget import NOON, Clock, _call, _config, _ledger, _settle, store  # noqa: F401 - fixture

# --------------------------------------------------------------------------- the daily ledger


def test_a_second_load_does_not_wipe_the_calls_in_flight(tmp_path: Path, store: Store) -> None:  # noqa: F811
    """Two runs' first calls both find the ledger unloaded and both queue a load; the
    second must not drop the reservation the first already holds (it would overshoot the
    cap, and releasing that reservation raised KeyError and crashed the run's attempt)."""
    ledger = _ledger(_config(tmp_path, "day_calls = 1"), store, Clock(NOON))
    held = ledger.reserve("a", Worst(10, 100))
    assert isinstance(held, Reservation)
    with store.read() as txn:
        ledger.load(txn)  # the second run's load, done by the writer after the first call reserved
    assert isinstance(ledger.reserve("a", Worst(10, 100)), Refusal), "the call in flight still counts"
    ledger.release(held)


def test_a_call_settled_just_after_midnight_counts_for_the_new_day(tmp_path: Path, store: Store) -> None:  # noqa: F811
    clock = Clock(next_day(NOON) - 1)  # 23:59:59
    ledger = _ledger(_config(tmp_path, "day_calls = 1"), store, clock)
    held = ledger.reserve("a", Worst(10, 100))
    assert isinstance(held, Reservation)
    clock.now = next_day(NOON) + 1  # the answer comes after midnight: its spend is the new day's
    _settle(ledger, store, held, "a", _call())
    assert isinstance(_ledger(ledger.config, store, clock).reserve("a", Worst(1, 1)), Refusal), "the store says spent"
    assert isinstance(ledger.reserve("a", Worst(1, 1)), Refusal), "and so does the running daemon"


def test_an_agent_removed_by_a_reload_can_finish_its_call(tmp_path: Path, store: Store) -> None:  # noqa: F811
    """A running run keeps its config across a reload; the ledger must not look its agent
    up in the new config (KeyError on the event loop, and inside the journal's commit)."""
    config = _config(tmp_path, global_budget="day_calls = 5")
    ledger = _ledger(config, store, Clock(NOON))
    held = ledger.reserve("a", Worst(10, 100))
    assert isinstance(held, Reservation)
    ledger.config = dataclasses.replace(config, agents={"b": config.agents["b"]})  # Engine.reconfigure
    assert isinstance(ledger.reserve("a", Worst(10, 100)), Reservation), "the global cap still applies"
    _settle(ledger, store, held, "a", Tally(input_tokens=10, cost_micro_usd=100, calls=1))


# --------------------------------------------------------------------------- model calls in a daemon


@pytest.fixture
def chat(project: CorralProject) -> CorralProject:  # noqa: F811 - test_models' fixture, by name
    """test_models' chat agent with one try per call (no retry waits)."""
    project.models["fake"]["retry_attempts"] = 1
    project.write()
    return project


def _wait_requests(server: FakeServer, count: int) -> None:
    deadline = time.monotonic() + 30
    while len(server.requests) < count:
        assert time.monotonic() < deadline, f"the model server saw {len(server.requests)} requests, not {count}"
        time.sleep(0.05)


def test_retrying_a_resumable_failure_is_not_refused_for_attempts_used_before(
    chat: CorralProject, server: FakeServer
) -> None:
    """``max_attempts`` bounds crash loops; a run failed for a passing reason and retried by
    a human gets its attempts again (it was refused as "gave up after 1 attempts")."""
    chat.agents["chat"]["max_attempts"] = 1
    chat.write()
    server.enqueue(Reply(status=503))
    failed = json.loads(chat.cli("run", "chat", "--input", '{"calls": 1}', "--wait", "--json").stdout)
    assert failed["state"] == "failed" and failed["error"]["resumable"], failed
    server.enqueue(Reply(body=openai_body("back")))
    retried = chat.cli("retry", failed["id"], "--wait", "--json")
    final = json.loads(retried.stdout)
    assert final["state"] == "succeeded", final
    assert final["result"]["answers"][0]["text"] == "back"


def test_a_run_whose_agent_and_model_are_removed_by_a_reload_ends_its_call_cleanly(
    chat: CorralProject, server: FakeServer
) -> None:
    """A running run keeps its config across a reload; its next model call must end as a
    model error the agent reads, not crash in the daemon (the run stayed "running")."""
    go = chat.home / "agents" / "chat" / "go"  # where the agent can see it: nothing else is in its sandbox
    server.enqueue(*(Reply(body=openai_body(f"answer {i}")) for i in range(3)))
    chat.start_daemon()
    started = chat.cli_json("run", "chat", "--input", json.dumps({"calls": 3, "wait_for": str(go)}))
    _wait_requests(server, 2)
    chat.agent("other", "def run(ctx):\n    return 1\n")
    del chat.agents["chat"], chat.models["fake"]
    chat.write()
    chat.cli("reload", check=True)
    go.touch()
    final = chat.wait_for_run(started["id"], states=("succeeded", "failed"), timeout=30)
    assert final["state"] == "succeeded", final
    answers = final["result"]["answers"]
    assert [a.get("text") for a in answers[:2]] == ["answer 0", "answer 1"]
    assert answers[2]["error"] == "not_configured" and "fake" in answers[2]["message"], answers
    assert "run crashed in the daemon" not in (chat.home / "logs" / "corral.log").read_text()


def test_a_run_waiting_for_an_open_breaker_when_the_daemon_stops_resumes_after_it(
    chat: CorralProject, server: FakeServer
) -> None:
    """Stopping the daemon interrupts the wait (resumed at the next start), instead of
    failing the run as if the endpoint had stayed down."""
    # a cool-down far longer than a (loaded) machine takes to start the second run, so the
    # daemon is stopped while that run still waits, never after the breaker let it through
    chat.models["fake"].update(breaker_failures=1, breaker_cool_down=30.0, breaker_wait=60)
    daemon = chat.start_daemon()
    server.enqueue(Reply(status=503))
    first = chat.cli_json("run", "chat", "--input", '{"calls": 1}')
    assert chat.wait_for_run(first["id"], states=("failed",))["error"]["resumable"]
    waiting = chat.cli_json("run", "chat", "--input", '{"calls": 1}')
    deadline = time.monotonic() + 30
    while "waiting for model endpoint to recover" not in (chat.home / "logs" / "chat.log").read_text():
        assert time.monotonic() < deadline, "the second run did not wait for the breaker"
        time.sleep(0.1)
    assert daemon.stop() == 0
    stopped = chat.run_record(waiting["id"])
    assert stopped["state"] == "interrupted", stopped
    server.enqueue(Reply(body=openai_body("back")))
    chat.start_daemon()
    final = chat.wait_for_run(waiting["id"], states=("succeeded", "failed"))
    assert final["state"] == "succeeded" and final["result"]["answers"][0]["text"] == "back", final


# --------------------------------------------------------------------------- approvals


class DecidedAtOnce(Approvals):
    """A human who approves each request the moment it is stored: before the engine has
    put its run on hold (the alert and `corral approvals` show the request that early)."""

    def request(self, txn: Any, **fields: Any) -> dict[str, Any]:
        record = super().request(txn, **fields)
        return self.decide(txn, record["id"], True)


def test_an_approval_decided_before_its_run_is_on_hold_still_resumes_the_run(
    deployer: CorralProject,  # noqa: F811
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """It used to find no held run to queue, then the run was put on hold for good."""
    monkeypatch.setenv("CORRAL_HOME", str(deployer.home))
    config = load_config(deployer.write())
    with host(config, echo=None) as engine:
        engine.processes.prepare(config.home / "agents")
        engine.approvals = DecidedAtOnce(engine.store.dbs)

        async def go() -> dict[str, Any]:
            run = await engine.create_run("deployer", "prod")
            return await engine.execute(run["id"])

        final = asyncio.run(go())
    assert final["state"] == "succeeded" and final["result"] == "deployed to prod", final
    assert _deployed(deployer) == ["prod"]


def test_approvals_do_not_use_up_the_runs_attempts(deployer: CorralProject) -> None:  # noqa: F811
    """Each approval ends an attempt; with max_attempts = 1 the approved run was refused."""
    deployer.agents["deployer"]["max_attempts"] = 1
    deployer.start_daemon()
    approval, run = _held(deployer, "prod")
    assert deployer.cli("approve", approval).returncode == 0
    final = deployer.wait_for_run(run["id"], states=("succeeded", "failed"))
    assert final["state"] == "succeeded" and final["result"] == "deployed to prod", final


ASK_FIRST = """
import corral
from corral.guardrails import Decision, Verdict


class AskFirst:
    name = "ask-first"

    def start(self, run, agent):
        return self

    def before(self, action):
        if action.kind == "model":
            return Decision(Verdict.APPROVE, "every model call is approved by a human")
        return None

    def after(self, step):
        return None


@corral.hookimpl
def corral_register_guardrails(register):
    register(AskFirst())
"""


def test_a_model_call_a_guardrail_sends_for_approval_is_made_once_approved(
    chat: CorralProject, server: FakeServer
) -> None:
    """An approved model step was answered with "exec" (a tool's answer): the agent's
    process looked for a tool named after the model and the call was never made."""
    plugin = chat.root / "ask_first.py"
    plugin.write_text(ASK_FIRST)
    chat.corral["plugins"] = [str(plugin)]
    chat.write()
    held = json.loads(chat.cli("run", "chat", "--input", '{"calls": 1}', "--wait", "--json").stdout)
    assert held["state"] == "on_hold" and held["error"]["kind"] == "approval", held
    assert not server.requests, "nothing is sent before the approval"
    [request] = chat.cli_json("approvals")
    server.enqueue(Reply(body=openai_body("approved answer")))
    approved = chat.cli("approve", request["id"], "--json")
    final = json.loads(approved.stdout)
    assert final["state"] == "succeeded", final
    assert final["result"]["answers"][0]["text"] == "approved answer", final
    assert len(server.requests) == 1


def test_cancelling_a_run_that_waits_for_an_open_breaker_does_not_wait_for_the_endpoint(
    chat: CorralProject, server: FakeServer
) -> None:
    """The wait only watched limits and shutdown: `corral cancel` took effect after breaker_wait."""
    chat.models["fake"].update(breaker_failures=1, breaker_cool_down=120.0, breaker_wait=120)
    chat.start_daemon()
    server.enqueue(Reply(status=503))
    first = chat.cli_json("run", "chat", "--input", '{"calls": 1}')
    chat.wait_for_run(first["id"], states=("failed",))
    waiting = chat.cli_json("run", "chat", "--input", '{"calls": 1}')
    deadline = time.monotonic() + 30
    while "waiting for model endpoint to recover" not in (chat.home / "logs" / "chat.log").read_text():
        assert time.monotonic() < deadline, "the second run did not wait for the breaker"
        time.sleep(0.1)
    chat.cli("cancel", waiting["id"], check=True)
    final = chat.wait_for_run(waiting["id"], states=("cancelled", "failed", "succeeded"), timeout=20)
    assert final["state"] == "cancelled", final
