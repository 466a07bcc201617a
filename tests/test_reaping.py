"""Killing a run's process tree and reaping orphans: nothing of the run survives, and
nothing that is not the run's (the daemon's other children, their exit statuses) is touched."""

from __future__ import annotations

import asyncio
import json
import subprocess
import sys
import textwrap
import time
from pathlib import Path
from typing import Any

import psutil
import pytest

from corral.sandbox.processes import Child, ProcessControl


def test_kill_tree_does_not_trust_the_watchdogs_shared_scan(tmp_path: Path) -> None:
    """Checked and correct: a descendant born after the watchdog's (cached) scan, in a session of
    its own (out of killpg's reach), is still killed: kill_tree scans afresh."""
    pidfile = tmp_path / "grandchild.pid"

    async def main() -> int:
        control = ProcessControl()
        script = f"sleep 0.3; setsid sleep 60 & echo $! > {pidfile}; sleep 60"
        process = await asyncio.create_subprocess_exec("sh", "-c", script, start_new_session=True)
        child = Child(process, wire=None, cgroup=None)  # type: ignore[arg-type]  # only its processes matter here
        control.run_processes(child, max_age=60.0)  # the watchdog's scan, cached for a long time
        while not pidfile.exists() or not pidfile.read_text().strip():
            await asyncio.sleep(0.02)
        grandchild = int(pidfile.read_text())
        control.kill_tree(child)
        await process.wait()
        return grandchild

    grandchild = asyncio.run(main())
    deadline = time.monotonic() + 2
    while time.monotonic() < deadline:
        try:
            if psutil.Process(grandchild).status() == psutil.STATUS_ZOMBIE:
                break
        except psutil.NoSuchProcess:
            break
        time.sleep(0.02)
    else:
        psutil.Process(grandchild).kill()
        pytest.fail("a descendant born after the cached scan outlived kill_tree")


REAP = textwrap.dedent(
    """
    import json, subprocess, time
    import psutil
    from corral.sandbox.processes import ProcessControl

    control = ProcessControl()
    applied = control.prepare()  # what `corral up` does first
    # What a plugin does in the daemon, e.g. an alert sink on corral_run_finished:
    running = subprocess.Popen(["sleep", "30"])
    finished = subprocess.Popen(["sh", "-c", "exit 3"])
    while psutil.Process(finished.pid).status() != psutil.STATUS_ZOMBIE:
        time.sleep(0.01)
    killed = control.reap_orphans()  # the daemon's housekeeping, every second
    time.sleep(0.3)
    result = {
        "applied": applied,
        "killed": killed,
        "running_alive": running.poll() is None,
        "finished_status": finished.wait(),
    }
    running.kill()
    control.close()
    print(json.dumps(result))
    """
)


@pytest.fixture(scope="module")
def reaped() -> dict[str, Any]:
    # In a process of its own: prepare() makes the caller a subreaper for good.
    out = subprocess.run([sys.executable, "-c", REAP], capture_output=True, text=True, timeout=60, check=True)
    result: dict[str, Any] = json.loads(out.stdout)
    if "subreaper" not in result["applied"]:
        pytest.skip("not a subreaper here: reap_orphans does nothing")
    return result


def test_reap_orphans_leaves_the_daemons_other_children_alone(reaped: dict[str, Any]) -> None:
    assert reaped["running_alive"], f"reap_orphans killed {reaped['killed']}"


def test_reap_orphans_does_not_steal_another_waiters_exit_status(reaped: dict[str, Any]) -> None:
    assert reaped["finished_status"] == 3
