"""The log lines that follow the event stream: each run's state changes in the daemon's
log, each step and each run's end in the agent's log, each breaker change in the daemon's.

They are written from the events (:mod:`corral.observe.events`), so whatever path made a
change, its line is there, once, in order, and off the step path. The level says who must
look: a run failing or abandoned is an error, one on hold or interrupted a warning, one
ending otherwise info, and a run queued or started debug (in the file, not on ``corral
up``'s terminal).

:class:`InOrder` puts the other lines of a run in the agent's log (``ctx.log``, its
output, corral's own lines about it) in their place among these: a line logged after the
agent's step N (its ``seq``) is written after step N's line, though that line is written
later, off the step path.
"""

from __future__ import annotations

import threading
import time
from collections import deque
from collections.abc import Callable
from typing import Any

from corral.breaker import describe
from corral.observe.events import Event
from corral.observe.failures import headline, where
from corral.observe.logs import LogFiles
from corral.states import EventKind, RunState

LEVELS = {
    RunState.FAILED: "error",
    RunState.ABANDONED: "error",
    RunState.ON_HOLD: "warning",
    RunState.INTERRUPTED: "warning",
    RunState.SUCCEEDED: "info",
    RunState.CANCELLED: "info",
}
"""The level of a run's ``run state`` and ``run ended`` lines by the state it enters; others are debug."""


def duration_ms(entry: dict[str, Any]) -> float:
    """How long a journaled step took, start to outcome."""
    return round(((entry.get("ended") or time.time()) - entry.get("started", time.time())) * 1000, 3)


def ending(run: dict[str, Any]) -> dict[str, Any]:
    """What a line about a run's new state says of why: the failure (``TYPE: message``) and
    where in the agent's code, or why it is held."""
    fields: dict[str, Any] = {}
    error = run.get("error")
    if error and run["state"] != RunState.SUCCEEDED.value:
        fields["error"] = headline(error)
        if (at := where(error)) is not None:
            fields["where"] = at
    if run.get("hold_reason") and run["state"] == RunState.ON_HOLD.value:
        fields["reason"] = run["hold_reason"]
    return fields


class InOrder:
    """Where a run's lines in its agent's log are handed over to be written
    (:meth:`LogFiles.hand_over`): in the order they were logged, and each one that names a
    step (``seq``: the step the agent last asked for) only after that step's own line, which
    :class:`RunLines` writes when the step's event is delivered, on the background thread.

    A line is queued at once, on the thread that logs it, so a step delivered later finds
    the lines logged before it; the background thread writes what is due. A line waits at
    most :data:`HOLD` seconds for its step's line (one logged while its step was still
    running, from a thread of the agent's, would otherwise wait for the step's end), and
    never past its run's end.
    """

    HOLD = 1.0

    def __init__(self, later: Callable[..., None]) -> None:
        self._later = later
        self._lock = threading.Lock()
        self._waiting: dict[str, deque[tuple[int | None, float, Callable[[], None]]]] = {}
        self._stepped: dict[str, int] = {}  # run id -> the last step whose line is written
        self._timers: dict[str, threading.Timer] = {}  # run id -> when its oldest held line is due

    def __call__(self, run: str, seq: int | None, write: Callable[[], None]) -> None:
        with self._lock:
            self._waiting.setdefault(run, deque()).append((seq, time.monotonic(), write))
        try:
            self._later(self._write, run)
        except RuntimeError:  # the background thread has stopped (the process is closing)
            self._write(run, everything=True)

    def before_step(self, run: str, seq: int) -> None:
        """Step ``seq``'s line is next: write the lines logged before the agent asked for it."""
        self._write(run, before=seq)

    def after_step(self, run: str, seq: int) -> None:
        """Step ``seq``'s line is written: so are the lines that waited for it."""
        with self._lock:
            self._stepped[run] = max(seq, self._stepped.get(run, 0))
        self._write(run)

    def ended(self, run: str) -> None:
        """The run ended (or its attempt did): everything it logged is written now."""
        self._write(run, everything=True)
        with self._lock:
            self._stepped.pop(run, None)

    def close(self) -> None:
        """Write whatever still waits."""
        with self._lock:
            runs = list(self._waiting)
        for run in runs:
            self._write(run, everything=True)

    def _write(self, run: str, *, before: int = 0, everything: bool = False) -> None:
        with self._lock:  # held while writing, so two threads never write one run's lines out of order
            waiting = self._waiting.get(run)
            if not waiting:
                return
            stepped, stale = self._stepped.get(run, 0), time.monotonic() - self.HOLD
            while waiting:
                seq, logged, write = waiting[0]
                if not (everything or seq is None or seq <= stepped or seq < before or logged < stale):
                    break
                waiting.popleft()
                write()
            if not waiting:
                del self._waiting[run]
            elif run not in self._timers:  # nothing else may come to write it: come back when its hold is over
                timer = threading.Timer(
                    max(0.0, waiting[0][1] + self.HOLD - time.monotonic()) + 0.01, self._due, (run,)
                )
                timer.daemon = True
                self._timers[run] = timer
                timer.start()

    def _due(self, run: str) -> None:
        """A held line's time is up: write it, on the background thread like the others."""
        with self._lock:
            self._timers.pop(run, None)
        try:
            self._later(self._write, run)
        except RuntimeError:  # the background thread has stopped (the process is closing)
            self._write(run, everything=True)


