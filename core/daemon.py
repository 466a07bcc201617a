"""``corral up``: the long-lived daemon around the engine.

It resumes what a crash interrupted, fires interval triggers, serves the control
socket, and stops gracefully on SIGTERM: no new runs, in-flight requests finish and
are journaled within the grace period, then any child still alive is killed and the
daemon exits 0. Foreground only: supervisord (or launchd) keeps it alive.
"""

from __future__ import annotations

import asyncio
import os
import signal
import time
from collections.abc import Awaitable, Callable
from typing import Any

from corral import control
from corral.checks import check_config
from corral.config import AgentConfig
from corral.engine import Engine
from corral.states import FINISHED, RunState

HOUSEKEEPING_INTERVAL = 1.0
PRUNE_INTERVAL = 3600.0


class Daemon:
    """Owns the schedule, the queue, the control socket and the shutdown sequence."""

    def __init__(self, engine: Engine) -> None:
        self.engine = engine
        self.config = engine.config
        self.log = engine.log
        self.stopping = asyncio.Event()
        self.signals = 0
        self._slots = asyncio.Semaphore(self.config.max_concurrent_runs)
        self._agent_locks: dict[str, asyncio.Lock] = {name: asyncio.Lock() for name in self.config.agents}
        self._queued: dict[str, int] = {name: 0 for name in self.config.agents}
        self._tasks: set[asyncio.Task[Any]] = set()
        self._waiters: dict[str, list[asyncio.Future[dict[str, Any]]]] = {}

    # ------------------------------------------------------------------ life cycle

    async def serve(self) -> int:
        loop = asyncio.get_running_loop()
        for sig in (signal.SIGTERM, signal.SIGINT):
            loop.add_signal_handler(sig, self._on_signal, sig)
        applied = self.engine.processes.prepare(self.config.home / "agents")
        server = await control.serve(self.config.socket_path, self._handle)
        self.log.info(
            "daemon started",
            pid=os.getpid(),
            home=str(self.config.home),
            agents=sorted(self.config.agents),
            protections=applied,
            plugins=self.engine.plugins.names(),
            plugin_failures=self.engine.plugins.failures,
        )
        for problem in check_config(self.config, self.engine.plugins):
            self.log.warning("config problem", problem=problem)
        for run_id in await self.engine.recover():
            run = await self.engine.writer.run(lambda txn, r=run_id: self.engine.records.get_run(txn, r))
            self._dispatch(run)
        await self.engine.prune()
        background = [asyncio.create_task(self._housekeeping())]
        background += [
            asyncio.create_task(self._interval(a)) for a in self.config.agents.values() if a.every and a.enabled
        ]
        await self.stopping.wait()
        self.log.info("daemon stopping", grace=self.config.grace_seconds, running=len(self._tasks))
        server.close()
        for task in background:
            task.cancel()
        await self._drain()
        await self.engine.close_models()
        self.config.socket_path.unlink(missing_ok=True)
        self.log.info("daemon stopped")
        return 0

    def _on_signal(self, sig: int) -> None:
        self.signals += 1
        self.log.info("signal received", signal=signal.Signals(sig).name, count=self.signals)
        self.engine.draining = True
        self.stopping.set()
        if self.signals > 1:
            self._kill_children("second signal")

    async def _drain(self) -> None:
        if self._tasks:
            _, pending = await asyncio.wait(self._tasks, timeout=self.config.grace_seconds)
            if pending:
                self._kill_children(f"grace period of {self.config.grace_seconds:g}s over")
                await asyncio.wait(pending, timeout=10)
        self.engine.processes.reap_orphans()

    def _kill_children(self, why: str) -> None:
        self.log.warning("killing agent processes", reason=why)
        self.engine.processes.kill_all()

    async def _housekeeping(self) -> None:
        last_prune = time.monotonic()
        while True:
            await asyncio.sleep(HOUSEKEEPING_INTERVAL)
            for pid in self.engine.processes.reap_orphans():
                self.log.warning("killed a process that outlived its run", pid=pid)
            if time.monotonic() - last_prune > PRUNE_INTERVAL:
                last_prune = time.monotonic()
                await self.engine.prune()
                await self.engine.writer.run(lambda txn: self.engine.store.env.reader_check())

    # ------------------------------------------------------------------ runs

    def busy(self, agent: str) -> bool:
        return self._agent_locks[agent].locked() or self._queued[agent] > 0

    def _dispatch(self, run: dict[str, Any]) -> None:
        self._queued[run["agent"]] = self._queued.get(run["agent"], 0) + 1
        task = asyncio.create_task(self._execute(run))
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    async def _execute(self, run: dict[str, Any]) -> None:
        agent = run["agent"]
        lock = self._agent_locks.setdefault(agent, asyncio.Lock())
        final: dict[str, Any] | None = None
        try:
            async with lock, self._slots:
                self._queued[agent] -= 1
                if self.engine.draining:
                    return
                final = await self.engine.execute(run["id"])
        except Exception as exc:  # one run's bug must not take the daemon down
            self.log.exception("run crashed in the daemon", run_id=run["id"], agent=agent, error=str(exc))
        finally:
            for waiter in self._waiters.pop(run["id"], []):
                if not waiter.done():
                    waiter.set_result(final or {"id": run["id"], "state": "interrupted"})

    async def _interval(self, agent: AgentConfig) -> None:
        assert agent.every is not None
        while True:
            await asyncio.sleep(agent.every)
            if self.engine.draining:
                return
            if self.busy(agent.name):
                self.log.info("trigger skipped: previous run still active", agent=agent.name, trigger="interval")
                continue
            self._dispatch(await self.engine.create_run(agent.name, agent.input, trigger="interval"))

    # ------------------------------------------------------------------ control

    async def _handle(self, request: dict[str, Any], reply: Callable[[dict[str, Any]], Awaitable[None]]) -> None:
        op = request["op"]
        if op == "ping":
            await reply({"ok": True, "pid": os.getpid(), "running": len(self._tasks)})
        elif op == "run":
            await self._handle_run(request, reply)
        elif op == "release":
            try:
                run = await self.engine.release(
                    str(request.get("run")), bool(request.get("happened")), request.get("value")
                )
            except (KeyError, ValueError) as exc:
                await reply({"ok": False, "error": str(exc).strip("'")})
                return
            self._dispatch(run)
            await reply({"ok": True, "run": run})
        else:
            await reply({"ok": False, "error": f"unknown op {op!r}"})

    async def _handle_run(self, request: dict[str, Any], reply: Callable[[dict[str, Any]], Awaitable[None]]) -> None:
        agent = request.get("agent")
        if agent not in self.config.agents:
            known = ", ".join(sorted(self.config.agents)) or "none"
            await reply({"ok": False, "error": f"no agent named {agent!r} in {self.config.path}; agents: {known}"})
            return
        if self.engine.draining:
            await reply({"ok": False, "error": "the daemon is stopping; try again when it is back"})
            return
        payload = request.get("input", self.config.agents[agent].input)
        run = await self.engine.create_run(agent, payload, trigger="cli")
        waiter: asyncio.Future[dict[str, Any]] = asyncio.get_running_loop().create_future()
        if request.get("wait"):
            self._waiters.setdefault(run["id"], []).append(waiter)
        self._dispatch(run)
        await reply({"ok": True, "run": run})
        if request.get("wait"):
            final = await waiter
            await reply({"ok": True, "run": final, "final": RunState(final["state"]) in FINISHED})
