"""The telemetry observer: the event stream in, OTLP/HTTP out, nothing back into the run.

:meth:`Telemetry.observe` is subscribed to the engine's event stream by the composition
root (:func:`corral.daemon.host.host`) and runs on the background thread, off the step
path. It builds spans and metric points in memory; the SDK's batch span processor and
periodic metric reader export them on their own threads, into a queue of at most
``[telemetry] max_queue`` spans (beyond it new ones are dropped). A collector that is
down costs one warning (:mod:`corral.observe.telemetry.export`), never a failed or
slower run.
"""

from __future__ import annotations

import threading
from collections.abc import Callable
from typing import Any

from opentelemetry.sdk.metrics import AlwaysOffExemplarFilter, MeterProvider
from opentelemetry.sdk.metrics.export import PeriodicExportingMetricReader
from opentelemetry.sdk.resources import SERVICE_NAME, SERVICE_VERSION, Resource
from opentelemetry.sdk.trace import SpanLimits, TracerProvider
from opentelemetry.sdk.trace.export import BatchSpanProcessor

from corral import __version__
from corral.config.telemetry import TelemetryConfig
from corral.observe.events import Event
from corral.observe.telemetry.content import CONTENT_CHARS
from corral.observe.telemetry.export import RETRY_INTERVALS, Collector, LibraryLog, MetricExport, SpanExport
from corral.observe.telemetry.measures import Measures
from corral.observe.telemetry.spans import PlannedIds, Spans
from corral.states import FINISHED, EventKind, RunState

CLOSE_WAIT = 5.0
"""At most this many seconds (or ``[telemetry] timeout``, if shorter) at exit for the last export."""
BATCH = 512
"""Spans per export request (fewer when ``max_queue`` is smaller)."""


class Telemetry:
    """Spans and metrics of every run, exported to ``config.otlp_endpoint``; :meth:`close` at exit."""

    def __init__(
        self,
        config: TelemetryConfig,
        *,
        log: Any,
        redact: Callable[[Any], Any],
        endpoint_of: Callable[[str], tuple[str | None, str | None]],
    ) -> None:
        self.config = config
        self._log = log
        collector = Collector(config.shown_endpoint(), log, RETRY_INTERVALS * config.export_interval, config.max_queue)
        self._library = LibraryLog(log, collector)
        self._library.install()
        resource = Resource.create({SERVICE_NAME: config.service_name, SERVICE_VERSION: __version__})
        interval_ms = config.export_interval * 1000
        self.span_export = SpanExport(config, collector)
        ids = PlannedIds()
        self._tracing = TracerProvider(
            resource=resource,
            id_generator=ids,
            span_limits=SpanLimits(max_span_attribute_length=CONTENT_CHARS + 64),
            shutdown_on_exit=False,  # close() bounds the wait; an atexit flush could hold the exit for 30 s
        )
        self._tracing.add_span_processor(
            BatchSpanProcessor(
                self.span_export,
                max_queue_size=config.max_queue,
                schedule_delay_millis=interval_ms,
                max_export_batch_size=min(BATCH, config.max_queue),
            )
        )
        self._spans = Spans(
            self._tracing,
            ids,
            redact=redact,
            capture=config.capture_content,
            endpoint_of=endpoint_of,
            version=__version__,
        )
        self.metric_export: MetricExport | None = None
        self._metering: MeterProvider | None = None
        self._measures: Measures | None = None
        if config.metrics:
            self.metric_export = MetricExport(config, collector)
            reader = PeriodicExportingMetricReader(
                self.metric_export, export_interval_millis=interval_ms, export_timeout_millis=config.timeout * 1000
            )
            self._metering = MeterProvider(
                resource=resource,
                metric_readers=[reader],
                shutdown_on_exit=False,
                exemplar_filter=AlwaysOffExemplarFilter(),
            )
            self._measures = Measures(self._metering.get_meter("corral", __version__))
        log.info(
            "telemetry exporting",
            endpoint=config.shown_endpoint(),
            metrics=config.metrics,
            capture_content=config.capture_content,
        )

    def observe(self, event: Event) -> None:
        """An event of the stream: a step's span (and metrics), or a run's when it ends."""
        if event.kind is EventKind.STEP_DONE:
            entry = event.step
            self._spans.step(event.run, entry, event.replayed, event.at)
            if self._measures is not None:
                model = self._spans.model_names(entry) if entry["kind"] == "model" else (None, "")
                self._measures.step(event.run, entry, event.replayed, model)
        elif event.kind is EventKind.RUN_CHANGED:
            if RunState(event.run["state"]) in FINISHED:
                self._spans.run(event.run)
            if event.ended and self._measures is not None:
                self._measures.run(event.run)

    def close(self) -> None:
        """Export what is left, waiting at most :data:`CLOSE_WAIT` seconds; then stop."""
        closing = threading.Thread(target=self._shutdown, name="corral-telemetry-close", daemon=True)
        closing.start()
        closing.join(min(CLOSE_WAIT, self.config.timeout))
        if closing.is_alive():
            self._log.warning("telemetry: the last export did not finish in time; what it held is dropped")
        self._library.uninstall()

    def _shutdown(self) -> None:
        self._tracing.shutdown()
        if self._metering is not None:
            self._metering.shutdown(timeout_millis=self.config.timeout * 1000)
