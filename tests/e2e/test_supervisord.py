"""corral under a real supervisord, configured by the repository's own supervisor.conf.

The file is copied into ``tmp_path`` with its three marked paths rewritten (corral home,
corral config, the ``corral`` command); supervisord's own files follow the copy through
``%(here)s``. The scenario: corral comes up and runs an agent; a kill -9 of corral is
repaired by supervisord and the interrupted run finishes with every effect once;
``supervisorctl stop`` is a clean exit 0 that leaves no agent process behind.
"""

from __future__ import annotations

import json
import os
import re
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from dataclasses import fields
from pathlib import Path

import psutil
import pytest

from corral.config import CorralConfig
from corral.testing import CorralProject

from . import recorder

pytest.importorskip("supervisor", reason="the supervisor package (supervisord) is not installed")

SUPERVISOR_CONF = Path(__file__).resolve().parents[2] / "supervisor.conf"
# The placeholders supervisor.conf ships with; the config path first, it contains the home.
MAC_CONFIG = "/Users/you/.corral/corral.toml"
MAC_HOME = "/Users/you/.corral"
MAC_CORRAL = "/Users/you/corral/.venv/bin/corral"

HELLO = """
def run(ctx):
    return "hello from supervisord"
"""


def _corral_command() -> str:
    script = Path(sys.executable).with_name("corral")
    return str(script) if script.exists() else f"{sys.executable} -m corral"


class Supervisor:
    """A real supervisord running a copy of supervisor.conf, and supervisorctl against it."""

    def __init__(self, project: CorralProject) -> None:
        self.project = project
        self.folder = project.root / "supervisor"
        self.folder.mkdir()
        self.conf = self.folder / "supervisord.conf"
        text = SUPERVISOR_CONF.read_text()
        for placeholder, path in (
            (MAC_CONFIG, str(project.config_path)),
            (MAC_HOME, str(project.home)),
            (MAC_CORRAL, _corral_command()),
        ):
            assert placeholder in text, f"supervisor.conf no longer has {placeholder}"
            text = text.replace(placeholder, path)
        assert "/Users/you" not in text, "supervisor.conf has a path outside the marked places"
        self.conf.write_text(text)
        self.process: subprocess.Popen[bytes] | None = None
        self.seen: set[int] = set()

    @property
    def log(self) -> str:
        path = self.folder / "supervisord.log"
        return path.read_text() if path.exists() else ""

    @property
    def corral_output(self) -> str:
        path = self.folder / "corral.out.log"
        return path.read_text() if path.exists() else ""

    def start(self) -> None:
        out = open(self.folder / "supervisord.stdout", "ab")  # noqa: SIM115 - owned by the process
        self.process = subprocess.Popen(
            [sys.executable, "-m", "supervisor.supervisord", "-c", str(self.conf), "-n"],
            env=self.project.env,
            cwd=self.project.root,
            stdout=out,
            stderr=subprocess.STDOUT,
        )
        out.close()

    def ctl(self, *args: str, timeout: float = 20.0) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            [sys.executable, "-m", "supervisor.supervisorctl", "-c", str(self.conf), *args],
            env=self.project.env,
            capture_output=True,
            text=True,
            timeout=timeout,
        )

    def status(self) -> tuple[str, int | None]:
        """corral's state as supervisorctl prints it, and its pid when it has one."""
        out = self.ctl("status", "corral").stdout
        match = re.search(r"^corral\s+([A-Z]+)(?:\s+pid (\d+),)?", out, re.MULTILINE)
        if match is None:
            return f"unknown: {out.strip()!r}", None
        pid = int(match[2]) if match[2] else None
        if pid is not None:
            self.seen.add(pid)
        return match[1], pid

    def wait_state(self, wanted: str, *, not_pid: int | None = None, timeout: float = 20.0) -> int | None:
        """Poll supervisorctl until corral is ``wanted`` (with a pid other than ``not_pid``)."""
        deadline = time.monotonic() + timeout
        state, pid = "never asked", None
        while time.monotonic() < deadline:
            assert self.process is not None and self.process.poll() is None, (
                f"supervisord exited with {self.process and self.process.returncode}:\n{self.log}"
            )
            state, pid = self.status()
            if state == wanted and (not_pid is None or pid != not_pid):
                return pid
            if state in ("FATAL", "BACKOFF") and wanted == "RUNNING":
                break
            time.sleep(0.1)
        raise AssertionError(
            f"corral is {state} (pid {pid}), not {wanted}, after {timeout}s\n"
            f"supervisord.log:\n{self.log}\ncorral output:\n{self.corral_output[-3000:]}"
        )

    def close(self) -> None:
        """Stop supervisord and make sure nothing it or corral started is left running."""
        if self.process is None:
            return
        victims: set[int] = set(self.seen)
        try:
            victims.update(p.pid for p in psutil.Process(self.process.pid).children(recursive=True))
        except psutil.Error:
            pass
        if self.process.poll() is None:
            self.process.terminate()  # supervisord stops corral gracefully, then exits
            try:
                self.process.wait(30)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait(10)
        for pid in victims | {p.pid for p in recorder.launchers_under(self.project.home)}:
            try:
                proc = psutil.Process(pid)
                if proc.cwd().startswith(str(self.project.root)):  # ours, not a reused pid
                    proc.kill()
            except psutil.Error:
                continue


