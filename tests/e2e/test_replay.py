"""Past runs as test cases: ``corral replay`` (the code again against a run's journal,
nothing executed), ``corral fork`` (a new run from step N) and ``corral diff``. A real
store, real sandboxed agent processes, a model server on 127.0.0.1."""

from __future__ import annotations

import json
import subprocess
import sys
from typing import Any

import pytest

from corral.testing import CorralProject
from tests.models.fake_servers import FakeServer, Reply, openai_body
from tests.projects import KEY, KEY_VAR

pytestmark = pytest.mark.slow

WORKER = """
def run(ctx):
    ctx.state["visits"] = ctx.state.get("visits", 0) + 1
    counted = ctx.tool("word_count", text=ctx.input["text"])
    answer = ctx.model([{"role": "user", "text": "how many?"}], max_tokens=10)
    with open("scratch.txt", "w") as f:  # the code's own side effect, in the replay's own workdir
        f.write("x")
    return {"counted": counted, "said": answer.text}
"""


@pytest.fixture
def worker(corral_project: CorralProject, server: FakeServer, monkeypatch: pytest.MonkeyPatch) -> CorralProject:
    monkeypatch.setenv(KEY_VAR, KEY)
    corral_project.models["fake"] = {
        "provider": "openai",
        "base_url": f"{server.url}/v1",
        "model": "fake-gpt",
        "api_key_env": KEY_VAR,
        "retry_attempts": 1,
    }
    corral_project.agent("worker", WORKER, tools=["word_count"], models=["fake"])
    corral_project.write()
    return corral_project


def _run(project: CorralProject, text: str) -> dict[str, Any]:
    result = project.cli("run", "worker", "--input", json.dumps({"text": text}), "--wait", "--json")
    assert result.returncode == 0, result.stderr
    run: dict[str, Any] = json.loads(result.stdout)
    return run


def _journal(project: CorralProject, run_id: str) -> list[dict[str, Any]]:
    steps: list[dict[str, Any]] = project.cli_json("trace", run_id)["steps"]
    return steps


def test_a_replay_takes_the_same_path_and_executes_nothing(worker: CorralProject, server: FakeServer) -> None:
    server.enqueue(Reply(body=openai_body("three")))
    run = _run(worker, "one two three")
    before = _journal(worker, run["id"])
    scratch = worker.home / "agents" / "worker" / "scratch.txt"
    scratch.unlink()
    result = worker.cli("replay", run["id"][-6:])
    assert result.returncode == 0, result.stdout + result.stderr
    assert f"run {run['id']} (worker): same path (3 of 3 steps from the journal; finished ok)" in result.stdout
    assert len(server.requests) == 1, "the model was not asked again"
    assert _journal(worker, run["id"]) == before, "nothing journaled"
    assert worker.run_record(run["id"])["state"] == "succeeded"
    assert not scratch.exists(), "the code ran in a workdir of its own, not the agent's"
    assert list((worker.home / "replays").iterdir()) == [], "the replay's workdir is gone"
    report = json.loads(worker.cli("replay", run["id"], "--json", check=True).stdout)
    assert report["same"] and report["divergence"] is None and report["steps"] == 3


def test_changed_code_diverges_at_the_step_it_changed_and_says_what_each_side_has(
    worker: CorralProject, server: FakeServer
) -> None:
    server.enqueue(Reply(body=openai_body("three")), Reply(body=openai_body("two")))
    first = _run(worker, "one two three")
    second = _run(worker, "four five")
    worker.agent(
        "worker",
        WORKER.replace('text=ctx.input["text"]', 'text=ctx.input["text"].upper()'),
        tools=["word_count"],
        models=["fake"],
    )
    worker.write()
    result = worker.cli("replay", first["id"])
    assert result.returncode == 1, result.stdout + result.stderr
    assert "DIVERGED" in result.stdout and "at step 2" in result.stdout
    assert """the journal has: tool 'word_count' {"text": "one two three"}""" in result.stdout
    assert """the code asked:  tool 'word_count' {"text": "ONE TWO THREE"}""" in result.stdout
    every = worker.cli("replay", "--agent", "worker", "--since", "1h")
    assert every.returncode == 1 and "2 runs replayed: 0 same path, 2 diverged" in every.stdout, every.stdout
    assert second["id"] in every.stdout
    batch = json.loads(worker.cli("replay", "--agent", "worker", "--since", "1h", "--json").stdout)
    assert [r["same"] for r in batch] == [False, False], "a batch is one JSON document, a list"
    assert len(server.requests) == 2


