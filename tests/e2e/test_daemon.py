"""The daemon's own life: interval triggers, overlap, SIGTERM drain, grace, the example config,
and pause, resume, cancel, reload and status through the real CLI."""

from __future__ import annotations

import json
import re
import shutil
import time
from pathlib import Path

import pytest

from corral.testing import CorralProject
from tests.e2e.support import assert_no_processes

ROOT = Path(__file__).resolve().parents[2]

NAP = '''
import os, time
import corral

@corral.tool(idempotent=True)
def nap(seconds: float) -> float:
    """Sleep, counting executions in naps.txt."""
    open("naps.txt", "a").write("start\\n")
    time.sleep(seconds)
    return seconds

@corral.hookimpl
def corral_register_tools(register):
    register(nap)
'''


def _nap_project(project: CorralProject, seconds: float, naps: int = 1, **table: object) -> Path:
    plugin = project.root / "nap.py"
    plugin.write_text(NAP)
    project.corral["plugins"] = [str(plugin)]
    source = (
        f"def run(ctx):\n    for _ in range({naps}):\n        ctx.tool('nap', seconds={seconds})\n    return 'rested'\n"
    )
    project.agent("napper", source, tools=["nap"], **table)
    return project.home / "agents" / "napper"


def _wait(predicate, timeout: float = 20.0) -> None:
    deadline = time.monotonic() + timeout
    while not predicate():
        if time.monotonic() > deadline:
            raise AssertionError("condition not met in time")
        time.sleep(0.05)


@pytest.mark.slow
def test_sigterm_lets_the_in_flight_step_finish_then_exits_0_and_the_run_resumes(corral_project: CorralProject) -> None:
    workdir = _nap_project(corral_project, 1.5, naps=2)
    daemon = corral_project.start_daemon()
    run_id = corral_project.cli_json("run", "napper")["id"]
    _wait(lambda: (workdir / "naps.txt").exists())
    started = time.monotonic()
    assert daemon.stop() == 0
    assert time.monotonic() - started < 8
    run = corral_project.run_record(run_id)
    assert run["state"] == "interrupted"
    [step] = corral_project.cli_json("trace", run_id)["steps"]
    assert step["status"] == "done", "the in-flight step finished and was journaled; the next was not started"
    corral_project.start_daemon()
    assert corral_project.wait_for_run(run_id)["state"] == "succeeded"
    assert (workdir / "naps.txt").read_text().count("start") == 2, "a journaled step is not repeated"
    assert "daemon stopped" in (corral_project.home / "logs" / "corral.log").read_text()


@pytest.mark.slow
def test_grace_period_end_kills_children_and_keeps_the_run_resumable(corral_project: CorralProject) -> None:
    corral_project.corral["grace_seconds"] = 1
    workdir = _nap_project(corral_project, 60)
    daemon = corral_project.start_daemon()
    run_id = corral_project.cli_json("run", "napper")["id"]
    _wait(lambda: (workdir / "naps.txt").exists())
    started = time.monotonic()
    assert daemon.stop() == 0
    assert time.monotonic() - started < 10
    assert corral_project.run_record(run_id)["state"] == "interrupted"
    log = (corral_project.home / "logs" / "corral.log").read_text()
    assert "grace period of 1s over" in log


@pytest.mark.slow
def test_interval_trigger_skips_while_the_previous_run_is_active(corral_project: CorralProject) -> None:
    _nap_project(corral_project, 1.2, every="0.3s")
    daemon = corral_project.start_daemon()
    _wait(lambda: sum(r["state"] == "succeeded" for r in corral_project.cli_json("runs", "napper")) >= 2, 40)
    daemon.stop()
    runs = corral_project.cli_json("runs", "napper")
    assert len(runs) >= 2 and all(r["trigger"] == "interval" for r in runs)
    spans = sorted((r["started"], r.get("ended") or time.time()) for r in runs if r.get("started"))
    for (_, end), (start, _) in zip(spans, spans[1:], strict=False):
        assert start >= end - 0.05, "runs of one agent never overlap"
    assert "trigger skipped" in (corral_project.home / "logs" / "corral.log").read_text()


