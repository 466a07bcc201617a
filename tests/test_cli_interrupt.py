"""Ctrl-C on ``corral run --wait``, and ``corral status`` after the daemon died: what an
operator at a terminal sees, and what happens to the run."""

from __future__ import annotations

import json
import select
import signal
import subprocess
import sys
import time
from typing import Any

import pytest

from corral.store import Records, Store
from corral.testing import CorralProject
from tests.e2e.support import assert_journal, assert_no_processes

pytestmark = pytest.mark.slow  # real daemons and foreground runs, interrupted: end to end

COUNTER = """
import time


def run(ctx):
    for i in range({steps}):
        ctx.state["i"] = i
        time.sleep(0.1)
    return ctx.state["i"]
"""

SLEEPER = """
import time


def run(ctx):
    ctx.state["started"] = True
    time.sleep(600)
"""


def _start(project: CorralProject, *args: str) -> subprocess.Popen[str]:
    return subprocess.Popen(
        [sys.executable, "-m", "corral", *args],
        env=project.env,
        cwd=project.root,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )


def _stderr_line(process: subprocess.Popen[str], timeout: float = 30.0) -> str:
    """The next line ``process`` writes to stderr (it must come within ``timeout``)."""
    assert process.stderr is not None
    ready, _, _ = select.select([process.stderr], [], [], timeout)
    assert ready, f"no line on stderr within {timeout}s"
    return process.stderr.readline()


def _steps(project: CorralProject, run_id: str, at_least: int, timeout: float = 30.0) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        result = project.cli("trace", run_id, "--json")
        if result.returncode == 0 and len(json.loads(result.stdout)["steps"]) >= at_least:
            return
        time.sleep(0.1)
    raise AssertionError(f"run {run_id} did not make {at_least} steps within {timeout}s")


def _ctrl_c(process: subprocess.Popen[str], times: int = 1, timeout: float = 30.0) -> tuple[str, str, float]:
    """Send SIGINT (what Ctrl-C sends) ``times`` times; (stdout, the rest of stderr, seconds to exit)."""
    sent = time.monotonic()
    for _ in range(times):
        process.send_signal(signal.SIGINT)
        time.sleep(0.2)
    out, err = process.communicate(timeout=timeout)
    return out, err, time.monotonic() - sent


def test_ctrl_c_on_run_wait_with_a_daemon_stops_waiting_and_the_run_goes_on(corral_project: CorralProject) -> None:
    corral_project.agent("count", COUNTER.format(steps=30))
    corral_project.start_daemon()
    waiting = _start(corral_project, "run", "count", "--wait", "--json")
    first = _stderr_line(waiting)
    assert first.startswith("run ") and "queued; waiting (Ctrl-C stops waiting, the run goes on)" in first, first
    run_id = first.split()[1]
    _steps(corral_project, run_id, 3)
    out, err, _ = _ctrl_c(waiting)
    assert waiting.returncode == 130, (waiting.returncode, err)
    assert "Traceback" not in err and out == "", (out, err)
    assert f"run {run_id} goes on in the daemon" in err, err
    assert f"corral trace {run_id}" in err and f"corral logs --run {run_id}" in err, err
    run = corral_project.wait_for_run(run_id)
    assert run["state"] == "succeeded" and run["result"] == 29, run
    assert len(assert_journal(corral_project, run_id)) == 30


def test_ctrl_c_on_a_foreground_run_interrupts_it_and_the_next_up_resumes_it(corral_project: CorralProject) -> None:
    corral_project.agent("count", COUNTER.format(steps=40))
    running = _start(corral_project, "run", "count", "--wait")
    first = _stderr_line(running)
    assert "running in the foreground (no daemon running" in first and "Ctrl-C" in first, first
    run_id = first.split()[1]
    _steps(corral_project, run_id, 3)
    out, err, took = _ctrl_c(running)
    assert running.returncode == 130, (running.returncode, err)
    assert "Traceback" not in err and out == "", (out, err)
    assert f"run {run_id} interrupted" in err and "`corral up` resumes it" in err, err
    assert took < 10, "a run making steps stops at its next step, not after the grace period"
    run = corral_project.run_record(run_id)
    assert run["state"] == "interrupted", run
    done_before = assert_journal(corral_project, run_id)
    assert_no_processes(run, corral_project.home / "agents" / "count")

    corral_project.start_daemon()
    run = corral_project.wait_for_run(run_id)
    assert run["state"] == "succeeded" and run["result"] == 39, run
    steps = assert_journal(corral_project, run_id)
    assert len(steps) == 40 and all(s["executions"] == 1 for s in steps), "no step ran twice"
    kept = [(s["seq"], s["value"]) for s in steps[: len(done_before)]]
    assert kept == [(s["seq"], s["value"]) for s in done_before], "the journal before Ctrl-C is kept as it was"


@pytest.mark.parametrize(
    ("grace", "presses"),
    [(1, 1), (60, 2)],
    ids=["killed after the grace period", "killed at the second ctrl-c"],
)
def test_a_foreground_run_that_makes_no_step_is_killed_and_left_interrupted(
    corral_project: CorralProject, grace: int, presses: int
) -> None:
    corral_project.corral["grace_seconds"] = grace
    corral_project.agent("sleeper", SLEEPER)
    running = _start(corral_project, "run", "sleeper", "--wait")
    run_id = _stderr_line(running).split()[1]
    _steps(corral_project, run_id, 1)
    _, err, took = _ctrl_c(running, times=presses)
    assert running.returncode == 130 and "Traceback" not in err, err
    assert "Ctrl-C again kills it now" in err and f"run {run_id} interrupted" in err, err
    assert took < 15, "neither waits for the agent's 600 s sleep, nor the second Ctrl-C for the grace period"
    run = corral_project.run_record(run_id)
    assert run["state"] == "interrupted", run
    assert_journal(corral_project, run_id)
    assert_no_processes(run, corral_project.home / "agents" / "sleeper")


def _cells(text: str) -> list[str]:
    return [cell for line in text.splitlines() for cell in line.split("  ") if cell.strip()]


def test_status_with_the_daemon_killed_shows_its_running_run_as_interrupted(corral_project: CorralProject) -> None:
    corral_project.agent("sleeper", SLEEPER)
    daemon = corral_project.start_daemon()
    run_id = json.loads(corral_project.cli("run", "sleeper", "--json", check=True).stdout)["id"]
    _steps(corral_project, run_id, 1)
    daemon.kill()

    status: dict[str, Any] = corral_project.cli_json("status")
    assert status["daemon"]["running"] is False
    [active] = status["active_runs"]
    assert active["state"] == "interrupted" and active["stored_state"] == "running", active
    agent = status["agents"]["sleeper"]
    assert agent["last_run"]["state"] == "interrupted" and agent["state"] != "running", agent
    text = corral_project.cli("status", check=True).stdout
    assert "running" not in [cell.strip() for cell in _cells(text)], text
    assert "interrupted (daemon not running)" in text, text
    [listed] = corral_project.cli_json("runs")
    assert listed["state"] == "interrupted" and listed["stored_state"] == "running"

    store = Store.open(corral_project.home / "store", readonly=True)
    with store.read() as txn:
        assert Records(store.dbs).get_run(txn, run_id)["state"] == "running", "status changed nothing in the store"
    store.close()

    corral_project.start_daemon()
    deadline = time.monotonic() + 30
    while corral_project.run_record(run_id)["attempt"] < 2:  # the next start resumes it
        assert time.monotonic() < deadline, "the run was not resumed"
        time.sleep(0.1)
