"""Sending what the outbox holds: one task per alert on the event loop, never on a run's path.

Each target sink is tried with backoff (tenacity: exponential with jitter, the
receiver's ``Retry-After`` honoured, only failures a retry can fix are retried). When a
sink has used its tries, the alert goes to the sink its table names in ``escalate_to``,
and on along that chain. Each outcome is written back to the alert's record; the
record leaves the outbox once every target was tried, so a crash in between means the
unfinished targets are tried again after the restart (at least once, never lost).
"""

from __future__ import annotations

import asyncio
import dataclasses
import time
from collections.abc import Callable, Mapping
from functools import partial
from typing import Any

from tenacity import AsyncRetrying, RetryCallState, retry_if_exception, stop_after_attempt, wait_exponential_jitter

from corral.alerts.alert import Alert
from corral.alerts.outbox import Outbox
from corral.alerts.routing import AlertSink, BuiltSink
from corral.alerts.sinks.base import SinkError
from corral.config.alerts import LOG_SINK, SinkConfig
from corral.secrets import Redactor, Secret
from corral.store import Store, Writer

MAX_CONCURRENT = 8
"""Alerts being delivered at once; more wait their turn in the outbox."""
ATTEMPT_CAP = 300.0
"""The longest one delivery attempt may take, whatever a plugin's sink does."""


def _retryable(exc: BaseException) -> bool:
    return isinstance(exc, SinkError) and exc.retryable


class _Wait:
    """Exponential backoff with jitter, stretched to the receiver's Retry-After when it sent one."""

    def __init__(self, config: SinkConfig) -> None:
        self._max = config.retry_max_wait
        wait = config.retry_wait
        self._backoff = wait_exponential_jitter(multiplier=wait, jitter=wait, max=config.retry_max_wait)

    def __call__(self, state: RetryCallState) -> float:
        wait = float(self._backoff(state))
        exc = state.outcome.exception() if state.outcome else None
        if isinstance(exc, SinkError) and exc.retry_after:
            wait = max(wait, exc.retry_after)
        return min(wait, self._max)


