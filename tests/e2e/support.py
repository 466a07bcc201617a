"""Helpers for the e2e fault and isolation tests: batches of runs and the invariants.

A *batch* starts many runs at once against one real daemon (each through a real
``corral run --wait``) and collects their final records, so slow scenarios overlap
instead of adding up. The ``assert_*`` functions check what RELIABILITY.md says must
hold after every run, not just its headline.
"""

from __future__ import annotations

import json
import os
import signal
import time
from collections.abc import Callable, Iterable, Mapping
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import psutil

from corral.testing import CorralProject, DaemonProcess

DAEMON_FILES = ("store", "logs", "daemon.lock", "corral.sock")
"""What the daemon itself owns under the home; agents own ``agents/<name>``."""


class Project(CorralProject):
    """A CorralProject whose daemon and CLI get ``extra_env`` on top of the test's own.

    CorralProject drops every ``CORRAL_*`` variable of the test process, so a sentinel
    named ``CORRAL_TEST_SECRET`` has to be added here to reach the daemon.
    """

    def __init__(self, root: Path, extra_env: Mapping[str, str] | None = None) -> None:
        super().__init__(root)
        self.extra_env = dict(extra_env or {})

    @property
    def env(self) -> dict[str, str]:
        env = super().env
        env.update(self.extra_env)
        return env

    def workdir(self, agent: str) -> Path:
        return self.home / "agents" / agent


@dataclass
class Batch:
    """Runs started together on one daemon, and the files outside their workdirs before."""

    project: Project
    daemon: DaemonProcess
    runs: dict[str, dict[str, Any]]
    outside_before: dict[str, tuple[int, int]]
    workdirs: list[Path]

    def noted(self, agent: str) -> list[int]:
        """Pids an agent noted in ``pids.txt`` in its workdir, as it sees them: inside its PID
        namespace, where they are not the host's."""
        return [int(pid) for pid in (self.project.workdir(agent) / "pids.txt").read_text().split()]

    def pids(self, agent: str) -> list[int]:
        """Host pids of the processes :meth:`noted` names that still run."""
        return host_pids(self.noted(agent), self.project.workdir(agent))


def start_batch(project: Project, agents: Iterable[str]) -> Batch:
    """Start the daemon, then one run of each agent at once; returns when all have ended."""
    names = list(agents)
    workdirs = [project.workdir(name) for name in project.agents]
    daemon = project.start_daemon()
    before = snapshot_outside(project, workdirs)
    return Batch(project, daemon, run_batch(project, names), before, workdirs)


def wait_for(check: Callable[[], Any], what: str, timeout: float = 30.0) -> Any:
    """Poll ``check`` until it returns something true; fail naming ``what`` after ``timeout``."""
    deadline = time.monotonic() + timeout
    while not (found := check()):
        if time.monotonic() > deadline:
            raise AssertionError(f"{what} within {timeout:.0f}s")
        time.sleep(0.05)
    return found


def run_batch(project: CorralProject, agents: Iterable[str], timeout: float = 90.0) -> dict[str, dict[str, Any]]:
    """Start one run of each agent at once through ``corral run --wait``; final records by agent.

    The record is read back from the store with ``corral trace``, so a run the daemon
    reported as over but left unfinished in the store shows up as such.
    """
    names = list(agents)

    def one(name: str) -> dict[str, Any]:
        result = project.cli("run", name, "--wait", "--json", timeout=timeout)
        if result.returncode not in (0, 1):
            raise AssertionError(f"corral run {name} exited {result.returncode}: {result.stderr}")
        return project.run_record(json.loads(result.stdout)["id"])

    with ThreadPoolExecutor(max_workers=len(names)) as pool:
        return dict(zip(names, pool.map(one, names), strict=True))


def run_processes(run_id: str, workdir: Path) -> list[psutil.Process]:
    """Live processes of a run: any whose cwd is its workdir or whose command line names it."""
    found = []
    for proc in psutil.process_iter(["cwd", "cmdline", "status"]):
        try:
            if proc.info["status"] == psutil.STATUS_ZOMBIE or proc.pid == os.getpid():
                continue
            cmdline = " ".join(proc.info["cmdline"] or [])
            if proc.info["cwd"] == str(workdir) or run_id in cmdline:
                found.append(proc)
        except psutil.Error:
            continue
    return found


def host_pids(noted: Iterable[int], workdir: Path) -> list[int]:
    """The host pids of running processes whose own pid, in their innermost PID namespace, is one
    of ``noted``, and whose HOME is ``workdir`` (corral sets it so for the agent's processes)."""
    wanted, found = set(noted), []
    for proc in psutil.process_iter():
        try:
            if proc.environ().get("HOME") != str(workdir):
                continue
            status = Path(f"/proc/{proc.pid}/status").read_text()
        except (psutil.Error, OSError):
            continue
        inner = next((line.split()[-1] for line in status.splitlines() if line.startswith("NSpid:")), str(proc.pid))
        if int(inner) in wanted:
            found.append(proc.pid)
    return found


def alive(pids: Iterable[int]) -> list[int]:
    """The pids among ``pids`` still running (a zombie has finished running)."""
    living = []
    for pid in pids:
        try:
            if psutil.Process(pid).status() != psutil.STATUS_ZOMBIE:
                living.append(pid)
        except psutil.Error:
            continue
    return living