def test_replay_goes_through_a_running_daemon(worker: CorralProject, server: FakeServer) -> None:
    server.enqueue(Reply(body=openai_body("three")))
    run = _run(worker, "one two three")
    worker.start_daemon()
    report = json.loads(worker.cli("replay", run["id"], "--json", check=True).stdout)
    assert report["same"] is True, report
    log = (worker.home / "logs" / "worker.log").read_text()
    assert '"run replayed"' in log and '"replay":true' in log
    refused = worker.cli("replay", run["id"], "--pdb")
    assert refused.returncode == 4 and "stop the daemon first" in refused.stderr
    assert "Traceback" not in refused.stderr


def test_a_fork_keeps_the_first_steps_free_and_goes_live_from_its_step(
    worker: CorralProject, server: FakeServer
) -> None:
    server.enqueue(*(Reply(body=openai_body(text)) for text in ("three", "again", "two")))
    original = _run(worker, "one two three")
    worker.start_daemon()
    forked = worker.cli_json("fork", original["id"], "--from", "3")
    assert forked["parent"] == original["id"] and forked["forked_at"] == 3
    done = worker.wait_for_run(forked["id"])
    assert done["state"] == "succeeded", done
    assert done["result"] == {"counted": original["result"]["counted"], "said": "again"}
    assert len(server.requests) == 2, "step 3, the model call, was made again; steps 1 and 2 were not"
    steps = _journal(worker, forked["id"])
    assert [s.get("forked_from") for s in steps] == [original["id"], original["id"], None]
    diff = worker.cli("diff", original["id"], forked["id"])
    assert diff.returncode == 0, diff.stdout  # the same requests; step 3's answer differs
    assert " ~ 3" in diff.stdout and "the same requests; the outcomes differ at step 3" in diff.stdout
    other = worker.cli_json("fork", original["id"], "--from", "2", "--input", '{"text": "just two"}')
    assert worker.wait_for_run(other["id"], timeout=30)["state"] == "succeeded"
    diff = worker.cli("diff", original["id"], other["id"])
    assert diff.returncode == 1 and "first divergence at step 2" in diff.stdout
    too_far = worker.cli("fork", original["id"], "--from", "9")
    assert too_far.returncode == 5 and "has 3 finished steps before step 9" in too_far.stderr


def test_pdb_opens_on_the_agents_frame_where_the_replay_diverges(worker: CorralProject, server: FakeServer) -> None:
    server.enqueue(Reply(body=openai_body("three")))
    run = _run(worker, "one two three")
    worker.agent("worker", WORKER.replace("how many?", "how many words?"), tools=["word_count"], models=["fake"])
    worker.write()
    debugged = subprocess.run(
        [sys.executable, "-m", "corral", "replay", run["id"], "--pdb"],
        input="p counted\nwhere\nc\n",
        capture_output=True,
        text=True,
        env=worker.env,
        cwd=worker.root,
        timeout=60,
    )
    assert debugged.returncode == 1, debugged.stdout + debugged.stderr
    assert "replay diverged at step 3" in debugged.stderr
    assert "(Pdb)" in debugged.stdout and "worker.py" in debugged.stdout
    assert "'two': 1" in debugged.stdout.split("(Pdb)")[1], (
        "`p counted`: the tool's journaled answer, in the agent's frame"
    )
    assert "DIVERGED" in debugged.stdout
    assert len(server.requests) == 1


PUBLISHER = """
def run(ctx):
    n = ctx.tool("word_count", text="a b")
    with open(ctx.input["outbox"] + "/published.txt", "a") as f:  # the code's own side effect
        f.write("published\\n")
    return n
"""


def test_a_replay_cannot_repeat_the_codes_own_writes_outside_its_workdir(corral_project: CorralProject) -> None:
    outbox = corral_project.root / "outbox"
    outbox.mkdir()
    corral_project.agent("publisher", PUBLISHER, tools=["word_count"], sandbox={"read_write": [str(outbox)]})
    corral_project.write()
    done = corral_project.cli("run", "publisher", "--input", json.dumps({"outbox": str(outbox)}), "--wait", "--json")
    run = json.loads(done.stdout)
    assert run["state"] == "succeeded", done.stderr
    replay = corral_project.cli("replay", run["id"])
    assert (outbox / "published.txt").read_text() == "published\n", "written once, by the run"
    assert replay.returncode == 1, replay.stdout + replay.stderr
    refused = ("Read-only file system", "Operation not permitted")  # Linux's mount, macOS's Seatbelt
    assert "the code: failed: OSError" in replay.stdout and any(why in replay.stdout for why in refused)


