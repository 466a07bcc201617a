"""One stream of events: every journaled step and every run end reaches the hooks exactly
once, whatever path the run took. A real daemon, a drop-in plugin recording what it hears,
and a model server on 127.0.0.1."""

from __future__ import annotations

import json
import time
from pathlib import Path
from typing import Any

import pytest

from corral.testing import CorralProject
from tests.models.fake_servers import FakeServer, Reply, openai_body
from tests.schedule.harness import GATED

LISTENER = """
import json
import corral

OUT = {out!r}

def _write(line):
    with open(OUT, "a") as f:
        f.write(json.dumps(line) + "\\n")

@corral.hookimpl
def corral_step_done(run, step):
    _write({{"hook": "step", "run": run["id"], "seq": step["seq"], "kind": step["kind"], "ok": step["ok"],
            "replayed": step["replayed"]}})

@corral.hookimpl
def corral_run_finished(run):
    error = run.get("error") or {{}}
    _write({{"hook": "finished", "run": run["id"], "state": run["state"], "kind": error.get("kind")}})
"""

MIXED = """
def run(ctx):
    ctx.state["seen"] = 1
    first = ctx.model([{"role": "user", "text": "count"}], max_tokens=20)
    counted = ctx.tool("word_count", text="one two three")
    try:
        ctx.tool("word_count", text=3)  # refused: the arguments do not match the schema
    except Exception:
        pass
    second = ctx.model([{"role": "user", "text": "again"}], max_tokens=20)
    return [first.text, counted, second.text]
"""


def heard(path: Path, run_id: str | None = None) -> list[dict[str, Any]]:
    if not path.exists():
        return []
    lines = [json.loads(line) for line in path.read_text().splitlines() if line.strip()]
    return [line for line in lines if run_id is None or line["run"] == run_id]


def wait_for(predicate: Any, timeout: float = 20.0) -> None:
    deadline = time.monotonic() + timeout
    while not predicate():
        if time.monotonic() > deadline:
            raise AssertionError("condition not met in time")
        time.sleep(0.05)


@pytest.fixture
def project(corral_project: CorralProject) -> tuple[CorralProject, Path]:
    out = corral_project.root / "heard.jsonl"
    plugin = corral_project.root / "listener.py"
    plugin.write_text(LISTENER.format(out=str(out)))
    corral_project.corral["plugins"] = [str(plugin)]
    return corral_project, out


def test_every_step_reaches_the_hooks_and_the_log_once_model_steps_included(
    project: tuple[CorralProject, Path], server: FakeServer, monkeypatch: pytest.MonkeyPatch
) -> None:
    corral_project, out = project
    monkeypatch.setenv("FAKE_KEY", "sk-test-events-0123456789")
    corral_project.models["fake"] = {
        "provider": "openai",
        "base_url": f"{server.url}/v1",
        "model": "fake-gpt",
        "api_key_env": "FAKE_KEY",
        "prices": {"input": 2.0, "output": 8.0},
    }
    server.enqueue(Reply(200, openai_body("three")), Reply(200, openai_body("again")))
    corral_project.agent("mixed", MIXED, tools=["word_count"], models=["fake"])
    corral_project.start_daemon()
    run = corral_project.cli_json("run", "mixed", "--wait")
    assert run["state"] == "succeeded", run
    wait_for(lambda: any(line["hook"] == "finished" for line in heard(out, run["id"])))
    steps = [(line["seq"], line["kind"], line["ok"]) for line in heard(out, run["id"]) if line["hook"] == "step"]
    expected = [(1, "state", True), (2, "model", True), (3, "tool", True), (4, "tool", False), (5, "model", True)]
    assert steps == expected, "each step once, in order, the refused one too"
    assert [line["state"] for line in heard(out, run["id"]) if line["hook"] == "finished"] == ["succeeded"]
    log = corral_project.home / "logs" / "mixed.log"

    def logged() -> list[int]:
        lines = [json.loads(line) for line in log.read_text().splitlines()] if log.exists() else []
        return sorted(line["seq"] for line in lines if line.get("event") == "step")

    wait_for(lambda: len(logged()) >= 5)
    assert logged() == [1, 2, 3, 4, 5]