def wait_until_dead(pids: Iterable[int], timeout: float = 2.0) -> list[int]:
    """Poll until none of ``pids`` runs or ``timeout`` passes; returns the survivors."""
    pids = list(pids)
    deadline = time.monotonic() + timeout
    while alive(pids) and time.monotonic() < deadline:
        time.sleep(0.05)
    return alive(pids)


def kill_quietly(pids: Iterable[int]) -> None:
    """Clean up after a test that found survivors, so they do not outlive the session."""
    for pid in alive(pids):
        try:
            psutil.Process(pid).kill()
        except psutil.Error:
            continue


def assert_no_processes(run: Mapping[str, Any], workdir: Path, timeout: float = 2.0) -> None:
    deadline = time.monotonic() + timeout
    while (left := run_processes(run["id"], workdir)) and time.monotonic() < deadline:
        time.sleep(0.05)
    described = []
    for proc in left:
        try:
            described.append(f"{proc.pid} {' '.join(proc.cmdline())[:120]}")
        except psutil.Error:
            continue
    kill_quietly(p.pid for p in left)
    assert not described, f"processes outlived run {run['id']}: {described}"


def assert_journal(project: CorralProject, run_id: str) -> list[dict[str, Any]]:
    """Sequences 1..n without gaps or duplicates; every step resolved or marked unknown."""
    steps = project.cli_json("trace", run_id)["steps"]
    seqs = [s["seq"] for s in steps]
    assert seqs == list(range(1, len(seqs) + 1)), f"journal has gaps or duplicates: {seqs[:50]}"
    unresolved = [s["seq"] for s in steps if s["status"] not in ("done", "unknown")]
    assert not unresolved, f"steps left 'started' in a finished run: {unresolved}"
    return steps


def snapshot_outside(project: CorralProject, workdirs: Iterable[Path]) -> dict[str, tuple[int, int]]:
    """Every file under the project root that no agent may write: path -> (size, mtime).

    Skips the agents' own workdirs and what the daemon owns (store, logs, lock, socket,
    its stderr). The code folder is included: an agent's process must not write even
    bytecode there.
    """
    skip = {Path(w) for w in workdirs} | {project.home / name for name in DAEMON_FILES}
    skip.add(project.root / "daemon.stderr")
    found: dict[str, tuple[int, int]] = {}
    for dirpath, dirnames, filenames in os.walk(project.root):
        here = Path(dirpath)
        dirnames[:] = [d for d in dirnames if here / d not in skip]
        for name in filenames:
            path = here / name
            if path in skip:
                continue
            try:
                st = path.lstat()
            except FileNotFoundError:
                continue
            found[str(path.relative_to(project.root))] = (st.st_size, st.st_mtime_ns)
    return found


def log_events(project: CorralProject, agent: str | None, run_id: str | None = None) -> list[dict[str, Any]]:
    """Every event of an agent's log file (the daemon's with ``None``), optionally of one run."""
    path = project.home / "logs" / (f"{agent}.log" if agent else "corral.log")
    events = [json.loads(line) for line in path.read_text().splitlines() if line.strip()]
    return [e for e in events if run_id is None or e.get("run_id") == run_id]


def assert_not_resumed(project: CorralProject, run: Mapping[str, Any]) -> None:
    """The run ended in its first attempt: nothing interrupted it, and its ending was not retried."""
    interruptions = [
        e["error"] for e in log_events(project, run["agent"], run["id"]) if e["event"] == "run interrupted; resuming"
    ]
    assert not interruptions and run["attempt"] == 1, f"{run['agent']} was resumed after: {interruptions}"


def contained(batch: Batch, name: str) -> dict[str, Any]:
    """The run of ``name`` left no process and a clean journal, and was not resumed."""
    run = batch.runs[name]
    assert_no_processes(run, batch.project.workdir(name))
    assert_journal(batch.project, run["id"])
    assert_not_resumed(batch.project, run)
    return run


def run_waited(project: CorralProject, agent: str, *args: str) -> dict[str, Any]:
    """``corral run AGENT --wait --json``: the run as it ended, whichever way."""
    result = project.cli("run", agent, *args, "--wait", "--json")
    assert result.returncode in (0, 1), result.stderr
    return dict(json.loads(result.stdout))


def run_succeeded(project: CorralProject, agent: str, *args: str) -> dict[str, Any]:
    """:func:`run_waited`, which must have succeeded (its error shown if not)."""
    run = run_waited(project, agent, *args)
    assert run["state"] == "succeeded", run.get("error")
    return run


def steps_of(project: CorralProject, run_id: str, kind: str | None = None) -> list[dict[str, Any]]:
    """The run's journal as ``corral trace --json`` shows it (only steps of ``kind``, if given)."""
    steps = json.loads(project.cli("trace", run_id, "--json", check=True).stdout)["steps"]
    return [step for step in steps if kind is None or step["kind"] == kind]


def kill_daemon_at(daemon: DaemonProcess, marker: Path) -> None:
    """kill -9 ``daemon`` once the agent has made ``marker`` in its workdir (where it waits for
    a file ``go`` beside it); then remove the marker and make ``go``, for the resume."""
    wait_for(marker.exists, f"{marker.name} in the agent's workdir")
    os.kill(daemon.pid, signal.SIGKILL)
    daemon.process.wait(10)
    marker.unlink()
    (marker.parent / "go").touch()
