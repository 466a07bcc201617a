"""The one stream of what happens to runs: durable, ordered, delivered off the step path.

An event is posted inside the store transaction that makes the change it reports
(:meth:`corral.store.Records.post_event`), each kind by one place: a run created
(``Engine.create_run``), its state changed (the one function that changes it,
:func:`corral.run.engine.change_state`), a step finished (the one place that writes a
journal entry done, :meth:`corral.store.Records.put_step`) or was answered from the
journal on resume, an approval requested or decided (:class:`corral.run.approvals.Approvals`),
an alert stored (:class:`corral.alerts.outbox.Outbox`), a breaker changed, a budget
crossed a threshold (:mod:`corral.run.modelcalls`). So an event exists exactly when its
change was committed, and a daemon killed before delivering it delivers it at its next start.

:class:`EventStream` delivers them in order, on the daemon's background thread, to its
subscribers: the pluggy hooks (:mod:`corral.observe.hooks`) and corral's own observers
(logs, alerts, metrics, telemetry), which the composition root subscribes
(:mod:`corral.daemon.host`). Delivery is at least once: an event delivered just before a
crash, whose removal was not yet committed, is delivered again after the restart.
"""

from __future__ import annotations

import asyncio
import functools
import threading
import time
from collections.abc import Callable
from concurrent.futures import Future
from dataclasses import dataclass, field
from typing import Any

from corral.errors import explain
from corral.states import FINISHED, EventKind, RunState
from corral.store import Records, Store, Writer

BATCH = 256
"""Events read and delivered per round."""
SLICE = 0.0002
"""Seconds of background work (``Engine.later``'s calls, a round of event delivery) after
which the background thread gives the GIL back. py-lmdb drops the GIL at every get, put and
commit; a thread running Python in a loop takes it at each of those and the store writer
waits until that thread blocks (or the 5 ms switch interval passes), so a 20 ms batch of
step log lines stalled the step in flight for the whole batch. A short sleep (Linux rounds
it up to ~60 us) every slice bounds that wait (single-agent step p99 2.0 -> ~1.4 ms for
~20 us more CPU a step; docs/benchmarks.md)."""
FORGET_EVERY, FORGET_AFTER = 1.0, 4096
"""Delivered events are removed from the store at most once a second (or once this many
have piled up), so removing them costs the writer a commit now and then, not one per round."""


ENDED = FINISHED | {RunState.ON_HOLD, RunState.INTERRUPTED}
"""States ``corral_run_finished`` reports: a run ended, or stopped for a human or a resume."""


@dataclass(frozen=True)
class Event:
    """One delivered event, its records read back from the store. ``run`` is the run it is
    about ({} for none: a breaker; or a run pruned since), ``data`` what its kind carries
    (:class:`corral.states.EventKind`)."""

    kind: EventKind
    run: dict[str, Any]
    old: RunState | None = None
    step: dict[str, Any] = field(default_factory=dict)
    replayed: bool = False
    data: dict[str, Any] = field(default_factory=dict)
    at: float | None = None
    """When a replayed step was answered from the journal (``time.time()``); None otherwise."""

    @property
    def ended(self) -> bool:
        """Whether this is a run reaching a state ``corral_run_finished`` reports."""
        return self.kind is EventKind.RUN_CHANGED and RunState(self.run["state"]) in ENDED


Subscriber = Callable[[Event], None]

LATER_DELAY = 0.02
"""How long :meth:`Background.later` gathers calls before running them together."""


class Background:
    """The one background thread: work that must happen, in order, but not on the event
    loop or the store writer's step path (event delivery, and what observers do with it).

    A daemon thread, so a plugin's hook that never returns cannot keep the process from
    exiting: :meth:`close` waits a bounded time for it.
    """

    def __init__(self, log: Any) -> None:
        self._log = log
        self._calls: list[tuple[Callable[..., object], tuple[Any, ...]]] = []
        self._lock = threading.Lock()
        self._wake = threading.Event()
        self._closing = False
        self._thread = threading.Thread(target=self._loop, name="corral-background", daemon=True)
        self._thread.start()

    def later(self, func: Callable[..., object], *args: Any) -> None:
        """Run ``func(*args)`` soon on the background thread, after every call handed over
        before it. Calls are gathered for :data:`LATER_DELAY` and run together, so a busy
        daemon wakes that thread a few dozen times a second instead of once per step."""
        with self._lock:
            if self._closing:
                raise RuntimeError("the background thread is closing; no new work is taken")
            self._calls.append((func, args))
        self._wake.set()

    def _loop(self) -> None:
        while True:
            if not self._closing:
                self._wake.wait()
                time.sleep(LATER_DELAY)
            with self._lock:
                calls, self._calls = self._calls, []
                self._wake.clear()
                if not calls and self._closing:
                    return
            yielded = time.perf_counter()
            for func, args in calls:
                yielded = breathe(yielded)
                try:
                    func(*args)
                except BaseException as exc:  # noqa: BLE001 - one failed report must not lose the others
                    self._log.error("background work failed", error=explain(exc))

    async def caught_up(self) -> None:
        """Return once everything handed over before this call has run."""
        loop = asyncio.get_running_loop()
        done: asyncio.Future[None] = loop.create_future()
        self.later(_set_from_thread, loop, done)
        await done

    def close(self, timeout: float) -> bool:
        """Run what was handed over, then stop; False when that took longer than ``timeout``
        (an observer still busy: the thread is left to the process's exit)."""
        with self._lock:
            self._closing = True
        self._wake.set()
        self._thread.join(timeout)
        return not self._thread.is_alive()


