"""The run queue: queued runs wait here until the limits let them start.

The queue is durable because a queued run is: it is a run record in state ``queued`` in
the store (and in its ``active`` index) before it is added here, so after a crash the
daemon rebuilds this from the store and loses nothing. What lives only in memory is the
order of start-up: oldest run first, among the agents below their ``max_running`` and
not paused, while fewer than ``[corral] max_concurrent_runs`` runs execute in all. A
slow run holds only its own agent's slots, never another agent's trigger.
"""

from __future__ import annotations

import asyncio
from collections import deque
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

from corral.config.schedule import SchedulePolicy

if TYPE_CHECKING:
    from corral.schedule.runs import Runs

Done = Callable[[dict[str, Any], "dict[str, Any] | None"], None]
Active = Callable[[int], None]


class RunQueue:
    """Waiting runs per agent, the running ones, and the rule that starts the next."""

    def __init__(self, runs: Runs, limit: int, on_done: Done, on_active: Active | None = None) -> None:
        self.runs = runs
        self.limit = limit
        self.on_done = on_done
        self.on_active = on_active
        """Told how many runs execute whenever that number changes (keeping a Mac awake)."""
        self.waiting: dict[str, deque[dict[str, Any]]] = {}
        self.running: dict[str, dict[str, asyncio.Task[None]]] = {}

    def policy(self, agent: str) -> SchedulePolicy:
        config = self.runs.config.agents.get(agent)
        return config.schedule if config is not None else SchedulePolicy()

    def depth(self, agent: str) -> int:
        """Runs of ``agent`` waiting to start."""
        return len(self.waiting.get(agent, ()))

    def active(self, agent: str) -> int:
        """Runs of ``agent`` executing now."""
        return len(self.running.get(agent, ()))

    def running_ids(self, agent: str) -> list[str]:
        """Ids of ``agent``'s executing runs, oldest first."""
        return sorted(self.running.get(agent, ()))

    def tasks(self) -> list[asyncio.Task[None]]:
        return [task for runs in self.running.values() for task in runs.values()]

    def add(self, run: dict[str, Any]) -> None:
        """Queue a run already stored as queued (or interrupted, to resume), and start what may start.

        A run already waiting or executing is not added twice (a run the control socket
        queued while start-up's recovery found it in the store).
        """
        agent, run_id = run["agent"], run["id"]
        if run_id in self.running.get(agent, {}) or any(w["id"] == run_id for w in self.waiting.get(agent, ())):
            return
        self.waiting.setdefault(agent, deque()).append(run)
        self.pump()

    def remove(self, run_id: str) -> dict[str, Any] | None:
        """Take a waiting run out (it is being cancelled); None if it is not waiting."""
        for runs in self.waiting.values():
            for run in runs:
                if run["id"] == run_id:
                    runs.remove(run)
                    return run
        return None

    def drop_waiting(self) -> list[dict[str, Any]]:
        """Every waiting run, removed (the daemon is stopping; they stay queued in the store)."""
        runs = [run for waiting in self.waiting.values() for run in waiting]
        self.waiting.clear()
        return runs

    def pump(self) -> None:
        """Start the oldest startable runs while the global limit allows."""
        while not self.runs.draining and sum(map(len, self.running.values())) < self.limit:
            best: dict[str, Any] | None = None
            for agent, runs in self.waiting.items():
                if not runs or self.active(agent) >= self.policy(agent).max_running:
                    continue
                if agent in self.runs.config.agents and self.runs.paused(agent) is not None:
                    continue
                if best is None or runs[0]["id"] < best["id"]:
                    best = runs[0]
            if best is None:
                return
            self.waiting[best["agent"]].popleft()
            task = asyncio.create_task(self._execute(best))
            self.running.setdefault(best["agent"], {})[best["id"]] = task
            self._active_changed()

    def _active_changed(self) -> None:
        if self.on_active is not None:
            self.on_active(sum(map(len, self.running.values())))

    async def _execute(self, run: dict[str, Any]) -> None:
        final: dict[str, Any] | None = None
        try:
            final = await self.runs.execute(run["id"])
        except Exception as exc:  # the engine ends a run it fails on; this is when even that failed
            self.runs.log.exception(
                "run could not be ended after the daemon failed on it",
                run_id=run["id"],
                agent=run["agent"],
                error=str(exc),
            )
        finally:
            self.running.get(run["agent"], {}).pop(run["id"], None)
            self._active_changed()
            try:
                self.on_done(run, final)
            finally:
                self.pump()
