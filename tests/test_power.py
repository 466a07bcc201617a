"""Keeping a Mac awake while runs are active, on a simulated Mac with a real stand-in process.

caffeinate exists only on macOS, so the holder here is a real ``sleep 60`` started through
the spawn seam: what is checked is that it is started, kept, started again and really ended.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from corral.daemon.power import KeepAwake, Process, capability
from corral.observe.logs import LogFiles
from corral.observe.logview import read_events

CAFFEINATE = "/usr/bin/caffeinate"


def on_a_mac(name: str) -> str | None:
    """``shutil.which`` on a Mac, where caffeinate ships with the system."""
    return CAFFEINATE if name == "caffeinate" else None


def nothing_found(name: str) -> None:
    return None


def _deaf_to_sigterm() -> None:
    signal.signal(signal.SIGTERM, signal.SIG_IGN)  # ignored before exec stays ignored: no race


class Sleeps:
    """A spawn seam that starts a real ``sleep 60`` for each holder, and remembers each."""

    def __init__(self, command: str = "sleep", *, deaf: bool = False) -> None:
        self.command = [command, "60"]
        self.deaf = deaf
        self.argv: list[list[str]] = []
        self.started: list[subprocess.Popen[bytes]] = []

    def __call__(self, argv: list[str]) -> Process:
        self.argv.append(argv)
        setup = _deaf_to_sigterm if self.deaf else None
        process = subprocess.Popen(self.command, start_new_session=True, preexec_fn=setup)
        self.started.append(process)
        return process

    def close(self) -> None:
        for process in self.started:
            if process.poll() is None:
                os.killpg(process.pid, signal.SIGKILL)
            process.wait()


@pytest.fixture
def sleeps() -> Iterator[Sleeps]:
    spawn = Sleeps()
    try:
        yield spawn
    finally:
        spawn.close()


@pytest.fixture
def logs(tmp_path: Path) -> Iterator[LogFiles]:
    with LogFiles(tmp_path / "logs") as files:
        yield files


def events(logs: LogFiles) -> list[dict[str, Any]]:
    return [{k: v for k, v in e.items() if k != "timestamp"} for e in read_events(logs.directory / "corral.log")]


def mac(logs: LogFiles, spawn: Sleeps, *, enabled: bool = True) -> KeepAwake:
    return KeepAwake(enabled, logs.logger(), platform="darwin", which=on_a_mac, spawn=spawn, pid=4242)


def test_on_a_mac_the_plan_is_caffeinate_waiting_on_the_daemon(logs: LogFiles, sleeps: Sleeps) -> None:
    assert mac(logs, sleeps).plan() == [CAFFEINATE, "-i", "-w", "4242"]
    assert KeepAwake(True, logs.logger(), platform="darwin", which=on_a_mac).plan() == [
        CAFFEINATE,
        "-i",
        "-w",
        str(os.getpid()),
    ], "without a pid, the assertion lives as long as this process"
    assert capability("darwin", on_a_mac) == (
        True,
        f"caffeinate -i holds an idle-sleep assertion while runs are active ({CAFFEINATE})",
    )


def test_the_first_active_run_takes_the_assertion_and_the_last_releases_it(logs: LogFiles, sleeps: Sleeps) -> None:
    awake = mac(logs, sleeps)
    awake.busy(1)
    assert sleeps.argv == [[CAFFEINATE, "-i", "-w", "4242"]]
    holder = sleeps.started[0]
    assert holder.poll() is None
    awake.busy(2)
    awake.busy(1)
    assert len(sleeps.started) == 1, "more runs, or fewer but some, keep the one assertion"
    awake.busy(0)
    assert holder.poll() == -signal.SIGTERM, "the holder is really ended at idle"
    awake.busy(0)
    awake.busy(3)
    assert len(sleeps.started) == 2 and sleeps.started[1].poll() is None
    assert [(e["level"], e["event"], e.get("active")) for e in events(logs)] == [
        ("info", "keeping the machine awake", 1),
        ("info", "machine may sleep again", 0),
        ("info", "keeping the machine awake", 3),
    ]


def test_a_holder_that_died_while_runs_are_active_is_started_again(logs: LogFiles, sleeps: Sleeps) -> None:
    awake = mac(logs, sleeps)
    awake.busy(1)
    for lost in range(2):
        sleeps.started[lost].kill()
        sleeps.started[lost].wait()
        awake.busy(1)
        assert len(sleeps.started) == lost + 2 and sleeps.started[-1].poll() is None
    warnings = [e for e in events(logs) if e["level"] == "warning"]
    assert warnings == [
        {"level": "warning", "event": "keep-awake assertion lost; taking it again", "returncode": -signal.SIGKILL}
    ], "said once, not at every loss"


def test_close_ends_the_holder_while_runs_are_still_active(logs: LogFiles, sleeps: Sleeps) -> None:
    awake = mac(logs, sleeps)
    awake.busy(2)
    awake.close()
    assert sleeps.started[0].poll() == -signal.SIGTERM
    assert events(logs)[-1]["event"] == "machine may sleep again" and events(logs)[-1]["active"] == 2


def test_a_holder_deaf_to_sigterm_does_not_block_the_daemon(logs: LogFiles) -> None:
    deaf = Sleeps(deaf=True)
    try:
        awake = mac(logs, deaf)
        awake.busy(1)
        awake.busy(0)
        assert deaf.started[0].poll() is None
    finally:
        deaf.close()
    assert [e["event"] for e in events(logs)][-2:] == [
        "keep-awake holder did not exit on SIGTERM; it ends with the daemon",
        "machine may sleep again",
    ]


def test_off_by_config_nothing_is_started_or_said(logs: LogFiles, sleeps: Sleeps) -> None:
    awake = mac(logs, sleeps, enabled=False)
    assert awake.plan() is None
    awake.busy(1)
    awake.busy(0)
    awake.close()
    assert sleeps.argv == [] and events(logs) == []


def test_on_linux_it_is_a_quiet_no_op_and_doctor_says_what_to_do(logs: LogFiles, sleeps: Sleeps) -> None:
    awake = KeepAwake(True, logs.logger(), platform="linux", which=on_a_mac, spawn=sleeps)
    assert awake.plan() is None
    awake.busy(1)
    awake.close()
    assert sleeps.argv == [] and events(logs) == [], "doctor gives the reason; the log is not nagged per run"
    able, reason = capability("linux", on_a_mac)
    assert not able
    assert "macOS feature" in reason and "systemctl mask sleep.target suspend.target" in reason
    assert "systemd-inhibit --what=idle:sleep corral up" in reason
    able, reason = capability("freebsd14", on_a_mac)
    assert not able and "on freebsd14" in reason


def test_a_mac_without_caffeinate_warns_once(logs: LogFiles, sleeps: Sleeps) -> None:
    awake = KeepAwake(True, logs.logger(), platform="darwin", which=nothing_found, spawn=sleeps)
    assert awake.plan() is None
    for active in (1, 0, 2):
        awake.busy(active)
    assert sleeps.argv == []
    able, reason = capability("darwin", nothing_found)
    assert not able and "/usr/bin/caffeinate" in reason and "PATH" in reason
    assert events(logs) == [{"level": "warning", "event": "cannot keep the machine awake", "reason": reason}]


def test_a_holder_that_cannot_start_warns_once(logs: LogFiles, tmp_path: Path) -> None:
    missing = Sleeps(str(tmp_path / "no-such-command"))
    awake = mac(logs, missing)
    awake.busy(1)
    awake.busy(2)
    assert len(missing.argv) == 2 and missing.started == [], "each busy() tries again"
    (warning,) = events(logs)
    assert warning["event"] == "cannot keep the machine awake" and "did not start" in warning["reason"]


@pytest.mark.skipif(sys.platform != "darwin", reason="the real caffeinate exists only on macOS")
def test_the_real_caffeinate_holds_and_releases(logs: LogFiles) -> None:
    awake = KeepAwake(True, logs.logger())
    awake.busy(1)
    assertions = subprocess.run(["pmset", "-g", "assertions"], capture_output=True, text=True, check=True).stdout
    awake.close()
    assert "caffeinate" in assertions
