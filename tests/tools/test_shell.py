"""run_command: real /bin/sh processes; a timeout kills everything the command started."""

from __future__ import annotations

import os
import time
from pathlib import Path

import pytest

from corral.errors import ToolCallError
from corral.plugins import shell
from corral.plugins.shell import run_command
from corral.tools import spec_for


@pytest.fixture
def work(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("GREETING", "hi from the agent's env")
    return tmp_path


def alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    try:  # a zombie still answers kill(0): look at its state
        return Path(f"/proc/{pid}/stat").read_text().split(") ", 1)[1][0] != "Z"
    except OSError:
        return False


def test_always_high_stakes_and_never_idempotent() -> None:
    spec = spec_for(run_command)
    assert (spec.high_stakes, spec.idempotent, spec.read_only, spec.reconcile) == (True, False, False, None)


def test_runs_in_the_workdir_with_the_agents_env(work: Path) -> None:
    got = run_command('pwd; echo "$GREETING"; echo oops >&2; exit 3')
    assert got == {
        "exit_code": 3,
        "stdout": f"{work.resolve()}\nhi from the agent's env\n",
        "stderr": "oops\n",
        "truncated": False,
        "timed_out": False,
    }


def test_output_is_capped_without_blocking_the_command(work: Path) -> None:
    got = run_command("head -c 300000 /dev/zero | tr '\\0' a; echo done >&2")
    assert len(got["stdout"]) == shell.OUTPUT_MAX
    assert got["truncated"] is True and got["stderr"] == "done\n" and got["exit_code"] == 0


def test_timeout_kills_the_whole_group(work: Path) -> None:
    started = time.monotonic()
    got = run_command("sleep 30 & echo $! > bg.pid; echo started; sleep 30", timeout=0.5)
    assert time.monotonic() - started < 10
    assert got["timed_out"] is True and got["stdout"] == "started\n"
    assert got["exit_code"] == -9
    background = int((work / "bg.pid").read_text())
    deadline = time.monotonic() + 5
    while alive(background) and time.monotonic() < deadline:
        time.sleep(0.02)
    assert not alive(background), "the background sleep went with the group"


def test_what_a_command_leaves_running_is_killed_when_it_exits(work: Path) -> None:
    got = run_command("sleep 30 > /dev/null 2>&1 & echo $! > bg.pid")
    assert got["exit_code"] == 0 and got["timed_out"] is False
    background = int((work / "bg.pid").read_text())
    deadline = time.monotonic() + 5
    while alive(background) and time.monotonic() < deadline:
        time.sleep(0.02)
    assert not alive(background)


def test_a_command_that_closes_its_output_still_gets_its_time(work: Path) -> None:
    got = run_command("exec >&- 2>&-; sleep 0.3; touch finished", timeout=5)
    assert got["exit_code"] == 0 and got["timed_out"] is False
    assert (work / "finished").exists()


@pytest.mark.parametrize(
    ("command", "timeout", "message"),
    [
        ("", 1.0, "command is empty"),
        ("   ", 1.0, "command is empty"),
        ("echo a\x00b", 1.0, "NUL byte"),
        ("true", 0.0, "timeout must be more than 0 and at most 600"),
        ("true", 601.0, "timeout must be"),
    ],
)
def test_refusals(work: Path, command: str, timeout: float, message: str) -> None:
    with pytest.raises(ToolCallError, match=message) as caught:
        run_command(command, timeout=timeout)
    assert caught.value.kind == "refused"
