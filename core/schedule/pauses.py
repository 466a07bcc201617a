"""Paused agents: durable in the store's ``pauses`` database, mirrored in memory.

A pause is ``{"reason", "since", "until"}`` keyed by agent name; ``until`` is when it
lifts by itself (``None``: only ``corral resume`` lifts it). A stop (``corral stop AGENT``,
:mod:`corral.daemon.lifecycle`) is a pause with ``"stopped": true`` and no ``until``: the
agent's triggers are off in the same way, until ``corral start`` (or ``resume``) lifts it. The in-memory copy makes
:meth:`Pauses.get` answer without waiting for the store writer, so the daemon's
scheduler, the crash-loop rule and the budget checks can ask from any thread.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from typing import Any

from corral.schedule.clock import Clock
from corral.store import Store, Writer
from corral.store.schema import pack, unpack

Listener = Callable[[str, "dict[str, Any] | None"], None]


class Pauses:
    """Which agents are paused, and why; told to listeners as it changes."""

    def __init__(self, store: Store, writer: Writer, clock: Clock) -> None:
        self._db = store.dbs["pauses"]
        self._writer = writer
        self.clock = clock
        """Whose ``now()`` says whether an ``until`` has passed (the daemon's clock)."""
        self._lock = threading.Lock()
        self._listeners: list[Listener] = []
        with store.read() as txn:
            self._pauses: dict[str, dict[str, Any]] = {
                bytes(key).decode(): unpack(bytes(raw)) for key, raw in txn.cursor(db=self._db)
            }

    def listen(self, listener: Listener) -> None:
        """Call ``listener(agent, pause or None)`` on the event loop after each change."""
        self._listeners.append(listener)

    def get(self, agent: str) -> dict[str, Any] | None:
        """The agent's pause, or None if it is not paused (or its ``until`` has passed)."""
        with self._lock:
            pause = self._pauses.get(agent)
        if pause is None or (pause["until"] is not None and pause["until"] <= self.clock.now()):
            return None
        return dict(pause)

    def all(self) -> dict[str, dict[str, Any]]:
        """Every pause still in force, by agent."""
        with self._lock:
            agents = list(self._pauses)
        return {agent: pause for agent in agents if (pause := self.get(agent)) is not None}

    def next_expiry(self) -> float | None:
        """The earliest ``until`` among the pauses on record: when the scheduler must look again."""
        with self._lock:
            times = [p["until"] for p in self._pauses.values() if p["until"] is not None]
        return min(times, default=None)

    async def pause(
        self, agent: str, reason: str, until: float | None = None, *, stopped: bool = False
    ) -> dict[str, Any]:
        """Record the pause durably (``stopped``: as a stop); pausing a paused agent replaces
        its reason, its ``until`` and whether it is a stop."""
        pause, job = self._pausing(agent, reason, until, stopped)
        await self._writer.run(job)
        return self._paused(agent, pause)

    def pause_now(self, agent: str, reason: str, until: float | None = None) -> dict[str, Any]:
        """:meth:`pause` from a thread with no event loop to run it on (the alert rules while
        no daemon loop runs): blocks until the pause is durable."""
        pause, job = self._pausing(agent, reason, until)
        self._writer.call(job)
        return self._paused(agent, pause)

    def _pausing(
        self, agent: str, reason: str, until: float | None, stopped: bool = False
    ) -> tuple[dict[str, Any], Callable[[Any], None]]:
        if not isinstance(reason, str) or not reason.strip():
            raise ValueError("a pause needs a reason (who paused the agent and why)")
        if until is not None and until <= self.clock.now():
            shown = time.strftime("%Y-%m-%d %H:%M:%S %Z", time.localtime(until))
            raise ValueError(f"a pause's end ({shown}) must be in the future")
        pause: dict[str, Any] = {"reason": reason, "since": self.clock.now(), "until": until}
        if stopped:
            pause["stopped"] = True
        db = self._db
        return pause, lambda txn: txn.put(agent.encode(), pack(pause), db=db)

    def _paused(self, agent: str, pause: dict[str, Any]) -> dict[str, Any]:
        with self._lock:
            self._pauses[agent] = pause
        self._tell(agent, dict(pause))
        return dict(pause)

    async def resume(self, agent: str) -> dict[str, Any] | None:
        """Lift the pause; returns the pause that was lifted (None if there was none)."""
        db = self._db
        await self._writer.run(lambda txn: txn.delete(agent.encode(), db=db))
        with self._lock:
            lifted = self._pauses.pop(agent, None)
        if lifted is not None:
            self._tell(agent, None)
        return lifted

    async def expire(self) -> list[str]:
        """Remove the pauses whose ``until`` has passed; returns those agents."""
        now = self.clock.now()
        with self._lock:
            due = [a for a, p in self._pauses.items() if p["until"] is not None and p["until"] <= now]
        for agent in due:
            await self.resume(agent)
        return due

    def _tell(self, agent: str, pause: dict[str, Any] | None) -> None:
        for listener in self._listeners:
            listener(agent, pause)


def read_pauses(store: Store, txn: Any) -> dict[str, dict[str, Any]]:
    """Every pause on record, read-only (for ``corral status`` with or without a daemon)."""
    return {bytes(key).decode(): unpack(bytes(raw)) for key, raw in txn.cursor(db=store.dbs["pauses"])}