def _wait_no_agents(home: Path, timeout: float = 5.0) -> None:
    deadline = time.monotonic() + timeout
    while recorder.launchers_under(home) and time.monotonic() < deadline:
        time.sleep(0.05)
    assert not recorder.launchers_under(home), f"agent processes outlived their run: {recorder.launchers_under(home)}"


def _daemon_events(home: Path) -> list[str]:
    path = home / "logs" / "corral.log"
    return [json.loads(line)["event"] for line in path.read_text().splitlines() if line.strip()]


@pytest.fixture
def supervisor(corral_project: CorralProject) -> Iterator[Supervisor]:
    recorder.install(corral_project, "killed", "stopped")
    corral_project.agent("hello", HELLO)
    sup = Supervisor(corral_project)
    try:
        yield sup
    finally:
        sup.close()


def test_supervisor_conf_settings() -> None:
    """The shipped file parses with supervisor's own parser and keeps the promises the docs make."""
    from supervisor.datatypes import RestartUnconditionally
    from supervisor.options import ClientOptions, ServerOptions

    server = ServerOptions()
    server.realize(args=["-c", str(SUPERVISOR_CONF)])
    assert server.nodaemon and not server.parse_warnings
    [group] = server.process_group_configs
    [corral] = group.process_configs
    grace = next(f.default for f in fields(CorralConfig) if f.name == "grace_seconds")
    assert corral.name == "corral" and corral.command.split()[1:] == ["up"], "corral up, in the foreground"
    assert corral.stopsignal == signal.SIGTERM and corral.exitcodes == [0]
    assert corral.stopwaitsecs >= grace + 15, "SIGKILL only after corral's grace and its 10s to journal"
    assert corral.stopasgroup and corral.killasgroup and corral.autostart
    assert corral.autorestart is RestartUnconditionally, "restart after any exit, even 0"
    assert corral.stdout_logfile_maxbytes > 0 and corral.stdout_logfile_backups > 0
    assert set(corral.environment) >= {"CORRAL_HOME", "CORRAL_CONFIG"}
    [http] = server.server_configs
    assert http["chmod"] == 0o700
    client = ClientOptions()
    client.realize(args=["-c", str(SUPERVISOR_CONF)])
    assert client.serverurl == f"unix://{http['file']}"


@pytest.mark.slow
def test_corral_under_supervisord(supervisor: Supervisor) -> None:
    project = supervisor.project
    supervisor.start()
    first = supervisor.wait_state("RUNNING")

    # (a) The socket is up, the daemon holding the home is supervisord's child, runs work.
    assert project.socket.exists()
    status = project.cli_json("status")
    assert status["daemon"] == {"running": True, "pid": first}
    hello = project.cli("run", "hello", "--wait", "--json", check=True)
    assert "foreground" not in hello.stderr, "the run went through the daemon, not a fallback"
    assert json.loads(hello.stdout)["result"] == "hello from supervisord"

    # (b) kill -9 mid-run: supervisord restarts corral, the run resumes, nothing repeats.
    killed_dir = project.home / "agents" / "killed"
    run_id = project.cli_json("run", "killed")["id"]
    recorder.wait_lines(killed_dir / "executions.txt", 8)
    assert supervisor.ctl("pid", "corral").stdout.strip() == str(first)
    os.kill(first, signal.SIGKILL)
    second = supervisor.wait_state("RUNNING", not_pid=first)
    assert second is not None and not psutil.pid_exists(first)
    assert "exited: corral (terminated by SIGKILL; not expected)" in supervisor.log
    run = project.wait_for_run(run_id, timeout=30)
    assert run["state"] == "succeeded" and run["result"] == sum(range(20)), run
    assert run["attempt"] == 2
    recorder.assert_effects_once(killed_dir)
    recorder.assert_journal_done(project, run_id)
    _wait_no_agents(project.home)

    # (c) supervisorctl stop mid-run: a clean exit 0 well inside the grace period.
    stopped_dir = project.home / "agents" / "stopped"
    run_id = project.cli_json("run", "stopped")["id"]
    recorder.wait_lines(stopped_dir / "executions.txt", 3)
    began = time.monotonic()
    stop = supervisor.ctl("stop", "corral", timeout=60)
    took = time.monotonic() - began
    assert stop.returncode == 0 and "corral: stopped" in stop.stdout, stop
    assert took < project.corral["grace_seconds"], f"stopping took {took:.1f}s"
    assert supervisor.status() == ("STOPPED", None)
    assert "stopped: corral (exit status 0)" in supervisor.log, supervisor.log
    assert supervisor.log.count("not expected") == 1, "only the kill -9 was an unexpected exit"
    events = _daemon_events(project.home)
    assert events.count("daemon stopped") == 1 and events[-1] == "daemon stopped", events[-5:]
    assert not project.socket.exists()
    _wait_no_agents(project.home, timeout=2)
    assert project.run_record(run_id)["state"] == "interrupted"

    # ... and `supervisorctl start` picks the interrupted run up where it stopped.
    assert supervisor.ctl("start", "corral").returncode == 0
    supervisor.wait_state("RUNNING")
    run = project.wait_for_run(run_id, timeout=30)
    assert run["state"] == "succeeded" and run["result"] == sum(range(20)), run
    recorder.assert_effects_once(stopped_dir)
    recorder.assert_journal_done(project, run_id)
