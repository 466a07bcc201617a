"""Stopping, starting and restarting an agent, as supervisorctl users expect, on top of pauses.

- ``corral stop AGENT``: the agent's triggers stop firing (a durable pause marked as a stop,
  :mod:`corral.schedule.pauses`), and its unfinished runs (running, queued, interrupted, on
  hold) end ``cancelled``, journals kept; a running one has its process tree killed. It
  stays stopped across daemon restarts, until ``corral start AGENT``.
- ``corral start AGENT``: lifts the stop (or a pause, or a no-progress slow-down); its
  triggers fire again. It starts no run by itself: ``corral run`` does.
- ``corral restart AGENT``: cancels its unfinished runs, lifts any stop or pause, and starts
  a new run now, with the input of the run it cancelled (else the agent's configured one).

The daemon serves them over the control socket (``stop``, ``start``, ``restart``), giving
its run queue and scheduler; with no daemon the CLI acts on the store through the same
engine (no queue: the next ``corral up`` reads the store).
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from typing import Any, Protocol

STOPPED = "stopped with `corral stop`"
"""A stop's reason when the operator gives none."""
RESTARTED = "cancelled by `corral restart`"


class AgentControl(Protocol):
    """What the lifecycle needs of the engine (:class:`corral.run.engine.Engine`)."""

    pauses: Any
    records: Any
    writer: Any
    log: Any

    def paused(self, agent: str) -> dict[str, Any] | None: ...

    async def resume_agent(self, agent: str) -> None: ...

    async def cancel(self, run_id: str, reason: str = ..., by: str | None = ...) -> dict[str, Any]: ...


class Lifecycle:
    """Stop, start and restart agents; ``dequeue`` takes a waiting run out of the daemon's
    queue before it is cancelled, ``unslow`` lifts a no-progress slow-down (both the
    daemon's; without a daemon, nothing to do). ``by`` is who asked ("cli", or the console
    session or link that did): it goes into the stop's reason, the cancelled runs' records
    and the daemon log's lines."""

    def __init__(
        self,
        engine: AgentControl,
        dequeue: Callable[[str], object] = lambda run_id: None,
        unslow: Callable[[str], Awaitable[bool]] | None = None,
        by: str = "cli",
    ) -> None:
        self.engine = engine
        self._dequeue = dequeue
        self._unslow = unslow
        self.by = by

    async def stop(self, agent: str, reason: str = STOPPED) -> dict[str, Any]:
        """Stop ``agent``: triggers off until :meth:`start`, its unfinished runs cancelled."""
        if self.by != "cli":
            reason += f" by {self.by}"
        await self.engine.pauses.pause(agent, reason, None, stopped=True)
        self.engine.log.warning("agent stopped", agent=agent, reason=reason, by=self.by)
        cancelled = await self._cancel_unfinished(agent, f"agent stopped: {reason}")
        return {"agent": agent, "pause": self.engine.paused(agent), "cancelled": cancelled}

    async def start(self, agent: str) -> dict[str, Any]:
        """Start ``agent`` again: lift its stop, pause or slow-down. Says what was lifted."""
        was = self.engine.paused(agent)
        await self.engine.resume_agent(agent)
        if was is not None and was.get("stopped"):
            self.engine.log.info("agent started", agent=agent, by=self.by)
        slowed = await self._unslow(agent) if self._unslow is not None else False
        return {
            "agent": agent,
            "was_stopped": bool(was and was.get("stopped")),
            "was_paused": bool(was and not was.get("stopped")),
            "was_slowed": slowed,
        }

    async def restart(self, agent: str, configured_input: Any) -> tuple[dict[str, Any], Any]:
        """Cancel ``agent``'s unfinished runs and lift any stop or pause; returns what
        :meth:`start` says, with the runs cancelled, and the input for the new run: the
        newest cancelled run's, else ``configured_input``."""
        unfinished = await self._unfinished(agent)
        cancelled = await self._cancel_unfinished(agent, RESTARTED, unfinished)
        started = {**await self.start(agent), "cancelled": cancelled}
        return started, unfinished[-1].get("input") if unfinished else configured_input

    async def _unfinished(self, agent: str) -> list[dict[str, Any]]:
        records = self.engine.records
        active = await self.engine.writer.run(records.active_runs)
        return [run for run in active if run["agent"] == agent]

    async def _cancel_unfinished(
        self, agent: str, reason: str, unfinished: list[dict[str, Any]] | None = None
    ) -> list[dict[str, Any]]:
        """Cancel each unfinished run of ``agent``; returns them as they are now (a running
        one is still ending: its processes are being killed)."""
        cancelled = []
        for run in unfinished if unfinished is not None else await self._unfinished(agent):
            self._dequeue(run["id"])  # first, so the queue cannot start it while it is cancelled
            try:
                cancelled.append(await self.engine.cancel(run["id"], reason, self.by))
            except (KeyError, ValueError):  # ended (or pruned) since it was read: nothing to cancel
                continue
        return cancelled
