"""The alerting service: follow the event stream, accept alerts from any thread, store
them, deliver them.

The composition root (:mod:`corral.daemon.host`) subscribes :meth:`Alerting.observe` to the
event stream: the rules (:mod:`corral.alerts.rules`) turn run ends, approvals, breakers and
budgets into alerts. The scheduler and the daemon raise theirs with :meth:`raise_alert`,
which never blocks and never raises for a sink problem: it queues one write job on the
store writer (dedup and rate limiting are decided inside it, against the ``alert_keys``
database) and wakes the delivery task once the alert is durable. The daemon starts
delivery, the stuck-run rule, the timed checks and the dead-man's switch with
:meth:`start`; a foreground ``corral run`` starts delivery only and gives it a short
bound at exit.
"""

from __future__ import annotations

import asyncio
import threading
from collections.abc import AsyncIterator, Callable, Coroutine, Mapping
from concurrent.futures import Future
from contextlib import asynccontextmanager
from typing import TYPE_CHECKING, Any

import pluggy

from corral.alerts.alert import Alert, Severity
from corral.alerts.delivery import Delivery
from corral.alerts.outbox import Outbox
from corral.alerts.routing import BuiltSink, build_sinks, sink_types
from corral.alerts.rules import NoticeRules, RunRules, StuckRule
from corral.alerts.sinks.base import Sink
from corral.alerts.sinks.log import LogSink
from corral.breaker import downstream_label
from corral.config import CorralConfig
from corral.config.alerts import LOG_SINK
from corral.errors import explain
from corral.observe.events import Background, Event
from corral.observe.logs import LogFiles
from corral.secrets import Secret
from corral.states import FINISHED, RunState
from corral.store import Records, Store, Writer

if TYPE_CHECKING:
    from corral.alerts.monitor import Monitor

Pause = Callable[[str, str, "float | None"], Coroutine[Any, Any, None]]
"""Pause an agent (name, reason, until): the engine's ``pause_agent``."""

FOREGROUND_FLUSH = 5.0
"""How long a foreground ``corral run`` waits at exit for the alerts it raised to go out."""
STOP_FLUSH = 5.0
"""How long a stopping daemon lets deliveries under way finish; the rest go out after the restart."""


def configured_sinks(config: CorralConfig, manager: pluggy.PluginManager) -> tuple[dict[str, BuiltSink], list[str]]:
    """The ``[alerts.sinks.NAME]`` sinks built through the plugins' sink types, and every problem found."""
    failures: list[str] = []
    types = sink_types(manager, failures)
    built, problems = build_sinks(config.alerts, types, str(config.path))
    return built, [f"{config.path}: [corral] plugins: {failure}" for failure in failures] + problems


