"""The composition root shared by ``corral up`` and a foreground ``corral run``: open a
corral home as its one writer, build the engine and the observers, and subscribe the
observers to the event stream.

This is the one place that knows both sides: the engine (:mod:`corral.run`) posts events
and imports no observer; the observers (:mod:`corral.observe`, :mod:`corral.alerts`)
follow the stream. What runs on which thread is in docs/architecture.md.
"""

from __future__ import annotations

import asyncio
import functools
import os
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass
from typing import TYPE_CHECKING, TextIO

from corral.alerts.service import Alerting
from corral.config import CorralConfig
from corral.observe.events import Background, EventStream
from corral.observe.hooks import HookRelay
from corral.observe.lines import InOrder, RunLines
from corral.observe.logs import LogFiles
from corral.pluginmanager import Plugins, load_plugins
from corral.run.engine import Engine
from corral.sandbox.processes import ProcessControl
from corral.secrets import secrets_in
from corral.store import Records, Store, StoreLock, Writer

if TYPE_CHECKING:
    from corral.observe.telemetry import Telemetry

SETTLE_TIMEOUT = 5.0
"""How long a stopping daemon or command waits for event observers (a plugin's hook may hang)."""


@dataclass
class Host:
    """One writer of a corral home: the engine and what follows its events."""

    config: CorralConfig
    store: Store
    writer: Writer
    background: Background
    events: EventStream
    engine: Engine
    alerting: Alerting
    logs: LogFiles
    order: InOrder
    telemetry: Telemetry | None = None
    """The OpenTelemetry observer, with ``[telemetry] otlp_endpoint`` set (docs/telemetry.md)."""

    @classmethod
    def compose(
        cls,
        config: CorralConfig,
        store: Store,
        plugins: Plugins,
        logs: LogFiles,
        processes: ProcessControl | None = None,
        environ: Mapping[str, str] = os.environ,
    ) -> Host:
        """Build the parts on an open store and wire them; deliver what a previous process
        committed but did not deliver."""
        log = logs.logger(None)
        records = Records(store.dbs)
        writer = Writer(store, on_event=lambda level, message: getattr(log, level)(message))
        background = Background(log)
        events = EventStream(store, records, writer, background.later, log)
        writer.after_commit = events.committed
        engine = Engine(config, store, records, writer, plugins, logs, processes, environ)
        alerting = Alerting(
            config,
            store,
            records,
            writer,
            plugins.manager,
            logs,
            background,
            engine.pause_agent,
            engine.pauses.pause_now,
        )
        order = InOrder(background.later)
        logs.hand_over(order)
        events.subscribe("log lines", RunLines(logs, order))
        events.subscribe("alerts", alerting.observe)
        telemetry = _telemetry(engine, log, logs)
        if telemetry is not None:
            events.subscribe("telemetry", telemetry.observe)
        events.subscribe("hooks", HookRelay(plugins.manager, log))  # last: a slow plugin delays only itself
        events.wake()
        composed = cls(config, store, writer, background, events, engine, alerting, logs, order, telemetry)
        composed.hide_credentials()
        return composed

    def reconfigure(self, config: CorralConfig) -> list[str]:
        """Take a reloaded config: runs started from now on, and alerting, see it. Returns the
        models whose settings changed."""
        self.config = config
        models = self.engine.reconfigure(config)
        self.alerting.reconfigure(config)
        self.hide_credentials()
        return models

    def hide_credentials(self) -> None:
        """The config's own secrets (model keys, alert sink credentials) join the secrets
        granted to agents, so no log line, journal entry or run error shows them either
        (docs/secrets.md)."""
        self.logs.redaction.add([*secrets_in(self.config), *self.alerting.secrets()])

    async def settle(self, timeout: float = SETTLE_TIMEOUT) -> None:
        """Deliver every event of what was committed so far (a stopping daemon, before its
        last log line), waiting at most ``timeout`` for observers."""
        await self.writer.run(lambda txn: None)
        self.background.later(functools.partial(self.events.deliver, forget=True))
        try:
            async with asyncio.timeout(timeout):
                await self.background.caught_up()
        except TimeoutError:
            self.logs.logger(None).warning(
                "event observers still busy; what they have not seen is delivered at the next start",
                waited_s=timeout,
            )

    def close(self, timeout: float = SETTLE_TIMEOUT) -> None:
        """Deliver every event committed so far and record that it was, then stop; an
        observer busy for longer than ``timeout`` is left behind (its events stay stored)."""
        self.writer.call(lambda txn: None)  # whatever was queued before is durable, its events posted
        self.events.stop()
        self.logs.hand_over(None)  # a line logged from now on is written at once
        if self.background.close(timeout):  # work already handed over, deliveries included
            forgotten = self.events.deliver(forget=True)  # what is left, on this thread
            self.order.close()
            if forgotten is not None:
                forgotten.result(timeout=10)
        else:
            self.logs.logger(None).warning(
                "an event observer did not return; undelivered events go out at the next start", waited_s=timeout
            )
        self.writer.close()
        if self.telemetry is not None:
            self.telemetry.close()  # after the last delivery: its spans go out too


def _telemetry(engine: Engine, log: object, logs: LogFiles) -> Telemetry | None:
    """With ``[telemetry] otlp_endpoint`` set, the OpenTelemetry observer of the events."""
    config = engine.config.telemetry
    if not config.enabled:
        return None
    from corral.observe.telemetry import Telemetry  # the telemetry extra: imported only when it is used

    def endpoint_of(model: str) -> tuple[str | None, str | None]:
        """(provider, model id) of a configured model, as the config now says."""
        configured = engine.config.models.get(model)
        endpoint = configured.endpoint if configured is not None else None
        return (endpoint.provider, endpoint.model) if endpoint is not None else (None, None)

    return Telemetry(config, log=log, redact=logs.redaction.redact, endpoint_of=endpoint_of)


@contextmanager
def host(config: CorralConfig, *, echo: TextIO | None) -> Iterator[Host]:
    """Lock the home, open store, logs and plugins, compose; close them all on the way out.

    Raises StoreLockedError when another process already owns the home.
    """
    config.home.mkdir(parents=True, exist_ok=True, mode=0o700)
    os.chmod(config.home, 0o700)
    lock = StoreLock(config.home)
    lock.acquire()
    logs = LogFiles(config.log_dir, max_bytes=config.log_max_bytes, backups=config.log_backups, echo=echo)
    log = logs.logger(None)
    try:
        store = Store.open(config.home / "store", map_mb=config.store_map_mb)
        try:
            plugins = load_plugins(config.plugins, config.home / "plugins", warn=log.warning)
            composed = Host.compose(config, store, plugins, logs)
            try:
                yield composed
            finally:
                composed.close()
                composed.engine.processes.close()
        finally:
            store.close()
    finally:
        logs.close()
        lock.release()
