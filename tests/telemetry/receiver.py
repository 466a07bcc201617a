"""A real OTLP/HTTP receiver on 127.0.0.1 that decodes what corral exports.

It serves ``POST /v1/traces`` and ``POST /v1/metrics`` on its own threads, decodes each
body with opentelemetry-proto (``ExportTraceServiceRequest``,
``ExportMetricsServiceRequest``) and keeps the spans and metric points as plain values.
It also keeps every request's raw headers and body, so a test can look for a secret in
what went over the wire. ``status`` makes it answer every export with that HTTP status.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

from opentelemetry.proto.collector.metrics.v1.metrics_service_pb2 import ExportMetricsServiceRequest
from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import ExportTraceServiceRequest
from opentelemetry.proto.common.v1.common_pb2 import AnyValue
from opentelemetry.proto.trace.v1.trace_pb2 import Span as ProtoSpan

KINDS = {ProtoSpan.SPAN_KIND_INTERNAL: "internal", ProtoSpan.SPAN_KIND_CLIENT: "client"}


def value(any_value: AnyValue) -> Any:
    """An OTLP attribute value as Python."""
    which = any_value.WhichOneof("value")
    if which == "array_value":
        return [value(item) for item in any_value.array_value.values]
    if which == "kvlist_value":
        return attributes(any_value.kvlist_value.values)
    return getattr(any_value, which) if which else None


def attributes(pairs: Any) -> dict[str, Any]:
    return {pair.key: value(pair.value) for pair in pairs}


@dataclass(frozen=True)
class Span:
    """One received span."""

    name: str
    trace_id: str
    span_id: str
    parent: str
    kind: str
    start: float
    end: float
    attributes: dict[str, Any]
    status: int
    status_message: str
    resource: dict[str, Any]
    scope: str


@dataclass(frozen=True)
class Point:
    """One received metric data point: the metric's name, its attributes and its value
    (a sum's value, or a histogram's ``(count, sum)``)."""

    metric: str
    unit: str
    attributes: dict[str, Any]
    value: Any
    export: int
    """Which export request it came in (1, 2, ...): metrics are cumulative, the latest counts."""


@dataclass
class Received:
    path: str
    headers: dict[str, str]
    body: bytes


@dataclass
class Receiver:
    """Start with :meth:`start`, stop with :meth:`stop`."""

    status: int = 200
    requests: list[Received] = field(default_factory=list)
    spans: list[Span] = field(default_factory=list)
    points: list[Point] = field(default_factory=list)

    def __post_init__(self) -> None:
        self._lock = threading.Lock()
        self._exports = 0
        self._server = ThreadingHTTPServer(("127.0.0.1", 0), _Handler)
        self._server.daemon_threads = True
        self._server.receiver = self  # type: ignore[attr-defined]
        self._thread = threading.Thread(target=self._server.serve_forever, args=(0.02,), daemon=True)

    @property
    def url(self) -> str:
        host, port = self._server.server_address[:2]
        return f"http://{host!s}:{port}"

    def start(self) -> Receiver:
        self._thread.start()
        return self

    def stop(self) -> None:
        self._server.shutdown()
        self._server.server_close()
        self._thread.join(timeout=5)

    def take(self, path: str, headers: dict[str, str], body: bytes) -> None:
        """One request: ``headers`` with lower-case names."""
        received = Received(path, headers, body)
        with self._lock:
            self.requests.append(received)
        if self.status != 200:
            return
        if path == "/v1/traces":
            self._traces(body)
        elif path == "/v1/metrics":
            self._metrics(body)

    def _traces(self, body: bytes) -> None:
        request = ExportTraceServiceRequest()
        request.ParseFromString(body)
        found = []
        for resource_spans in request.resource_spans:
            resource = attributes(resource_spans.resource.attributes)
            for scope_spans in resource_spans.scope_spans:
                for span in scope_spans.spans:
                    found.append(
                        Span(
                            name=span.name,
                            trace_id=span.trace_id.hex(),
                            span_id=span.span_id.hex(),
                            parent=span.parent_span_id.hex(),
                            kind=KINDS.get(span.kind, str(span.kind)),
                            start=span.start_time_unix_nano / 1e9,
                            end=span.end_time_unix_nano / 1e9,
                            attributes=attributes(span.attributes),
                            status=span.status.code,
                            status_message=span.status.message,
                            resource=resource,
                            scope=scope_spans.scope.name,
                        )
                    )
        with self._lock:
            self.spans += found

    def _metrics(self, body: bytes) -> None:
        request = ExportMetricsServiceRequest()
        request.ParseFromString(body)
        with self._lock:
            self._exports += 1
            export = self._exports
        found = []
        for resource_metrics in request.resource_metrics:
            for scope_metrics in resource_metrics.scope_metrics:
                for metric in scope_metrics.metrics:
                    kind = metric.WhichOneof("data")
                    for point in getattr(metric, kind).data_points:
                        if kind == "histogram":
                            shown: Any = (point.count, point.sum)
                        else:
                            shown = point.as_double if point.WhichOneof("value") == "as_double" else point.as_int
                        found.append(Point(metric.name, metric.unit, attributes(point.attributes), shown, export))
        with self._lock:
            self.points += found

    # ------------------------------------------------------------------ reading

    def wait_for(self, predicate: Callable[[Receiver], bool], timeout: float = 30.0) -> None:
        deadline = time.monotonic() + timeout
        while not predicate(self):
            if time.monotonic() > deadline:
                names = sorted({span.name for span in self.spans})
                raise AssertionError(f"the receiver did not get what was expected in {timeout} s; spans: {names}")
            time.sleep(0.05)

    def trace(self, trace_id: str) -> list[Span]:
        with self._lock:
            return [span for span in self.spans if span.trace_id == trace_id]

    def latest(self, metric: str) -> list[Point]:
        """The points of ``metric`` from the latest export that had it (metrics are cumulative)."""
        with self._lock:
            points = [point for point in self.points if point.metric == metric]
        last = max((point.export for point in points), default=0)
        return [point for point in points if point.export == last]

    def raw(self) -> bytes:
        """Every request's headers and body, as sent."""
        with self._lock:
            return b"\n".join(
                "\n".join(f"{k}: {v}" for k, v in r.headers.items()).encode() + b"\n" + r.body for r in self.requests
            )


class _Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"

    def do_POST(self) -> None:
        length = int(self.headers.get("Content-Length", "0"))
        body = self.rfile.read(length)
        receiver: Receiver = self.server.receiver  # type: ignore[attr-defined]
        receiver.take(self.path, {name.lower(): value for name, value in self.headers.items()}, body)
        self.send_response(receiver.status)
        self.send_header("Content-Type", "application/x-protobuf")
        self.send_header("Content-Length", "0")
        self.end_headers()

    def log_message(self, format: str, *args: Any) -> None:
        """Silence the access log."""
