"""kill -9 of the daemon or of a child in the middle of a run: nothing lost or repeated."""

from __future__ import annotations

import os
import signal
import time
from collections import Counter
from pathlib import Path

import psutil
import pytest

from corral.testing import CorralProject

RECORDER = '''
import os, time
import corral

@corral.tool(idempotent=True)
def record(n: int, idempotency_key: str) -> int:
    """Write n to effects.txt once per key; log every execution to executions.txt."""
    with open("executions.txt", "a") as f:
        f.write(f"{n} {idempotency_key}\\n")
    time.sleep(0.15)
    seen = open("effects.txt").read().split() if os.path.exists("effects.txt") else []
    if idempotency_key not in seen:
        with open("effects.txt", "a") as f:
            f.write(f"{n} {idempotency_key}\\n")
    return n

@corral.hookimpl
def corral_register_tools(register):
    register(record)
'''

TWENTY = """
def run(ctx):
    total = 0
    for n in range(20):
        total += ctx.tool("record", n=n)
    return total
"""


def _setup(project: CorralProject, **table: object) -> Path:
    plugin = project.root / "recorder.py"
    plugin.write_text(RECORDER)
    project.corral["plugins"] = [str(plugin)]
    project.agent("twenty", TWENTY, tools=["record"], **table)
    return project.home / "agents" / "twenty"


def _wait_lines(path: Path, n: int, timeout: float = 30.0) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if path.exists() and len(path.read_text().splitlines()) >= n:
            return
        time.sleep(0.02)
    raise AssertionError(f"{path} never reached {n} lines")


def _agent_processes(workdir: Path) -> list[psutil.Process]:
    found = []
    for proc in psutil.process_iter(["cwd", "cmdline"]):
        try:
            if proc.info["cwd"] == str(workdir) and "corral.sandbox.launcher" in " ".join(proc.info["cmdline"] or []):
                found.append(proc)
        except psutil.Error:
            continue
    return found


def _assert_journal_invariants(project: CorralProject, run_id: str, steps: int) -> list[dict]:
    trace = project.cli_json("trace", run_id)
    seqs = [s["seq"] for s in trace["steps"]]
    assert seqs == list(range(1, steps + 1)), f"journal has gaps or duplicates: {seqs}"
    assert all(s["status"] == "done" for s in trace["steps"]), trace["steps"]
    return trace["steps"]


@pytest.mark.slow
def test_kill_9_daemon_mid_run_resumes_without_repeating(corral_project: CorralProject) -> None:
    workdir = _setup(corral_project)
    daemon = corral_project.start_daemon()
    run_id = corral_project.cli_json("run", "twenty")["id"]
    _wait_lines(workdir / "executions.txt", 8)
    os.kill(daemon.pid, signal.SIGKILL)
    daemon.process.wait(10)

    deadline = time.monotonic() + 5
    while _agent_processes(workdir) and time.monotonic() < deadline:
        time.sleep(0.05)
    assert not _agent_processes(workdir), "the agent outlived its daemon"
    interrupted_at = len((workdir / "executions.txt").read_text().splitlines())

    corral_project.start_daemon()
    run = corral_project.wait_for_run(run_id)
    assert run["state"] == "succeeded", run
    assert run["result"] == sum(range(20))
    assert run["attempt"] == 2

    effects = [line.split() for line in (workdir / "effects.txt").read_text().splitlines()]
    assert sorted(int(n) for n, _ in effects) == list(range(20)), "every effect exactly once"
    executions = Counter(tuple(line.split()) for line in (workdir / "executions.txt").read_text().splitlines())
    repeated = {call: count for call, count in executions.items() if count > 1}
    assert len(repeated) <= 1, f"only the call in flight may run again: {repeated}"
    for (n, _key), count in repeated.items():
        assert count == 2 and int(n) == interrupted_at - 1, "the re-run is the interrupted call, same key"
    steps = _assert_journal_invariants(corral_project, run_id, 20)
    assert [s["value"] for s in steps] == list(range(20))
    replayed = [s for s in steps if s["attempt"] == 1]
    assert len(replayed) >= interrupted_at - 1


@pytest.mark.slow
def test_kill_9_child_resumes_and_daemon_survives(corral_project: CorralProject) -> None:
    workdir = _setup(corral_project)
    daemon = corral_project.start_daemon()
    run_id = corral_project.cli_json("run", "twenty")["id"]
    _wait_lines(workdir / "executions.txt", 5)
    [child] = _agent_processes(workdir)
    child.kill()
    run = corral_project.wait_for_run(run_id)
    assert run["state"] == "succeeded" and run["attempt"] == 2
    assert daemon.process.poll() is None
    effects = (workdir / "effects.txt").read_text().splitlines()
    assert sorted(int(line.split()[0]) for line in effects) == list(range(20))
    _assert_journal_invariants(corral_project, run_id, 20)


@pytest.mark.slow
def test_kill_9_child_fails_when_configured(corral_project: CorralProject) -> None:
    workdir = _setup(corral_project, on_crash="fail")
    daemon = corral_project.start_daemon()
    run_id = corral_project.cli_json("run", "twenty")["id"]
    _wait_lines(workdir / "executions.txt", 3)
    [child] = _agent_processes(workdir)
    child.kill()
    run = corral_project.wait_for_run(run_id)
    assert run["state"] == "failed"
    assert "killed by SIGKILL" in run["error"]["message"]
    assert daemon.process.poll() is None
    assert corral_project.cli("run", "twenty", "--wait").returncode == 0, "the daemon still runs agents"