class Alerting:
    """Built by the composition root; see the module docstring."""

    def __init__(
        self,
        config: CorralConfig,
        store: Store,
        records: Records,
        writer: Writer,
        manager: pluggy.PluginManager,
        logs: LogFiles,
        background: Background,
        pause: Pause,
        pause_now: Callable[[str, str, float | None], object],
    ) -> None:
        self._corral = config
        self.config = config.alerts
        self._store, self._records, self._writer = store, records, writer
        self._manager = manager
        self._log = logs.logger(None)
        self._background = background
        self._pause = pause
        self._pause_now = pause_now
        self.outbox = Outbox(records)
        self.sinks, _ = configured_sinks(config, manager)  # problems: `corral check`, daemon start
        self.delivery = Delivery(store, writer, self.outbox, self.sinks, _AlertLog(logs, self._agents), self._log)
        self._lock = threading.Lock()
        with store.read() as txn:
            self._open = self.outbox.open_keys(txn)
        self._loop: asyncio.AbstractEventLoop | None = None
        self._rules = RunRules(self, self.config.crash_loop, self.config.crash_loop_pause)
        self._notices = NoticeRules(self)
        self._stuck: StuckRule | None = None
        self.monitor: Monitor | None = None

    def _agents(self) -> Mapping[str, object]:
        return self._corral.agents

    def observe(self, event: Event) -> None:
        """The event stream's subscriber: every rule sees every event, in order."""
        self._rules(event)
        self._notices(event)
        if self._stuck is not None:
            self._stuck(event)

    # ------------------------------------------------------------------ any thread

    def raise_alert(self, alert: Alert) -> None:
        """Store ``alert`` for delivery (or count it as a repeat); returns at once, from any thread."""
        with self._lock:
            if alert.resolved:
                if alert.key not in self._open:
                    return  # nothing open to clear: no write at all
                self._open.discard(alert.key)
            else:
                self._open.add(alert.key)
        targets = (LOG_SINK, *self.config.route_for(alert.severity, alert.agent))
        repeat_after = self.config.repeat_after
        outbox = self.outbox
        try:
            future = self._writer.submit(lambda txn: outbox.accept(txn, alert, targets, repeat_after))
        except Exception as exc:  # the writer is closing: log it, the caller must not fail
            self._log.error("alert could not be stored", key=alert.key, title=alert.title, error=str(exc))
            return
        future.add_done_callback(lambda done: self._stored(alert, done))

    def _stored(self, alert: Alert, future: Future[Any]) -> None:
        exc = future.exception()
        if exc is not None:
            self._log.error("alert could not be stored", key=alert.key, title=alert.title, error=str(exc))
        elif future.result() is not None:
            self.delivery.wake()

    def pause(self, agent: str, reason: str, until: float | None) -> None:
        """Pause ``agent`` through the engine, from the background thread the rules run on;
        while no loop runs alerting (events left by a previous process, delivered before the
        daemon starts its loop, or after a foreground run's), durably from this thread."""
        loop = self._loop
        if loop is None or loop.is_closed():
            if agent not in self._corral.agents:
                return
            try:
                self._pause_now(agent, reason, until)
            except Exception as exc:  # noqa: BLE001 - the store is closing: say so, the rules go on
                self._log.error("agent could not be paused", agent=agent, reason=reason, error=explain(exc))
            else:
                self._log.warning("agent paused", agent=agent, reason=reason, until=until)
            return
        future = asyncio.run_coroutine_threadsafe(self._pause(agent, reason, until), loop)
        future.add_done_callback(lambda done: self._paused(agent, reason, done))

    def failures_before(self, agent: str, run_id: str, limit: int = 100) -> int:
        """How many of ``agent``'s runs before ``run_id`` failed in a row, from the store: the
        crash-loop count survives a daemon restart and counts across foreground runs. The count
        stops at a success and at the run that last set off a crash loop; unfinished and
        cancelled runs are passed over."""
        count = 0
        with self._store.read() as txn:
            for run in self._records.list_runs(txn, agent, limit):
                state = RunState(run["state"])
                if run["id"] >= run_id or state not in FINISHED or state is RunState.CANCELLED:
                    continue  # ids order runs by creation: one created after it is counted by its own event
                if state is RunState.SUCCEEDED or run.get("crash_loop"):
                    break
                count += 1
        return count

    def crash_loop_at(self, run_id: str) -> None:
        """Mark the run that set off a crash loop, where :meth:`failures_before` stops counting."""

        records = self._records

        def job(txn: Any) -> None:
            run = records.get_run(txn, run_id)
            if run is not None:
                run["crash_loop"] = True
                records.put_run(txn, run)

        self._writer.submit(job)

    def _paused(self, agent: str, reason: str, future: Future[Any]) -> None:
        exc = future.exception()
        if exc is not None:
            self._log.error(
                "agent could not be paused", agent=agent, reason=reason, error=f"{type(exc).__name__}: {exc}"
            )

    def secrets(self) -> list[Secret]:
        """Every secret the configured sinks hold, written inline too (only a sink's type knows
        which of its keys are secret), for the daemon to hide from its logs and store."""
        return [
            secret for built in self.sinks.values() if isinstance(built.sink, Sink) for secret in built.sink.secrets()
        ]

    def reconfigure(self, config: CorralConfig) -> None:
        """Take a reloaded config: routes, sinks, rule thresholds and expectations apply from now on.

        Turning ``stuck_after`` or the dead-man's switch on or off takes a restart. A sink
        that cannot be built is logged and left out.
        """
        sinks, problems = configured_sinks(config, self._manager)
        for problem in problems:
            self._log.warning("config problem", problem=problem)
        self._corral, self.config = config, config.alerts
        self.sinks = self.delivery.sinks = sinks
        self._rules.crash_loop, self._rules.pause_for = self.config.crash_loop, self.config.crash_loop_pause
        if self._stuck is not None and self.config.stuck_after is not None:
            self._stuck.after = self.config.stuck_after

    # ------------------------------------------------------------------ the event loop

    async def start(self, *, daemon: bool) -> None:
        """Start delivery on the running loop; in the daemon also the stuck-run rule, the timed
        checks and the dead-man's switch."""
        self._loop = asyncio.get_running_loop()
        self.delivery.start()
        if not daemon:
            return
        with self._lock:
            breakers = sorted(key for key in self._open if key.startswith("breaker:"))
        for key in breakers:  # a new daemon's breakers start closed: no change will clear them
            who = downstream_label(key.removeprefix("breaker:"))
            title = f"{who}: circuit breaker closed again (the daemon restarted)"
            self.raise_alert(Alert(key=key, severity=Severity.INFO, title=title, resolved=True))
        from corral.alerts.monitor import Monitor

        if self.config.stuck_after is not None:
            self._stuck = StuckRule(self, self.config.stuck_after)
        self.monitor = Monitor(self, self._store, self._records, self._writer, self._log, self._stuck)
        await self.monitor.start()

    async def flush(self, timeout: float) -> bool:
        """Wait up to ``timeout`` for what was raised so far to be delivered; True when it was.

        Alerts raised by the rules are still on the background thread, so first let that
        thread and then the store writer catch up.
        """
        deadline = asyncio.get_running_loop().time() + timeout
        try:
            async with asyncio.timeout(timeout):
                await self._background.caught_up()
        except TimeoutError:  # an observer is slow (a plugin's hook): what the rules raised so far still goes out
            pass
        await self._writer.run(lambda txn: None)
        return await self.delivery.idle(max(0.1, deadline - asyncio.get_running_loop().time()))

    @asynccontextmanager
    async def running(self, *, daemon: bool) -> AsyncIterator[None]:
        """Alerting for the life of the block; a foreground run first waits (briefly) for its alerts to go out."""
        await self.start(daemon=daemon)
        try:
            yield
        finally:
            if not daemon:
                await self.flush(FOREGROUND_FLUSH)
            await self.stop(STOP_FLUSH if daemon else 0.0)

    async def stop(self, flush: float) -> None:
        """Stop everything :meth:`start` started; deliveries get ``flush`` seconds to finish."""
        if self.monitor is not None:
            await self.monitor.stop()
        await self.delivery.stop(flush)
        self._stuck = self.monitor = None
        self._loop = None


class _AlertLog:
    """The always-on log sink: every alert goes to the daemon's log (so ``corral up``'s
    terminal shows what needs a person, and ``corral logs`` without an agent lists them
    all), and an agent's alert to that agent's log too (so ``corral logs AGENT`` and
    ``--run`` show it next to the run)."""

    def __init__(self, logs: LogFiles, agents: Callable[[], Mapping[str, object]]) -> None:
        self._logs = logs
        self._agents = agents

    def target(self) -> str:
        return "corral's logs"

    async def deliver(self, alert: Alert) -> None:
        logs = self._logs
        loggers = [logs.logger(None)]
        if alert.agent in self._agents():
            bind: dict[str, Any] = {"run_id": alert.run_id} if alert.run_id else {}
            loggers.append(logs.logger(alert.agent, **bind))
        for logger in loggers:
            await LogSink({}, logger=logger, section=f"alerts.sinks.{LOG_SINK}").deliver(alert)
