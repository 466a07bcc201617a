"""An in-process daemon on a real store, with a clock the test moves by hand.

``Rig`` writes a config and agents under ``tmp_path``; ``rig.drive(scenario)`` opens the
home like ``corral up`` does, serves a real :class:`corral.daemon.root.Daemon` (control socket,
queue, scheduler, real agent processes) on a :class:`ManualClock`, runs
``await scenario(daemon, clock)`` and stops the daemon with SIGTERM's sequence.
"""

from __future__ import annotations

import asyncio
import datetime as dt
import json
import textwrap
import time
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any, TypeVar

from corral.config import load_config
from corral.daemon.host import host
from corral.daemon.root import Daemon
from corral.schedule.clock import ManualClock
from corral.states import FINISHED, RunState
from corral.testing import _toml_value

T = TypeVar("T")
T0 = dt.datetime(2027, 1, 4, 6, 59, 0, tzinfo=dt.UTC).timestamp()
"""A Monday, one minute before 07:00 UTC: where every manual clock starts unless told."""

QUICK = "def run(ctx):\n    return 'done'\n"
GATED = """
import os, time

def run(ctx):
    open("started", "a").write("x\\n")
    while not os.path.exists("go"):
        time.sleep(0.02)
    return "released"
"""
"""Runs until the test creates ``go`` in the agent's workdir."""


class Rig:
    """A corral home with a config file the test edits, driven in-process."""

    def __init__(self, root: Path) -> None:
        self.root = root
        self.home = root / "home"
        self.code = root / "agents"
        self.code.mkdir(parents=True, exist_ok=True)
        self.config_path = root / "corral.toml"
        self.corral: dict[str, Any] = {"home": str(self.home), "grace_seconds": 5}
        self.tables: dict[str, Any] = {"console": {"enabled": False}}  # no port taken by a test daemon
        self.agents: dict[str, dict[str, Any]] = {}

    def agent(self, name: str, source: str = QUICK, **table: Any) -> None:
        (self.code / f"{name}.py").write_text(textwrap.dedent(source))
        self.agents[name] = {"code": "agents", "entry": f"{name}:run", **table}

    def write(self, text: str | None = None) -> None:
        if text is None:
            lines = ["[corral]"] + [f"{k} = {_toml_value(v)}" for k, v in self.corral.items()]
            for table, values in self.tables.items():
                lines += ["", f"[{table}]"] + [f"{k} = {_toml_value(v)}" for k, v in values.items()]
            for name, values in self.agents.items():
                lines += ["", f"[agents.{name}]"] + [f"{k} = {_toml_value(v)}" for k, v in values.items()]
            text = "\n".join(lines) + "\n"
        self.config_path.write_text(text)

    def workdir(self, agent: str) -> Path:
        return self.home / "agents" / agent

    def release(self, agent: str) -> None:
        self.workdir(agent).mkdir(parents=True, exist_ok=True)
        (self.workdir(agent) / "go").write_text("go")

    def drive(
        self,
        scenario: Callable[[Daemon, ManualClock], Awaitable[T]],
        start: float = T0,
        environ: dict[str, str] | None = None,
        stepped: float = 0.0,
    ) -> T:
        """``start`` is where the clock starts as time passes (one boot for every drive of a
        rig); ``stepped`` sets the wall clock that far off before the daemon starts."""
        self.write()
        config = load_config(self.config_path, environ or {})
        with host(config, echo=None) as composed:
            engine = composed.engine
            engine.environ.update(environ or {})
            engine.environ.pop("CORRAL_HOME", None)  # as in load_config above: the home is the rig's

            async def main() -> T:
                clock = ManualClock(start)
                clock.step(stepped)
                daemon = Daemon(composed, clock)
                serving = asyncio.create_task(daemon.serve())
                await until(lambda: config.socket_path.exists() and daemon.scheduler.wake is not None)
                await until(lambda: all(a in engine.config.agents for a in self.agents) and _applied(daemon))
                try:
                    return await scenario(daemon, clock)
                finally:
                    daemon.engine.draining = True
                    daemon.stopping.set()
                    await serving

            return asyncio.run(main())


def _applied(daemon: Daemon) -> bool:
    wanted = {t.key for a in daemon.config.agents.values() if a.enabled for t in a.triggers}
    return wanted <= set(daemon.scheduler.schedules)


async def until(predicate: Callable[[], bool], timeout: float = 20.0) -> None:
    deadline = time.monotonic() + timeout
    while not predicate():
        if time.monotonic() > deadline:
            raise AssertionError("condition not met in time")
        await asyncio.sleep(0.01)


async def idle(daemon: Daemon, timeout: float = 30.0) -> None:
    """Until nothing runs or waits (and the run-ended chores are done)."""
    await until(
        lambda: not daemon.queue.tasks() and not any(daemon.queue.waiting.values()) and not daemon._chores, timeout
    )


async def tick(daemon: Daemon, clock: ManualClock, seconds: float) -> None:
    """Move the clock, let the scheduler act on it, then let every run end."""
    clock.advance(seconds)
    await asyncio.sleep(0.05)
    await until(lambda: not daemon.scheduler._due(clock.read()))
    await asyncio.sleep(0.05)
    await idle(daemon)


def runs(daemon: Daemon, agent: str | None = None) -> list[dict[str, Any]]:
    """Every run of ``agent`` (or all), oldest first, read from the store."""
    with daemon.engine.store.read() as txn:
        found = daemon.engine.records.list_runs(txn, agent, limit=10_000)
    return list(reversed(found))


def finished(run: dict[str, Any]) -> bool:
    return RunState(run["state"]) in FINISHED


def events(rig: Rig, name: str) -> list[dict[str, Any]]:
    """Lines of the daemon's log with event ``name``."""
    path = rig.home / "logs" / "corral.log"
    lines = [json.loads(line) for line in path.read_text().splitlines() if line.strip()]
    return [line for line in lines if line.get("event") == name]


async def ask(daemon: Daemon, request: dict[str, Any]) -> dict[str, Any]:
    """The daemon's last answer to ``request`` over its real control socket (ControlError if refused)."""
    from corral.daemon import control

    def send() -> dict[str, Any]:
        return list(control.request(daemon.config.socket_path, request))[-1]

    return await asyncio.to_thread(send)
