"""Stopping and starting, as supervisorctl users expect: `corral stop` stops the daemon
gracefully through its socket; `corral stop AGENT` turns its triggers off and cancels its
runs, across daemon restarts, until `corral start AGENT`; `corral restart AGENT` runs it
again now, with the input of the run it cancelled."""

from __future__ import annotations

import json
import time
from typing import Any

from corral.cli.common import EXIT_FAILED, EXIT_OK, EXIT_UNAVAILABLE
from corral.testing import CorralProject

SLOW = """
import time

def run(ctx):
    ctx.state["started"] = ctx.state.get("started", 0) + 1
    time.sleep(float((ctx.input or {}).get("sleep", 60)))
    return ctx.input
"""


def _runs(project: CorralProject, *args: str) -> list[dict[str, Any]]:
    return list(project.cli_json("runs", "slow", "-n", "100", *args))


def _until(what: str, check: Any, timeout: float = 20.0) -> Any:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        found = check()
        if found:
            return found
        time.sleep(0.2)
    raise AssertionError(f"{what} did not happen within {timeout}s")


def test_an_agent_stopped_stays_stopped_across_restarts_until_started(corral_project: CorralProject) -> None:
    corral_project.agent("slow", SLOW, every="1s", input={"sleep": 60})
    daemon = corral_project.start_daemon()
    running = _until("a run", lambda: _runs(corral_project, "--state", "running"))[0]

    stopped = corral_project.cli("stop", "slow", "--reason", "the feed is down")
    assert stopped.returncode == EXIT_OK, stopped.stderr
    assert "slow stopped" in stopped.stdout and running["id"] in stopped.stdout
    ended = corral_project.wait_for_run(running["id"], states=("cancelled",), timeout=20)
    assert ended["error"]["message"] == "agent stopped: the feed is down"
    status = corral_project.cli_json("status")["agents"]["slow"]
    assert status["state"] == "stopped" and status["pause"]["reason"] == "the feed is down"
    assert "`corral start slow`" in corral_project.cli("status", check=True).stdout
    refused = corral_project.cli("run", "slow")
    assert (
        refused.returncode == EXIT_FAILED and "is stopped" in refused.stderr and "corral start slow" in refused.stderr
    )

    down = corral_project.cli("stop")
    assert down.returncode == EXIT_OK and "stopped" in down.stderr, down.stderr
    assert daemon.process.wait(10) == 0 and not corral_project.socket.exists()
    assert corral_project.cli("stop").returncode == EXIT_UNAVAILABLE, "no daemon: nothing to stop"

    corral_project.start_daemon()
    time.sleep(2.5)  # a 1s trigger fires twice meanwhile, if anything fires
    assert not _runs(corral_project, "--state", "queued,running"), "a stopped agent stays stopped across a restart"
    assert corral_project.cli_json("status")["agents"]["slow"]["state"] == "stopped"

    started = corral_project.cli("start", "slow")
    assert started.returncode == EXIT_OK and "it was stopped" in started.stdout
    _until("a run after the start", lambda: _runs(corral_project, "--state", "running"))


def test_restart_cancels_the_run_and_runs_again_with_its_input(corral_project: CorralProject) -> None:
    corral_project.agent("slow", SLOW)
    corral_project.start_daemon()
    first = corral_project.cli_json("run", "slow", "--input", json.dumps({"sleep": 60, "n": 1}))
    _until("the run to start", lambda: corral_project.run_record(first["id"])["state"] == "running")

    restarted = corral_project.cli("restart", "slow", "--json")
    assert restarted.returncode == EXIT_OK, restarted.stderr
    again = json.loads(restarted.stdout)
    assert again["id"] != first["id"] and again["trigger"] == "restart" and again["input"] == {"sleep": 60, "n": 1}
    assert first["id"] in restarted.stderr
    assert corral_project.wait_for_run(first["id"], states=("cancelled",))["state"] == "cancelled"
    _until("the new run to start", lambda: corral_project.run_record(again["id"])["state"] == "running")
    assert corral_project.cli("stop", "slow").returncode == EXIT_OK
    corral_project.wait_for_run(again["id"], states=("cancelled",))