class RunLines:
    """Subscribed to the event stream by the composition root."""

    def __init__(self, logs: LogFiles, order: InOrder) -> None:
        self._logs = logs
        self._order = order
        self._log = logs.logger(None)
        self._runs: dict[str, Any] = {}  # run id -> its agent logger, while it runs (one per run, not per step)

    def __call__(self, event: Event) -> None:
        kind, run = event.kind, event.run
        if kind is EventKind.RUN_CHANGED and event.old is not None:
            state = RunState(run["state"])
            level = LEVELS.get(state, "debug")
            why = ending(run)
            getattr(self._log, level)(
                "run state", run_id=run["id"], agent=run["agent"], old=event.old.value, new=run["state"], **why
            )
            if event.ended:
                self._order.ended(run["id"])
                getattr(self._agent_log(run), level)("run ended", state=run["state"], **why)
                self._runs.pop(run["id"], None)
        elif kind is EventKind.STEP_DONE:
            self._step(event)
        elif kind is EventKind.BREAKER_CHANGED:
            data = event.data
            downstream = data.get("downstream") or data["model"]
            owner, name = describe(downstream)
            who = {"model": name} if owner == "model" else {"downstream": downstream}
            getattr(self._log, "warning" if data["new"] == "open" else "info")(
                f"{owner} circuit breaker " + data["new"],
                **who,
                was=data["old"],
                reason=data["reason"],
                retry_in_s=data["retry_in"],
            )

    def _agent_log(self, run: dict[str, Any]) -> Any:
        log = self._runs.get(run["id"])
        if log is None:
            log = self._runs[run["id"]] = self._logs.logger(
                run["agent"], direct=True, run_id=run["id"], trace_id=run.get("trace_id")
            )
        return log

    def _step(self, event: Event) -> None:
        run, entry = event.run, event.step
        error = entry.get("error") if not entry.get("ok") else None
        self._order.before_step(run["id"], entry["seq"])
        self._agent_log(run).info(
            "step",
            seq=entry["seq"],
            kind=entry["kind"],
            name=entry["name"],
            ok=entry.get("ok"),
            replayed=event.replayed,
            duration_ms=duration_ms(entry),
            **({"error": error.get("message")} if error else {}),
            **_model_fields(entry),
        )
        self._order.after_step(run["id"], entry["seq"])


def _model_fields(entry: dict[str, Any]) -> dict[str, Any]:
    """A model step's line also names the model, its tokens and cost (None: unpriced)."""
    if entry.get("kind") != "model" or not isinstance(entry.get("usage"), dict):
        return {}
    usage = entry["usage"]
    return {
        "model": entry.get("model"),
        "input_tokens": usage.get("input_tokens", 0),
        "output_tokens": usage.get("output_tokens", 0),
        "cost_usd": entry.get("cost_usd"),
    }