@pytest.mark.slow
def test_the_example_config_runs_both_agents_offline(tmp_path: Path) -> None:
    project = CorralProject(tmp_path)
    shutil.copytree(ROOT / "examples" / "agents", project.agents_dir, dirs_exist_ok=True)
    text = (ROOT / "examples" / "corral.toml").read_text()
    project.config_path.write_text(re.sub(r'every = "\d+s"', 'every = "0.5s"', text))
    try:
        daemon = project.start_daemon(write_config=False)
        deadline = time.monotonic() + 20
        while time.monotonic() < deadline:
            runs = project.cli_json("runs")
            done = {r["agent"] for r in runs if r["state"] == "succeeded"}
            if done == {"counter", "digest"}:
                break
            time.sleep(0.3)
        assert done == {"counter", "digest"}, runs
        assert daemon.stop() == 0
        status = json.loads(project.cli("status", "--json", check=True).stdout)
        assert status["store"]["file_bytes"] > 0 and {"counter", "digest"} <= set(status["agents"])
        assert all(r["state"] != "failed" for r in project.cli_json("runs"))
    finally:
        project.close()


@pytest.mark.slow
def test_cancel_pause_resume_and_status_through_the_cli(corral_project: CorralProject) -> None:
    workdir = _nap_project(corral_project, 60, naps=2)
    corral_project.start_daemon()
    run_id = corral_project.cli_json("run", "napper")["id"]
    _wait(lambda: (workdir / "naps.txt").exists())
    status = corral_project.cli_json("status")["agents"]["napper"]
    assert status["state"] == "running" and status["queue_depth"] == 0
    cancelled = corral_project.cli("cancel", run_id, check=True)
    assert "cancel" in cancelled.stdout
    run = corral_project.wait_for_run(run_id, ("cancelled",), timeout=20)
    assert run["error"]["kind"] == "cancelled"
    assert corral_project.cli_json("trace", run_id)["steps"], "the journal is kept"
    assert_no_processes(run, workdir)
    again = corral_project.cli("cancel", run_id)
    assert again.returncode == 5 and "already ended" in again.stderr

    paused = corral_project.cli("pause", "napper", "--reason", "maintenance", "--for", "1h", check=True)
    assert "napper paused until" in paused.stdout
    status = corral_project.cli_json("status")["agents"]["napper"]
    assert status["state"] == "paused" and status["pause"]["reason"] == "maintenance"
    assert "napper paused since" in corral_project.cli("status", check=True).stdout
    refused = corral_project.cli("run", "napper")
    assert refused.returncode == 1 and "napper is paused (maintenance)" in refused.stderr
    assert "napper resumed" in corral_project.cli("resume", "napper", check=True).stdout
    assert corral_project.cli_json("status")["agents"]["napper"]["state"] == "idle"
    unknown = corral_project.cli("pause", "nobody")
    assert unknown.returncode == 5 and "no agent named 'nobody'" in unknown.stderr


@pytest.mark.slow
def test_reload_keeps_the_old_config_when_the_new_one_is_broken(corral_project: CorralProject) -> None:
    corral_project.agent("first", "def run(ctx):\n    return 1\n", every="1h")
    corral_project.agent(
        "paris",
        "def run(ctx):\n    return 1\n",
        triggers=[{"type": "cron", "cron": "0 7 * * *", "timezone": "Europe/Paris"}],
    )
    daemon = corral_project.start_daemon()
    good = corral_project.config_path.read_text()
    corral_project.config_path.write_text(
        good + '\n[agents.second]\ncode = "agents"\nentry = "first:run"\nevery = "x"\n'
    )
    broken = corral_project.cli("reload")
    assert broken.returncode == 3 and "[agents.second] every: 'x' is not a duration" in broken.stderr
    assert daemon.process.poll() is None
    assert "config reload rejected" in (corral_project.home / "logs" / "corral.log").read_text()
    corral_project.config_path.write_text(
        good + '\n[agents.second]\ncode = "agents"\nentry = "first:run"\nevery = "2h"\n'
    )
    assert "schedules 1 added" in corral_project.cli("reload", check=True).stdout
    assert corral_project.cli_json("run", "second")["agent"] == "second"
    status = corral_project.cli_json("status")["agents"]
    assert status["first"]["next_fire"] is not None and status["second"]["next_fire"] is not None
    assert status["paris"]["next_zone"] == "Europe/Paris", status["paris"]
    paris_row = next(line for line in corral_project.cli("status", check=True).stdout.splitlines() if "paris" in line)
    assert re.search(r"07:00:00 (CET|CEST)", paris_row), "a trigger's next fire is shown in its own zone: " + paris_row
    assert daemon.process.poll() is None
    assert daemon.stop() == 0