def test_fork_and_json_arguments_refuse_what_they_cannot_take(worker: CorralProject, server: FakeServer) -> None:
    server.enqueue(Reply(body=openai_body("three")), Reply(body=openai_body("null")))
    run = _run(worker, "one two three")
    for bad in ("0", "-2"):
        refused = worker.cli("fork", run["id"], "--from", bad)
        assert refused.returncode == 2 and "--from must be a step number" in refused.stderr
    huge = worker.cli("fork", run["id"], "--from", "2", "--input", "18446744073709551616")
    assert huge.returncode == 2 and "cannot store" in huge.stderr and "Traceback" not in huge.stderr
    nulled = worker.cli_json("fork", run["id"], "--from", "4", "--input", "null")
    assert nulled["input"] is None and nulled["parent"] == run["id"]


DOOR_AGENT = """
import asyncio, os

import httpx2
from mcp import Client
from mcp.client.streamable_http import streamable_http_client
from openai import OpenAI


async def count(text):
    headers = {"authorization": "Bearer " + os.environ["CORRAL_DOOR_TOKEN"]}
    async with httpx2.AsyncClient(headers=headers) as http:
        transport = streamable_http_client(os.environ["CORRAL_MCP_URL"], http_client=http)
        async with Client(transport, mode="auto", cache=None) as client:
            result = await client.call_tool("word_count", {"text": text})
            return [result.is_error, [part.text for part in result.content]]


def run(ctx):
    counted = asyncio.run(count("one two"))
    client = OpenAI(max_retries=0)
    first = client.chat.completions.create(model="fake", messages=[{"role": "user", "content": "first"}])
    said = first.choices[0].message.content
    ask = [{"role": "user", "content": "second, after " + said}]
    return [counted, said, client.chat.completions.create(model="default", messages=ask).choices[0].message.content]
"""


def test_pdb_replays_an_sdk_agent_through_its_door_and_opens_on_the_request_that_diverges(
    worker: CorralProject, server: FakeServer
) -> None:
    """An agent that calls its tool over MCP and its model with the openai SDK gets its door
    in a replay, sandboxed or in-process, answered from the journal: the same code takes the
    same path without the debugger; changed code stops at the changed request, whose 409
    the SDK raises, and pdb opens on the agent's line that made it."""
    pytest.importorskip("openai")
    worker.agent("sdk", DOOR_AGENT, tools=["word_count"], models=["fake"])
    worker.write()
    server.enqueue(Reply(body=openai_body("one")), Reply(body=openai_body("two")))
    done = worker.cli("run", "sdk", "--wait", "--json")
    run = json.loads(done.stdout)
    assert run["result"][1:] == ["one", "two"], done.stderr
    counted = run["result"][0]
    assert counted[0] is False and "two" in counted[1][0], counted

    def debug() -> subprocess.CompletedProcess[str]:
        command = [sys.executable, "-m", "corral", "replay", run["id"], "--pdb"]
        return subprocess.run(
            command, input="p said\nc\n", capture_output=True, text=True, env=worker.env, cwd=worker.root, timeout=60
        )

    sandboxed = worker.cli("replay", run["id"])
    assert sandboxed.returncode == 0 and "same path (3 of 3 steps" in sandboxed.stdout, sandboxed.stdout
    same = debug()
    assert same.returncode == 0, same.stdout + same.stderr
    assert "same path (3 of 3 steps from the journal; finished ok)" in same.stdout
    assert "(Pdb)" not in same.stdout
    worker.agent("sdk", DOOR_AGENT.replace("second, after", "then, after"), tools=["word_count"], models=["fake"])
    worker.write()
    diverged = debug()
    assert diverged.returncode == 1, diverged.stdout + diverged.stderr
    assert (
        "replay diverged at step 3" in diverged.stderr and "the debugger opens where the code asked" in diverged.stderr
    )
    assert "sdk.py" in diverged.stdout and "'one'" in diverged.stdout.split("(Pdb)")[1], "`p said` in the agent's frame"
    assert "DIVERGED" in diverged.stdout
    assert len(server.requests) == 2, "the replays asked the model nothing"
