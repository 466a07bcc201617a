"""A long conversation through the model door: its journal grows with the conversation
(each step stored as the messages it added, core/store/conversations.py), and a resume that
diverges part-way through it, with ``on_divergence = "live"``, reads and replaces the
journal's steps whole."""

from __future__ import annotations

import json
import os
import signal
import time
from typing import Any

import pytest

from corral.store import Records, Store
from corral.testing import CorralProject
from tests.models.fake_servers import FakeServer, Reply, openai_body
from tests.projects import KEY, KEY_VAR, fake_model

pytest.importorskip("openai")

TURNS, STAMPED_FROM, KILLED_AT = 24, 10, 20
TALKER = f"""
from pathlib import Path
from openai import OpenAI


def run(ctx):
    client = OpenAI(max_retries=0)
    stamp = Path("stamp.txt").read_text() if Path("stamp.txt").exists() else "first"
    history = [{{"role": "system", "content": "be brief"}}]
    for turn in range({TURNS}):
        when = stamp if turn >= {STAMPED_FROM} else "first"
        history.append({{"role": "user", "content": f"question {{turn}} at {{when}} " + "x" * 2000}})
        answer = client.chat.completions.create(model="fake", messages=history).choices[0].message.content
        history.append({{"role": "assistant", "content": answer}})
    return [m["content"] for m in history if m["role"] == "assistant"]
"""


def test_a_long_conversation_is_stored_as_it_grows_and_resumes_live_from_where_it_changed(
    corral_project: CorralProject, server: FakeServer, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv(KEY_VAR, KEY)
    corral_project.models["fake"] = fake_model(server.url, retry_attempts=1)
    corral_project.agent("talker", TALKER, models=["fake"], on_divergence="live")
    server.enqueue(*(Reply(body=openai_body(f"a{turn}")) for turn in range(KILLED_AT - 1)))
    server.enqueue(Reply(body=openai_body("never"), delay=60))
    daemon = corral_project.start_daemon()
    run_id = corral_project.cli_json("run", "talker")["id"]
    deadline = time.monotonic() + 60
    while len(server.requests) < KILLED_AT:
        assert time.monotonic() < deadline, "the conversation never reached its last turn before the kill"
        time.sleep(0.05)
    os.kill(daemon.pid, signal.SIGKILL)
    daemon.process.wait(10)
    (corral_project.home / "agents" / "talker" / "stamp.txt").write_text("second")
    server.enqueue(*(Reply(body=openai_body(f"b{turn}")) for turn in range(STAMPED_FROM, TURNS)))
    corral_project.start_daemon()
    run = corral_project.wait_for_run(run_id)
    assert run["state"] == "succeeded", run["error"]
    kept = [f"a{turn}" for turn in range(STAMPED_FROM)]
    assert run["result"] == kept + [f"b{turn}" for turn in range(STAMPED_FROM, TURNS)]
    assert len(server.requests) == KILLED_AT + TURNS - STAMPED_FROM, "the turns before the change were replayed"
    steps = _model_steps(corral_project, run_id)
    assert [len(step["args"]["messages"]) for step in steps] == [2 + 2 * turn for turn in range(TURNS)], "whole"
    changed = steps[STAMPED_FROM]
    assert "at first" in changed["diverged"] and "at second" in changed["diverged"], changed["diverged"]
    assert all(step.get("live") for step in steps[STAMPED_FROM:])
    for step, sent in zip(steps[STAMPED_FROM:], server.requests[KILLED_AT:], strict=True):
        assert [m["text"] for m in step["args"]["messages"]] == [m["content"] for m in sent.json()["messages"]]
    whole = sum(len(json.dumps(step["args"])) for step in steps)
    assert run["journal_bytes"] < whole / 4, f"{run['journal_bytes']} bytes stored for {whole} of requests"


def _model_steps(project: CorralProject, run_id: str) -> list[dict[str, Any]]:
    """The run's model steps whole: ``corral trace --json`` prints them as stored (each the
    messages it added, and which step's it continues), ``--step N --json`` one whole, as
    ``Records.get_step`` reads each."""
    trace = json.loads(project.cli("trace", run_id, "--json", check=True).stdout)
    stored = [step for step in trace["steps"] if step["kind"] == "model"]
    assert [len(step["args"]["messages"]) for step in stored] == [2] * len(stored), "what each turn added"
    assert [step["continues"]["step"] for step in stored[1:]] == [step["seq"] for step in stored[:-1]]
    store = Store.open(project.home / "store", readonly=True)
    try:
        with store.read() as txn:
            steps = [Records(store.dbs).get_step(txn, run_id, step["seq"]) for step in stored]
    finally:
        store.close()
    last = project.cli("trace", run_id, "--step", str(stored[-1]["seq"]), "--json", check=True).stdout
    assert json.loads(last)["args"] == steps[-1]["args"]
    return [step for step in steps if step is not None]
