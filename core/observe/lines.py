"""The log lines that follow the event stream: each run's state changes in the daemon's
log, each step and each approval in the agent's log, each breaker change in the daemon's.

They are written from the events (:mod:`corral.observe.events`), so whatever path made a
change, its line is there, once, in order, and off the step path.
"""

from __future__ import annotations

import time
from typing import Any

from corral.observe.events import Event
from corral.observe.logs import LogFiles
from corral.states import EventKind


def duration_ms(entry: dict[str, Any]) -> float:
    """How long a journaled step took, start to outcome."""
    return round(((entry.get("ended") or time.time()) - entry.get("started", time.time())) * 1000, 3)


class RunLines:
    """Subscribed to the event stream by the composition root."""

    def __init__(self, logs: LogFiles) -> None:
        self._logs = logs
        self._log = logs.logger(None)
        self._runs: dict[str, Any] = {}  # run id -> its agent logger, while it runs (one per run, not per step)

    def __call__(self, event: Event) -> None:
        kind, run = event.kind, event.run
        if kind is EventKind.RUN_CHANGED and event.old is not None:
            self._log.info("run state", run_id=run["id"], agent=run["agent"], old=event.old.value, new=run["state"])
            if event.ended:
                self._runs.pop(run["id"], None)
        elif kind is EventKind.STEP_DONE:
            self._step(event)
        elif kind is EventKind.BREAKER_CHANGED:
            data = event.data
            getattr(self._log, "warning" if data["new"] == "open" else "info")(
                "model circuit breaker " + data["new"],
                model=data["model"],
                was=data["old"],
                reason=data["reason"],
                retry_in_s=data["retry_in"],
            )

    def _step(self, event: Event) -> None:
        run, entry = event.run, event.step
        log = self._runs.get(run["id"])
        if log is None:
            log = self._runs[run["id"]] = self._logs.logger(
                run["agent"], run_id=run["id"], trace_id=run.get("trace_id")
            )
        error = entry.get("error") if not entry.get("ok") else None
        log.info(
            "step",
            seq=entry["seq"],
            kind=entry["kind"],
            name=entry["name"],
            ok=entry.get("ok"),
            replayed=event.replayed,
            duration_ms=duration_ms(entry),
            **({"error": error.get("message")} if error else {}),
        )
