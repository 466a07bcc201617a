"""Sending spans and metrics over OTLP/HTTP without ever hurting a run.

The official exporters do the work (protobuf encoding, retries with backoff, honouring
Retry-After), on the SDK's own worker threads. What corral adds:

- :class:`Collector`: the first failed export logs one warning (which signal, where, why,
  and that runs go on); while the collector stays down, batches are dropped at once
  instead of each one waiting out the exporter's retries, and one export is tried every
  :data:`RETRY_INTERVALS` export intervals; the export that works again logs how many
  were lost.
- :class:`Watched`, the requests session the exporters send with (their public
  ``session`` parameter), which remembers how the last request went, for that warning.
- :class:`LibraryLog`: the SDK's own ``logging`` records (one per failed batch, one per
  dropped span) would go to stderr; each distinct message goes to corral's log once, a
  dropped span is counted by the Collector, and the exporters' per-request messages are
  left to it.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Sequence
from typing import Any

import requests
from opentelemetry.exporter.otlp.proto.http.metric_exporter import OTLPMetricExporter
from opentelemetry.exporter.otlp.proto.http.trace_exporter import OTLPSpanExporter
from opentelemetry.sdk.metrics.export import MetricExportResult, MetricsData
from opentelemetry.sdk.trace import ReadableSpan
from opentelemetry.sdk.trace.export import SpanExportResult

from corral.config.telemetry import TelemetryConfig

RETRY_INTERVALS = 6
"""While the collector is down, one export is tried every this many export intervals (30 s
with the default 5 s); batches in between are dropped at once."""
LIBRARY_LOGGER = "opentelemetry"
EXPORT_LOGGERS = ("opentelemetry.exporter",)
"""Loggers whose records :class:`Collector` reports instead (one warning per outage, not per batch)."""
QUEUE_FULL = "Queue full, dropping"
"""How the SDK's batch processor says that it dropped a span (once per span)."""


class Watched(requests.Session):
    """A session that remembers how its last request went: ``HTTP 404``, ``connection
    refused``, ``timed out``. Never the URL or a header: they may hold the collector's token."""

    def __init__(self) -> None:
        super().__init__()
        self.last = "no answer"

    def request(self, method: str, url: str, *args: Any, **kwargs: Any) -> requests.Response:  # type: ignore[override]
        try:
            response = super().request(method, url, *args, **kwargs)
        except requests.exceptions.Timeout:
            self.last = "timed out"
            raise
        except requests.exceptions.SSLError:
            self.last = "TLS handshake failed (check the certificate)"
            raise
        except requests.exceptions.ConnectionError as exc:
            refused = "refused" in str(exc).lower()
            self.last = "connection refused" if refused else "could not connect"
            raise
        except requests.exceptions.RequestException as exc:
            self.last = type(exc).__name__
            raise
        self.last = f"HTTP {response.status_code}" + (f" {response.reason}" if response.reason else "")
        return response


class Collector:
    """The receiver both signals go to: which of them it is not taking, and the one warning.

    The first failed export while nothing else is failing logs one warning (a collector
    that is down fails traces and metrics alike: still one); while a signal is down its
    exports are dropped at once, one is tried every ``retry_every`` seconds, and the one
    that goes through logs how many items were dropped. Spans the SDK's full queue
    dropped (:meth:`overflowed`) count as the traces' loss; if the next export of traces
    goes through, the collector was up and spans simply came faster than they were
    exported, which gets a warning of its own, once."""

    def __init__(self, where: str, log: Any, retry_every: float, max_queue: int) -> None:
        self.where = where
        self.log = log
        self.retry_every = retry_every
        self.max_queue = max_queue
        self._next_try: dict[str, float] = {}  # signal -> when to try it again, while it is down
        self._dropped: dict[str, int] = {}
        self._overflow = 0  # spans the full queue dropped since the last export of traces
        self._overflow_told = False
        self._lock = threading.Lock()

    def overflowed(self) -> None:
        """The SDK dropped a span: its queue held ``max_queue`` already."""
        with self._lock:
            self._overflow += 1

    def skip(self, signal: str, count: int) -> bool:
        """Drop ``count`` items at once (True) while ``signal`` is down and not due for a try."""
        with self._lock:
            if signal in self._next_try and time.monotonic() < self._next_try[signal]:
                self._dropped[signal] = self._dropped.get(signal, 0) + count
                return True
            return False

    def settle(self, signal: str, ok: bool, count: int, why: str) -> None:
        """An export of ``count`` items of ``signal`` went through (``ok``) or failed (``why``)."""
        overflow = 0
        with self._lock:
            was_down = signal in self._next_try
            if signal == "traces":
                overflow, self._overflow = self._overflow, 0
            if ok:
                self._next_try.pop(signal, None)
                dropped = self._dropped.pop(signal, 0) + (overflow if was_down else 0)
                told, self._overflow_told = self._overflow_told, self._overflow_told or bool(overflow and not was_down)
            else:
                first = not self._next_try
                self._next_try[signal] = time.monotonic() + self.retry_every
                self._dropped[signal] = self._dropped.get(signal, 0) + count + overflow
        if ok and was_down:
            self.log.info(f"telemetry: {self.where} takes {signal} again", dropped=dropped)
        elif ok and overflow and not told:
            self.log.warning(
                f"telemetry: spans came faster than they were exported to {self.where}; {overflow} beyond "
                f"[telemetry] max_queue ({self.max_queue}) were dropped. Raise max_queue, or export more often "
                "(export_interval)"
            )
        elif not ok and first:
            self.log.warning(
                f"telemetry: {self.where} did not take {signal} ({why}); corral drops telemetry until it does "
                f"and tries again every {self.retry_every:g} s. Runs are not affected; check that the collector "
                "runs and [telemetry] otlp_endpoint and headers are right"
            )