def _set_from_thread(loop: asyncio.AbstractEventLoop, future: asyncio.Future[None]) -> None:
    """Resolve ``future`` on its loop, unless the loop is gone (whoever waited gave up)."""
    try:
        loop.call_soon_threadsafe(_set, future)
    except RuntimeError:  # the loop closed meanwhile
        pass


def _set(future: asyncio.Future[None]) -> None:
    if not future.done():
        future.set_result(None)


def breathe(since: float) -> float:
    """Between two pieces of background work: after :data:`SLICE` of it (since
    ``since``, a ``perf_counter`` reading) sleep a moment; returns the new ``since``."""
    if time.perf_counter() - since <= SLICE:
        return since
    time.sleep(SLICE / 20)
    return time.perf_counter()


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
        self._forgotten = 0  # the last event whose removal was asked for
        self._forgot_at = 0.0
        self._timer: threading.Timer | None = None
        self._stopped = False

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

    def stop(self) -> None:
        """No more deliveries on the background thread (the daemon is closing; it delivers
        what is left itself, with :meth:`deliver`)."""
        with self._lock:
            self._stopped = True
            if self._timer is not None:
                self._timer.cancel()

    def wake(self) -> None:
        """Deliver what is pending, soon, on the background thread (at start-up: what a
        previous daemon left undelivered)."""
        with self._lock:
            if self._due or self._stopped:
                return
            self._due = True
        self._later(self.deliver)

    def deliver(self, *, forget: bool = False) -> Future[None] | None:
        """Hand every committed, undelivered event to each subscriber, in order; returns the
        pending removal of those delivered, if one was asked for (always with ``forget``)."""
        with self._lock:
            self._due = False
        with self._delivering:
            while True:
                runs: dict[str, dict[str, Any] | None] = {}  # a batch's steps share their run's read
                with self._store.read() as txn:
                    rows = self._records.events_after(txn, self._delivered, BATCH)
                    events = [(seq, self._read(txn, seq, row, runs)) for seq, row in rows]
                yielded = time.perf_counter()
                for seq, event in events:
                    if event is not None:
                        self._hand_out(event)
                    self._delivered = seq
                    yielded = breathe(yielded)
                if len(rows) < BATCH:
                    break
            return self._forget(forget)

    def _forget(self, now: bool) -> Future[None] | None:
        """Remove what was delivered from the store, now and then (``now``: at once)."""
        backlog = self._delivered - self._forgotten
        due = time.monotonic() - self._forgot_at >= FORGET_EVERY or backlog >= FORGET_AFTER
        if not backlog or not (now or due):
            if backlog:
                self.wake_later()
            return None
        self._forgotten, self._forgot_at = self._delivered, time.monotonic()
        return self._writer.submit(functools.partial(self._records.delete_events, upto=self._delivered))

    def wake_later(self) -> None:
        """Come back once the removal of what was delivered is due (one timer at a time)."""
        with self._lock:
            if self._stopped or (self._timer is not None and self._timer.is_alive()):
                return
            self._timer = threading.Timer(FORGET_EVERY, self.wake)
            self._timer.daemon = True
            self._timer.start()

    def _read(self, txn: Any, seq: int, row: dict[str, Any], runs: dict[str, dict[str, Any] | None]) -> Event | None:
        """The event with its records; None when the run is gone (pruned since)."""
        kind = EventKind(row["kind"])
        if kind is EventKind.RUN_CHANGED:
            return Event(kind, row["run"], old=RunState(row["old"]))
        if kind is EventKind.RUN_CREATED:
            return Event(kind, row["run"])
        run_id = row.get("run")
        if run_id is not None and run_id not in runs:
            runs[run_id] = self._records.get_run(txn, run_id)
        run = runs.get(run_id) if run_id is not None else {}
        if kind is not EventKind.STEP_DONE:
            return Event(kind, run or {}, data=row["data"])
        step = self._records.fresh_entry(seq) or self._records.get_step(txn, row["run"], row["seq"])
        if run is None or step is None:
            return None
        return Event(kind, run, step=step, replayed=row["replayed"], at=row.get("at"))

    def _hand_out(self, event: Event) -> None:
        for name, subscriber in self._subscribers:
            try:
                subscriber(event)
            except KeyboardInterrupt:
                raise
            except BaseException as exc:  # noqa: BLE001 - one observer's failure (sys.exit too) must not starve the others
                self._log.error("event observer failed", observer=name, error=explain(exc))
