"""The alerting service an engine owns: accept alerts from any thread, store them, deliver them.

``Engine.alert`` hands every alert here. :meth:`Alerting.raise_alert` never blocks and
never raises for a sink problem: it queues one write job on the store writer (dedup
and rate limiting are decided inside it, against the ``alert_keys`` database) and wakes
the delivery task once the alert is durable. The daemon starts delivery, the rules,
the timed checks, the dead-man's switch and the metrics endpoint with :meth:`start`;
a foreground ``corral run`` starts delivery only and gives it a short bound at exit.
"""

from __future__ import annotations

import asyncio
import threading
from collections.abc import AsyncIterator
from concurrent.futures import Future
from contextlib import asynccontextmanager
from typing import TYPE_CHECKING, Any

import pluggy

from corral.alerts.alert import Alert, Severity
from corral.alerts.config import LOG_SINK
from corral.alerts.delivery import Delivery
from corral.alerts.outbox import Outbox
from corral.alerts.routing import BuiltSink, build_sinks, sink_types
from corral.alerts.sinks.log import LogSink
from corral.config import CorralConfig
from corral.states import FINISHED, RunState

if TYPE_CHECKING:
    from corral.alerts.monitor import Monitor
    from corral.alerts.rules import RunRules, StuckRule
    from corral.observe.metrics import Metrics
    from corral.run.engine import Engine

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
    """Owned by the engine; see the module docstring."""

    def __init__(self, engine: Engine) -> None:
        self._engine = engine
        self.config = engine.config.alerts
        self._log = engine.log
        self.outbox = Outbox(engine.store.dbs)
        self.sinks, _ = configured_sinks(
            engine.config, engine.plugins.manager
        )  # problems: `corral check`, daemon start
        self.delivery = Delivery(engine.store, engine.writer, self.sinks, _AlertLog(engine), engine.log)
        self._lock = threading.Lock()
        with engine.store.read() as txn:
            self._open = self.outbox.open_keys(txn)
        self._loop: asyncio.AbstractEventLoop | None = None
        self._rules: RunRules | None = None
        self._stuck: StuckRule | None = None
        self.monitor: Monitor | None = None
        self.metrics: Metrics | None = None

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
            future = self._engine.writer.submit(lambda txn: outbox.accept(txn, alert, targets, repeat_after))
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

    def breaker_changed(self, model: str, state: str, reason: str) -> None:
        """A model endpoint's circuit breaker opened (alert) or closed again (the all-clear)."""
        if self.metrics is not None:
            self.metrics.breaker_changed(model, state)
        key = f"breaker:{model}"
        if state == "open":
            self.raise_alert(
                Alert(
                    key=key,
                    severity=Severity.WARNING,
                    title=f"model {model!r}: circuit breaker opened",
                    body=reason,
                    fields={"model": model},
                )
            )
        elif state == "closed":
            title = f"model {model!r}: circuit breaker closed again"
            self.raise_alert(Alert(key=key, severity=Severity.INFO, title=title, body=reason, resolved=True))

    def pause(self, agent: str, reason: str, until: float | None) -> None:
        """Pause ``agent`` through the engine, from the background thread the rules run on."""
        loop = self._loop
        if loop is None or loop.is_closed():
            self._log.error("agent not paused: no event loop", agent=agent, reason=reason)
            return
        future = asyncio.run_coroutine_threadsafe(self._engine.pause_agent(agent, reason, until=until), loop)
        future.add_done_callback(lambda done: self._paused(agent, reason, done))

    def failures_before(self, agent: str, run_id: str, limit: int = 100) -> int:
        """How many of ``agent``'s runs before ``run_id`` failed in a row, from the store: the
        crash-loop count survives a daemon restart and counts across foreground runs. The count
        stops at a success and at the run that last set off a crash loop; unfinished and
        cancelled runs are passed over."""
        count = 0
        with self._engine.store.read() as txn:
            for run in self._engine.records.list_runs(txn, agent, limit):
                state = RunState(run["state"])
                if run["id"] == run_id or state not in FINISHED or state is RunState.CANCELLED:
                    continue
                if state is RunState.SUCCEEDED or run.get("crash_loop"):
                    break
                count += 1
        return count

    def crash_loop_at(self, run_id: str) -> None:
        """Mark the run that set off a crash loop, where :meth:`failures_before` stops counting."""

        def job(txn: Any) -> None:
            run = self._engine.records.get_run(txn, run_id)
            if run is not None:
                run["crash_loop"] = True
                self._engine.records.put_run(txn, run)

        self._engine.writer.submit(job)

    def _paused(self, agent: str, reason: str, future: Future[Any]) -> None:
        exc = future.exception()
        if exc is not None:
            self._log.error(
                "agent could not be paused", agent=agent, reason=reason, error=f"{type(exc).__name__}: {exc}"
            )

    def reconfigure(self, config: CorralConfig) -> None:
        """Take a reloaded config: routes, sinks, rule thresholds and expectations apply from now on.

        Turning ``stuck_after``, the dead-man's switch or metrics on or off, or moving the
        metrics port, takes a restart. A sink that cannot be built is logged and left out.
        """
        sinks, problems = configured_sinks(config, self._engine.plugins.manager)
        for problem in problems:
            self._log.warning("config problem", problem=problem)
        self.config = config.alerts
        self.sinks = self.delivery.sinks = sinks
        if self._rules is not None:
            self._rules.crash_loop, self._rules.pause_for = self.config.crash_loop, self.config.crash_loop_pause
        if self._stuck is not None and self.config.stuck_after is not None:
            self._stuck.after = self.config.stuck_after

    # ------------------------------------------------------------------ the event loop

    async def start(self, *, daemon: bool) -> None:
        """Start delivery on the running loop; in the daemon also the timed checks, switch and metrics."""
        from corral.alerts.rules import RunRules, StuckRule

        self._loop = asyncio.get_running_loop()
        manager = self._engine.plugins.manager
        config = self.config
        self._rules = RunRules(self, config.crash_loop, config.crash_loop_pause)
        manager.register(self._rules, name="corral.alerts.rules")
        stuck = None
        if daemon and config.stuck_after is not None:
            stuck = self._stuck = StuckRule(self, config.stuck_after)
            manager.register(stuck, name="corral.alerts.rules:stuck")
        self.delivery.start()
        if not daemon:
            return
        from corral.alerts.monitor import Monitor

        self.monitor = Monitor(self, self._engine, stuck)
        await self.monitor.start()
        if config.metrics.port is not None:
            from corral.observe.metrics import Metrics

            self.metrics = Metrics(self._engine, config.metrics)
            manager.register(self.metrics, name="corral.observe.metrics")
            self.metrics.start()

    async def flush(self, timeout: float) -> bool:
        """Wait up to ``timeout`` for what was raised so far to be delivered; True when it was.

        Alerts raised by listeners are still on the background thread, so first let that
        thread and then the store writer catch up.
        """
        loop = asyncio.get_running_loop()
        caught_up: asyncio.Future[None] = loop.create_future()
        self._engine.later(lambda: loop.call_soon_threadsafe(_set, caught_up))
        try:
            async with asyncio.timeout(timeout):
                await caught_up
                await self._engine.writer.run(lambda txn: None)
        except TimeoutError:
            return False
        return await self.delivery.idle(timeout)

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
        if self.metrics is not None:
            self.metrics.stop()
        if self.monitor is not None:
            await self.monitor.stop()
        await self.delivery.stop(flush)
        manager = self._engine.plugins.manager
        for plugin in (self._rules, self._stuck, self.metrics):
            if plugin is not None and manager.is_registered(plugin):
                manager.unregister(plugin)
        self._rules = self._stuck = self.metrics = self.monitor = None
        self._loop = None


class _AlertLog:
    """The always-on log sink: an agent's alert goes to that agent's log (so ``corral logs AGENT``
    and ``--run`` show it next to the run), any other to the daemon's."""

    def __init__(self, engine: Engine) -> None:
        self._engine = engine

    def target(self) -> str:
        return "corral's logs"

    async def deliver(self, alert: Alert) -> None:
        engine = self._engine
        if alert.agent in engine.config.agents:
            logger = (
                engine.logs.logger(alert.agent, run_id=alert.run_id)
                if alert.run_id
                else engine.logs.logger(alert.agent)
            )
        else:
            logger = engine.log
        await LogSink({}, logger=logger, section=f"alerts.sinks.{LOG_SINK}").deliver(alert)


def _set(future: asyncio.Future[None]) -> None:
    if not future.done():
        future.set_result(None)
