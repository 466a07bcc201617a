"""The daemon's own life: interval triggers, overlap, SIGTERM drain, grace, the example config."""

from __future__ import annotations

import json
import re
import shutil
import time
from pathlib import Path

import pytest

from corral.testing import CorralProject

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
    time.sleep(3.5)
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
        assert status["store"]["file_bytes"] > 0 and set(status["agents"]) == {"counter", "digest"}
        assert all(r["state"] != "failed" for r in project.cli_json("runs"))
    finally:
        project.close()
