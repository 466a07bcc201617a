"""The slow, idempotent, counted tool that crash tests drive, and the checks on its effects.

``record(n)`` logs every execution to ``executions.txt`` and writes its effect to
``effects.txt`` once per idempotency key, so a test can tell "ran twice" from "took
effect twice".
"""

from __future__ import annotations

import time
from collections import Counter
from pathlib import Path

import psutil

from corral.testing import CorralProject

PLUGIN = '''
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
"""An agent making 20 journaled calls of about 0.15 s each; its result is sum(range(20))."""


def install(project: CorralProject, *agents: str, **table: object) -> None:
    """Add the recorder plugin and one TWENTY agent per name."""
    plugin = project.root / "recorder.py"
    plugin.write_text(PLUGIN)
    project.corral["plugins"] = [str(plugin)]
    for name in agents:
        project.agent(name, TWENTY, tools=["record"], **table)


def wait_lines(path: Path, n: int, timeout: float = 30.0) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if path.exists() and len(path.read_text().splitlines()) >= n:
            return
        time.sleep(0.02)
    raise AssertionError(f"{path} never reached {n} lines")


def launchers_under(path: Path) -> list[psutil.Process]:
    """Live agent processes (the launchers themselves, not the bubblewrap processes around
    them) whose working directory is ``path`` or below it."""
    found = []
    for proc in psutil.process_iter(["cwd", "cmdline", "status", "name"]):
        try:
            if (
                proc.info["status"] != psutil.STATUS_ZOMBIE
                and proc.info["name"] != "bwrap"
                and str(proc.info["cwd"] or "").startswith(str(path))
                and "corral.sandbox.launcher" in " ".join(proc.info["cmdline"] or [])
            ):
                found.append(proc)
        except psutil.Error:
            continue
    return found


def assert_effects_once(workdir: Path) -> dict[tuple[str, ...], int]:
    """Every effect exactly once; at most one call (the one in flight) executed twice, same key."""
    effects = [line.split() for line in (workdir / "effects.txt").read_text().splitlines()]
    assert sorted(int(n) for n, _ in effects) == list(range(20)), "every effect exactly once"
    executions = Counter(tuple(line.split()) for line in (workdir / "executions.txt").read_text().splitlines())
    repeated = {call: count for call, count in executions.items() if count > 1}
    assert len(repeated) <= 1 and all(c == 2 for c in repeated.values()), (
        f"only the call in flight may run again: {repeated}"
    )
    return repeated


def assert_journal_done(project: CorralProject, run_id: str) -> list[dict]:
    """Seqs 1..20 without gaps or duplicates, all done, each with its value."""
    steps = project.cli_json("trace", run_id)["steps"]
    assert [s["seq"] for s in steps] == list(range(1, 21)), "journal has gaps or duplicates"
    assert all(s["status"] == "done" for s in steps), steps
    assert [s["value"] for s in steps] == list(range(20))
    return steps