def _options(config: TelemetryConfig, signal: str, session: Watched) -> dict[str, Any]:
    """An official exporter's arguments for ``signal`` (``traces``, ``metrics``)."""
    return {
        "endpoint": f"{config.otlp_endpoint}/v1/{signal}",
        "headers": {name: value.reveal() for name, value in config.headers.items()},
        "timeout": config.timeout,
        "session": session,
    }


class SpanExport(OTLPSpanExporter):
    """The official OTLP/HTTP span exporter, reporting to the :class:`Collector`."""

    def __init__(self, config: TelemetryConfig, collector: Collector) -> None:
        self.collector, self.session = collector, Watched()
        super().__init__(**_options(config, "traces", self.session))

    def export(self, spans: Sequence[ReadableSpan]) -> SpanExportResult:
        if self.collector.skip("traces", len(spans)):
            return SpanExportResult.FAILURE
        result = super().export(spans)
        self.collector.settle("traces", result is SpanExportResult.SUCCESS, len(spans), self.session.last)
        return result


class MetricExport(OTLPMetricExporter):
    """The official OTLP/HTTP metric exporter, reporting to the :class:`Collector`."""

    def __init__(self, config: TelemetryConfig, collector: Collector) -> None:
        self.collector, self.session = collector, Watched()
        super().__init__(**_options(config, "metrics", self.session))

    def export(
        self, metrics_data: MetricsData, timeout_millis: float | None = 10_000, **kwargs: Any
    ) -> MetricExportResult:
        if self.collector.skip("metrics", 1):
            return MetricExportResult.FAILURE
        result = super().export(metrics_data, timeout_millis, **kwargs)
        self.collector.settle("metrics", result is MetricExportResult.SUCCESS, 1, self.session.last)
        return result


class LibraryLog(logging.Handler):
    """The OpenTelemetry SDK's ``logging`` records into corral's log, each distinct message
    once; a dropped span is counted by the :class:`Collector` instead (which knows whether
    the collector is down), and the exporters' own records are left to it."""

    def __init__(self, log: Any, collector: Collector) -> None:
        super().__init__(logging.WARNING)
        self.log = log
        self.collector = collector
        self._seen: set[tuple[str, object]] = set()
        self._logger = logging.getLogger(LIBRARY_LOGGER)
        self._propagated = self._logger.propagate

    def install(self) -> None:
        """Catch the SDK's records here (and only here: not on stderr, not in the root logger)."""
        self._logger.addHandler(self)
        self._logger.propagate = False

    def uninstall(self) -> None:
        self._logger.removeHandler(self)
        self._logger.propagate = self._propagated

    def emit(self, record: logging.LogRecord) -> None:
        if record.name.startswith(EXPORT_LOGGERS):
            return
        if str(record.msg).startswith(QUEUE_FULL):
            self.collector.overflowed()
            return
        key = (record.name, record.msg)
        if key in self._seen:
            return
        self._seen.add(key)
        try:
            message = record.getMessage()
        except Exception:  # noqa: BLE001 - a malformed record must not break telemetry
            message = str(record.msg)
        self.log.warning("telemetry library: " + message, logger=record.name)
