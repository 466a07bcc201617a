"""The one stream of what happens to runs: durable, ordered, delivered off the step path.

An event is posted inside the store transaction that makes the change it reports
(:meth:`corral.store.Records.post_event`): a run's state changed (by the one function that
changes it, :func:`corral.engine.change_state`), a step finished (by the one place that
writes a journal entry done, :meth:`corral.store.Records.put_step`), or a step was answered
from the journal on resume. So an event exists exactly when its change was committed, and
a daemon killed before delivering it delivers it at its next start.

:class:`EventStream` delivers them in order, on the daemon's background thread, to its
subscribers: the pluggy hooks (``corral_step_done``, ``corral_run_finished``) and corral's
own observers. Delivery is at least once: an event delivered just before a crash, whose
removal was not yet committed, is delivered again after the restart.
"""

from __future__ import annotations

import functools
import threading
from collections.abc import Callable
from concurrent.futures import Future
from dataclasses import dataclass, field
from typing import Any

from corral.states import FINISHED, EventKind, RunState
from corral.store import Records, Store, Writer

BATCH = 256
"""Events read and delivered per round."""


ENDED = FINISHED | {RunState.ON_HOLD, RunState.INTERRUPTED}
"""States ``corral_run_finished`` reports: a run ended, or stopped for a human or a resume."""


@dataclass(frozen=True)
class Event:
    """One delivered event, its records read back from the store."""

    kind: EventKind
    run: dict[str, Any]
    old: RunState | None = None
    step: dict[str, Any] = field(default_factory=dict)
    replayed: bool = False

    @property
    def ended(self) -> bool:
        """Whether this is a run reaching a state ``corral_run_finished`` reports."""
        return self.kind is EventKind.RUN_CHANGED and RunState(self.run["state"]) in ENDED


Subscriber = Callable[[Event], None]


class EventStream:
    """Reads committed events and hands them to subscribers, in order, once each."""

    def __init__(self, store: Store, records: Records, writer: Writer, later: Callable[..., None], log: Any) -> None:
        self._store = store
        self._records = records
        self._writer = writer
        self._later = later
        self._log = log
        self._subscribers: list[tuple[str, Subscriber]] = []
        self._delivered = 0  # the last event handed out; its removal may still be on its way
        self._lock = threading.Lock()
        self._due = False
        self._delivering = threading.Lock()  # the background thread, or the closing one

    def subscribe(self, name: str, subscriber: Subscriber) -> None:
        """Call ``subscriber(event)`` for every event from now on; ``name`` is for the log."""
        self._subscribers.append((name, subscriber))

    def committed(self) -> None:
        """A store round was made durable (the writer's ``after_commit``): deliver soon if it
        posted events. Cheap, on the writer thread."""
        if not self._records.events_posted:
            return
        self._records.events_posted = False
        self.wake()

    def wake(self) -> None:
        """Deliver what is pending, soon, on the background thread (at start-up: what a
        previous daemon left undelivered)."""
        with self._lock:
            if self._due:
                return
            self._due = True
        self._later(self.deliver)

    def deliver(self) -> Future[None] | None:
        """Hand every committed, undelivered event to each subscriber, in order; returns the
        pending removal of those delivered (None if there were none)."""
        with self._lock:
            self._due = False
        removed: Future[None] | None = None
        with self._delivering:
            while True:
                with self._store.read() as txn:
                    rows = self._records.events_after(txn, self._delivered, BATCH)
                    events = [(seq, self._read(txn, row)) for seq, row in rows]
                if not events:
                    return removed
                for seq, event in events:
                    if event is not None:
                        self._hand_out(event)
                    self._delivered = seq
                removed = self._writer.submit(functools.partial(self._records.delete_events, upto=self._delivered))
                if len(rows) < BATCH:
                    return removed

    def _read(self, txn: Any, row: dict[str, Any]) -> Event | None:
        """The event with its records; None when the run is gone (pruned since)."""
        kind = EventKind(row["kind"])
        if kind is EventKind.RUN_CHANGED:
            return Event(kind, row["run"], old=RunState(row["old"]))
        run = self._records.get_run(txn, row["run"])
        step = self._records.get_step(txn, row["run"], row["seq"])
        if run is None or step is None:
            return None
        return Event(kind, run, step=step, replayed=row["replayed"])

    def _hand_out(self, event: Event) -> None:
        for name, subscriber in self._subscribers:
            try:
                subscriber(event)
            except Exception as exc:  # noqa: BLE001 - one observer's failure must not starve the others
                self._log.error("event observer failed", observer=name, error=f"{type(exc).__name__}: {exc}")
