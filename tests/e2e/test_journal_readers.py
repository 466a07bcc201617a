"""What a run's readers hold and print is bounded by what its journal stores (plus one whole
request where one is asked for): a conversation of many requests, each the last one and a
message more, is stored as what each added (core/store/conversations.py), and ``corral
trace`` (text and ``--json``), the console's run page, ``corral diff`` and a fork read it
as stored, where expanded it would be every request whole again (an attacker's run of 100
requests of 20,000 messages stored 4.7 MB and printed 354 MB; docs/benchmarks.md). And a
step is stored as it was sent: a history that differs from the step before's only by
``1`` against ``true`` is not stored as sharing it."""

from __future__ import annotations

import json
from typing import Any

import pytest

from corral.testing import CorralProject
from tests.console_client import Browser
from tests.models.fake_servers import FakeServer, Reply, openai_body
from tests.projects import KEY, KEY_VAR, fake_model

HISTORY, TURNS = 3000, 40
TALKER = f"""
def run(ctx):
    history = [{{"role": "user", "text": f"m{{i}}"}} for i in range({HISTORY})]
    for turn in range({TURNS}):
        history.append({{"role": "user", "text": f"turn {{turn}}"}})
        ctx.model(history)
    return len(history)
"""
COUNTER = """
def run(ctx):
    asked = {"role": "user", "text": "count"}
    def called(n):
        return {"role": "assistant", "text": "", "tool_calls": [{"id": "c1", "name": "count", "arguments": {"n": n}}]}
    ctx.model([asked, called(1)])
    ctx.model([asked, called(True), {"role": "user", "text": "again"}])
"""


@pytest.fixture
def project(corral_project: CorralProject, server: FakeServer, monkeypatch: pytest.MonkeyPatch) -> CorralProject:
    monkeypatch.setenv(KEY_VAR, KEY)
    corral_project.models["fake"] = fake_model(server.url, retry_attempts=1)
    corral_project.tables["console"] = {"listen": "127.0.0.1:0"}
    corral_project.agent("talker", TALKER, models=["fake"], guardrails={"max_model_turns": "none"})
    corral_project.agent("counter", COUNTER, models=["fake"])
    return corral_project


def _run(project: CorralProject, agent: str) -> dict[str, Any]:
    run = json.loads(project.cli("run", agent, "--wait", "--json").stdout)
    assert run["state"] == "succeeded", run.get("error")
    return run


def test_a_long_conversation_is_read_and_shown_as_stored(project: CorralProject, server: FakeServer) -> None:
    server.enqueue(*(Reply(body=openai_body(f"a{turn}")) for turn in range(TURNS + 1)))
    project.start_daemon()
    run = _run(project, "talker")
    stored = run["journal_bytes"]
    whole_bytes = TURNS * HISTORY * len('{"role": "user", "text": "m0"}')
    assert stored < whole_bytes / 5, "every 32nd step whole, the others what they added"

    traced = project.cli("trace", run["id"], "--json", check=True).stdout
    assert len(traced) < 4 * stored, f"trace --json printed {len(traced):,} bytes of a {stored:,}-byte journal"
    steps = json.loads(traced)["steps"]
    assert [len(step["args"]["messages"]) for step in steps[1:]] == [1] * 31 + [HISTORY + 33] + [1] * 7
    assert steps[5]["continues"] == {"step": 5, "messages": HISTORY + 5}
    last = json.loads(project.cli("trace", run["id"], "--step", str(TURNS), "--json", check=True).stdout)
    assert [m["text"] for m in last["args"]["messages"]] == [f"m{i}" for i in range(HISTORY)] + [
        f"turn {turn}" for turn in range(TURNS)
    ], "--step N is the step whole"
    text = project.cli("trace", run["id"], check=True).stdout
    assert len(text) < 20_000 and "user: turn 39" in text

    browser = Browser(project)
    browser.log_in()
    page = browser.http.get(f"/runs/{run['id']}")
    assert page.status_code == 200
    assert len(page.text) < 4 * stored, f"the run page is {len(page.text):,} bytes for {stored:,} stored"
    assert f"continues the first {HISTORY + 39} messages of step 39" in page.text
    browser.http.close()

    assert project.cli("diff", run["id"], run["id"]).returncode == 0
    fork = project.cli_json("fork", run["id"], "--from", str(TURNS))
    forked = project.wait_for_run(fork["id"])
    assert forked["state"] == "succeeded", forked.get("error")
    assert abs(forked["journal_bytes"] - stored) < stored / 10, "the fork's copy is stored as the parent's"
    copied = json.loads(project.cli("trace", fork["id"], "--json", check=True).stdout)["steps"]
    assert [step.get("continues") for step in copied] == [step.get("continues") for step in steps]


def test_a_history_that_differs_only_as_true_from_1_is_stored_as_sent(
    project: CorralProject, server: FakeServer
) -> None:
    server.enqueue(Reply(body=openai_body("one")), Reply(body=openai_body("two")))
    run = _run(project, "counter")
    traced = json.loads(project.cli("trace", run["id"], "--json", check=True).stdout)
    second = traced["steps"][1]
    assert "continues" not in second, "1 and true are not the same value"
    assert second["args"]["messages"][1]["tool_calls"][0]["arguments"] == {"n": True}
    whole = json.loads(project.cli("trace", run["id"], "--step", "2", "--json", check=True).stdout)
    assert whole["args"]["messages"][1]["tool_calls"][0]["arguments"]["n"] is True
    sent = server.requests[1].json()["messages"][1]["tool_calls"][0]["function"]["arguments"]
    assert json.loads(sent) == {"n": True}