class Delivery:
    """The delivery task: started on the event loop, woken from any thread when an alert is stored."""

    def __init__(
        self,
        store: Store,
        writer: Writer,
        outbox: Outbox,
        sinks: Mapping[str, BuiltSink],
        log_sink: AlertSink,
        log: Any,
        sleep: Callable[[float], Any] = asyncio.sleep,
    ) -> None:
        self._store = store
        self._writer = writer
        self._outbox = outbox
        self.sinks = sinks
        """Replaced as a whole when the config is reloaded; a delivery under way keeps the one it started with."""
        self._log_sink = log_sink
        self._log = log
        self._sleep = sleep
        self._loop: asyncio.AbstractEventLoop | None = None
        self._wake: asyncio.Event | None = None
        self._task: asyncio.Task[None] | None = None
        self._inflight: dict[str, tuple[str, asyncio.Task[None]]] = {}  # record key -> (alert key, task)
        self._slots = asyncio.Semaphore(MAX_CONCURRENT)
        self._redactors: dict[str, tuple[SinkConfig, Redactor]] = {}
        self.links: Callable[[Alert], Mapping[str, str]] | None = None
        """The console's links for an alert (a waiting approval's signed link), added as the
        alert goes to a configured sink: never stored in the outbox, never given to the log."""

    def start(self) -> None:
        """Begin delivering, starting with whatever an earlier process left in the outbox."""
        self._loop = asyncio.get_running_loop()
        self._wake = asyncio.Event()
        self._wake.set()
        self._slots = asyncio.Semaphore(MAX_CONCURRENT)  # bound to this loop
        self._task = asyncio.create_task(self._serve(), name="corral-alert-delivery")

    def wake(self) -> None:
        """Look at the outbox again; callable from any thread, never blocks."""
        loop, wake = self._loop, self._wake
        if loop is None or wake is None or loop.is_closed():
            return
        try:
            loop.call_soon_threadsafe(wake.set)
        except RuntimeError:  # the loop closed in between: the next start delivers it
            pass

    async def stop(self, flush: float) -> None:
        """Give deliveries under way up to ``flush`` seconds, then stop; the rest stays in the outbox."""
        if self._task is None:
            return
        self._task.cancel()
        tasks = [task for _, task in self._inflight.values()]
        if tasks:
            await asyncio.wait(tasks, timeout=flush)
        for task in tasks:
            task.cancel()
        await asyncio.gather(self._task, *tasks, return_exceptions=True)
        self._task = None
        self._loop = None

    async def idle(self, timeout: float) -> bool:
        """Wait until nothing is pending or in flight (tests, a foreground run's exit); True if so."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            with self._store.read() as txn:
                pending = self._outbox.pending(txn)
            if not pending and not self._inflight:
                return True
            await asyncio.sleep(0.02)
        return False

    async def _serve(self) -> None:
        assert self._wake is not None
        while True:
            await self._wake.wait()
            self._wake.clear()
            try:
                with self._store.read() as txn:
                    pending = self._outbox.pending(txn)
            except Exception as exc:
                self._log.error("alert outbox unreadable", error=f"{type(exc).__name__}: {exc}")
                continue
            # one alert key at a time, oldest first: an all-clear never overtakes its alert
            busy = {key for key, _ in self._inflight.values()}
            for record in pending:
                alert_key = record["alert"].get("key")
                if record["key"] not in self._inflight and alert_key not in busy:
                    task = asyncio.create_task(self._deliver(record))
                    self._inflight[record["key"]] = (alert_key, task)
                busy.add(alert_key)

    def _done(self, key: str) -> None:
        self._inflight.pop(key, None)
        if self._wake is not None:
            self._wake.set()  # the key's next alert may be waiting

    def _redactor(self, name: str, config: SinkConfig) -> Redactor:
        """The sink table's secrets (a plugin's sink may quote them in its error), compiled once per config."""
        cached = self._redactors.get(name)
        if cached is None or cached[0] is not config:
            secrets = [value for value in config.settings.values() if isinstance(value, Secret)]
            cached = self._redactors[name] = (config, Redactor(secrets))
        return cached[1]

    async def _deliver(self, record: dict[str, Any]) -> None:
        key = record["key"]
        try:
            await self._deliver_record(key, record)
        finally:
            self._done(key)

    async def _deliver_record(self, key: str, record: dict[str, Any]) -> None:
        try:
            alert = Alert.from_dict(record["alert"])
        except Exception as exc:
            self._log.error("stored alert unreadable; dropped", record=key, error=str(exc))
            await self._writer.run(lambda txn: self._outbox.finish(txn, key))
            return
        done = {name for name, d in record["deliveries"].items() if d.get("ok") or d.get("final")}
        async with self._slots:
            targets = [t for t in record["targets"] if t not in done]
            await asyncio.gather(*(self._chain(key, alert, target, done) for target in targets))
            final = await self._writer.run(lambda txn: self._outbox.finish(txn, key))
        if final is not None and final["status"] == "failed":
            self._log.error("alert not delivered by any sink", alert_id=alert.id, key=alert.key, title=alert.title)

    async def _chain(self, key: str, alert: Alert, target: str, done: set[str]) -> None:
        """Deliver to ``target``; while a sink keeps failing, to the sink it escalates to."""
        current: str | None = target
        tried: set[str] = set()
        while current is not None and current not in tried:
            tried.add(current)
            if current in done and current != target:
                return  # that sink already has this alert
            ok, result = await self._try(alert, current)
            nxt = self.sinks[current].config.escalate_to if current in self.sinks and not ok else None
            if nxt is not None:
                result["escalated_to"] = nxt
            await self._writer.run(partial(self._outbox.outcome, key=key, sink=current, result=result))
            if ok:
                return
            if nxt is not None:
                self._log.warning("alert sink failing; escalating", sink=current, to=nxt, alert_id=alert.id)
            current = nxt

    def _linked(self, alert: Alert) -> Alert:
        if self.links is None:
            return alert
        try:
            links = self.links(alert)
        except Exception as exc:  # no link is better than no alert
            self._log.error("alert links could not be made", alert_id=alert.id, error=f"{type(exc).__name__}: {exc}")
            return alert
        return dataclasses.replace(alert, links=links) if links else alert

    async def _try(self, alert: Alert, name: str) -> tuple[bool, dict[str, Any]]:
        attempts = 0
        if name == LOG_SINK:
            sink, config = self._log_sink, SinkConfig(LOG_SINK, LOG_SINK, {}, retries=1)
        elif name in self.sinks:
            sink, config = self.sinks[name].sink, self.sinks[name].config
            alert = self._linked(alert)
        else:
            error = f"alert sink {name!r} is no longer configured; the alert was not sent there"
            return False, {"ok": False, "final": True, "at": time.time(), "attempts": 0, "error": error}
        retrying = AsyncRetrying(
            stop=stop_after_attempt(config.retries),
            wait=_Wait(config),
            retry=retry_if_exception(_retryable),
            reraise=True,
            sleep=self._sleep,
        )
        try:
            async for attempt in retrying:
                with attempt:
                    attempts += 1
                    async with asyncio.timeout(ATTEMPT_CAP):
                        await sink.deliver(alert)
        except Exception as exc:  # a plugin's sink may raise anything; it must not stop the others
            message = str(exc) if isinstance(exc, SinkError) else f"{type(exc).__name__}: {exc}"
            message = self._redactor(name, config).redact_text(message)
            self._log.warning("alert sink failed", sink=name, alert_id=alert.id, attempts=attempts, error=message)
            return False, {"ok": False, "final": True, "at": time.time(), "attempts": attempts, "error": message}
        return True, {"ok": True, "at": time.time(), "attempts": attempts}