def test_each_way_a_run_ends_is_heard_exactly_once(project: tuple[CorralProject, Path]) -> None:
    corral_project, out = project
    corral_project.agent("fine", "def run(ctx):\n    return 1\n")
    corral_project.agent("broken", "def run(ctx):\n    return 1 / 0\n")
    corral_project.agent("crashing", "import os\n\ndef run(ctx):\n    os._exit(3)\n", max_attempts=1)
    corral_project.agent("gated", GATED)
    corral_project.agent("leaving", GATED)
    corral_project.agent("exhausted", GATED, max_attempts=1)
    corral_project.corral["grace_seconds"] = 0.5
    daemon = corral_project.start_daemon()
    ends: dict[str, list[str]] = {}  # agent -> its run
    for agent, expected in (("fine", "succeeded"), ("broken", "failed"), ("crashing", "failed")):
        run = json.loads(corral_project.cli("run", agent, "--wait", "--json").stdout)
        assert run["state"] == expected, run
        ends[agent] = [run["id"]]
    gated = corral_project.cli_json("run", "gated")["id"]
    wait_for(lambda: (corral_project.home / "agents" / "gated" / "started").exists())
    corral_project.cli("cancel", gated, check=True)
    leaving = corral_project.cli_json("run", "leaving")["id"]
    exhausted = corral_project.cli_json("run", "exhausted")["id"]
    for agent in ("leaving", "exhausted"):
        wait_for(lambda agent=agent: (corral_project.home / "agents" / agent / "started").exists())
    daemon.stop()  # both runs are interrupted by the stop...
    del corral_project.agents["leaving"]  # ...one's agent is gone at the next start, the other used its attempt
    corral_project.start_daemon()
    for run_id in (leaving, exhausted):
        wait_for(lambda run_id=run_id: corral_project.run_record(run_id)["state"] == "failed")

    def finished(run_id: str) -> list[tuple[str, str | None]]:
        return [(line["state"], line["kind"]) for line in heard(out, run_id) if line["hook"] == "finished"]

    wait_for(lambda: len(finished(leaving)) == 2 and len(finished(exhausted)) == 2)
    time.sleep(0.5)  # anything heard twice would have arrived by now
    assert finished(ends["fine"][0]) == [("succeeded", None)]
    assert finished(ends["broken"][0]) == [("failed", "agent")]
    assert finished(ends["crashing"][0]) == [("failed", "crash")], "max_attempts = 1: no resume"
    assert finished(gated) == [("cancelled", "cancelled")]
    for run_id, why in ((leaving, "config"), (exhausted, "gave_up")):  # killed by the stop, then refused
        assert [state for state, _ in finished(run_id)] == ["interrupted", "failed"]
        assert finished(run_id)[-1][1] == why


HANGING = """
import time
import corral

@corral.hookimpl
def corral_step_done(run, step):
    time.sleep(3600)
"""


def test_a_hook_that_never_returns_delays_neither_alerts_nor_the_exit(corral_project: CorralProject) -> None:
    """A plugin's hook stuck for good: a foreground run still delivers its failure alert and
    exits, and the daemon still stops on SIGTERM, each within a bounded time."""
    plugin = corral_project.root / "hanging.py"
    plugin.write_text(HANGING)
    out = corral_project.root / "alerts.txt"
    corral_project.corral["plugins"] = [str(plugin)]
    corral_project.agent("bad", "def run(ctx):\n    ctx.state['x'] = 1\n    raise ValueError('no')\n", max_attempts=1)
    corral_project.write()
    config = corral_project.config_path.read_text()
    sink = '[alerts]\nroute = { warning = ["file"] }\n[alerts.sinks.file]\ntype = "command"\n'
    sink += f'command = ["sh", "-c", "cat >> {out}"]\n'
    corral_project.config_path.write_text(config + "\n" + sink)
    started = time.monotonic()
    run = corral_project.cli("run", "bad", "--wait", "--json", timeout=60)
    assert run.returncode == 1 and json.loads(run.stdout)["state"] == "failed", run.stderr
    assert time.monotonic() - started < 30, "the foreground run waited for the hook"
    assert "run of 'bad' failed" in out.read_text()
    daemon = corral_project.start_daemon(write_config=False)
    corral_project.cli("run", "bad", "--wait")
    started = time.monotonic()
    assert daemon.stop(timeout=40) == 0
    assert time.monotonic() - started < 30, "the daemon waited for the hook past its grace"
