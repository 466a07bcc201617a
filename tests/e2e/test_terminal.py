"""What `corral up`'s terminal and the agents' logs say, read as an operator reads them:
a failed run, a held run and an approval waiting stand out at warning and error level (in
colour on a terminal), routine runs take one info line each, a failure names its exception
type and the agent's file and line, and an agent's log tells its steps in the order they
happened."""

from __future__ import annotations

import json
import os
import pty
import select
import subprocess
import sys
import time
from typing import Any

from corral.testing import CorralProject
from tests.projects import run_until_held

STEPS = """
def run(ctx):
    ctx.log.info("before the tool")
    ctx.tool("word_count", text="a b c")
    ctx.log.info("after the tool")
    ctx.state["seen"] = True
    print("printed after the state")
    ctx.log.warning("last words")
    return "done"
"""

BOOM = """
def helper():
    return 1 / 0


def run(ctx):
    return helper()
"""


def _lines(text: str) -> list[str]:
    return [line for line in text.splitlines() if line.strip()]


def _events(project: CorralProject, agent: str) -> list[dict[str, Any]]:
    path = project.home / "logs" / f"{agent}.log"
    return [json.loads(line) for line in path.read_text().splitlines()]


def test_the_terminal_shows_what_needs_a_person_and_one_line_per_routine_run(deployer: CorralProject) -> None:
    deployer.agent("steps", STEPS, tools=["word_count"])
    deployer.agent("boom", BOOM)
    daemon = deployer.start_daemon()
    deployer.cli("run", "steps", "--wait", check=True)
    failed = deployer.cli("run", "boom", "--wait")
    assert failed.returncode == 1
    run_until_held(deployer, "prod")
    time.sleep(1.5)  # the alerts of the held run reach the log
    assert daemon.stop() == 0
    terminal = _lines(deployer.daemon_stderr())

    [started] = [line for line in terminal if " daemon started " in line]
    told = started.replace(str(deployer.root), "ROOT")  # the paths' length is the machine's, not the line's
    assert len(told) < 250 and "sandbox_macos" not in told and "plugin_failures" not in told, started
    assert not [line for line in terminal if "run queued" in line or "new=running" in line], terminal
    [steps_end] = [line for line in terminal if " steps " in line and "run state" in line]
    assert " info " in steps_end and "new=succeeded" in steps_end

    [boom] = [line for line in terminal if "run state" in line and "new=failed" in line]
    assert " error " in boom and "ZeroDivisionError: division by zero" in boom, boom
    assert "boom.py:3 in helper" in boom, boom
    assert any(" warning " in line and "run of 'boom' failed" in line for line in terminal), terminal

    [held] = [line for line in terminal if "run state" in line and "new=on_hold" in line]
    assert " warning " in held and "deployer" in held
    assert any(" warning " in line and "waits for approval" in line for line in terminal), terminal
    assert any(" critical " in line and "on hold and needs a human" in line for line in terminal), terminal
    assert "Traceback" not in "\n".join(terminal)


def test_an_agents_log_tells_its_steps_and_lines_in_the_order_they_happened(corral_project: CorralProject) -> None:
    corral_project.agent("steps", STEPS, tools=["word_count"])
    corral_project.agent("boom", BOOM)
    corral_project.start_daemon()
    for _ in range(3):
        corral_project.cli("run", "steps", "--wait", check=True)
    corral_project.cli("run", "boom", "--wait")
    time.sleep(0.5)

    runs: dict[str, list[str]] = {}
    for event in _events(corral_project, "steps"):
        if event["event"] == "stdout":  # an output line goes where it is read: a child's stdout is buffered
            assert event["line"] == "printed after the state"
            continue
        name = f"step {event['seq']}" if event["event"] == "step" else event["event"]
        runs.setdefault(event["run_id"], []).append(name)
    expected = ["run started", "before the tool", "step 1", "after the tool", "step 2", "last words", "run ended"]
    assert len(runs) == 3 and all(names == expected for names in runs.values()), runs

    [ended] = [event for event in _events(corral_project, "boom") if event["event"] == "run ended"]
    assert ended["level"] == "error" and ended["state"] == "failed"
    assert ended["error"] == "ZeroDivisionError: division by zero"
    assert ended["where"].endswith("boom.py:3 in helper"), ended


def test_the_terminal_is_in_colour_on_a_tty_and_plain_with_no_color(corral_project: CorralProject) -> None:
    corral_project.agent("boom", BOOM)
    corral_project.write()
    for no_color, coloured in ((None, True), ("1", False)):
        env = {**corral_project.env, **({"NO_COLOR": no_color} if no_color else {})}
        parent, child = pty.openpty()
        daemon = subprocess.Popen(
            [sys.executable, "-m", "corral", "up"], env=env, cwd=corral_project.root, stdout=child, stderr=child
        )
        os.close(child)
        try:
            seen = _read_until(parent, b"daemon started")
            corral_project.cli("run", "boom", "--wait")
            seen += _read_until(parent, b"ZeroDivisionError")
        finally:
            daemon.terminate()
            daemon.wait(30)
            os.close(parent)
        assert (b"\x1b[31m" in seen) is coloured, seen  # the error level in red
        assert b"ZeroDivisionError" in seen


def _read_until(fd: int, wanted: bytes, timeout: float = 30.0) -> bytes:
    seen = b""
    deadline = time.monotonic() + timeout
    while wanted not in seen and time.monotonic() < deadline:
        ready, _, _ = select.select([fd], [], [], 0.2)
        if ready:
            seen += os.read(fd, 65536)
    assert wanted in seen, seen
    return seen
