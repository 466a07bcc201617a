"""``python -m benchmarks.otlp_sink``: a local OTLP/HTTP receiver for the telemetry benchmark.

It runs in a process of its own, as a collector would, so receiving costs the measured
daemon nothing. It answers every ``POST /v1/traces`` and ``/v1/metrics`` with 200, counts
the spans it decodes (``opentelemetry-proto``), prints ``PORT`` on its first line, and
prints the span count when its standard input closes.
"""

from __future__ import annotations

import sys
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import ExportTraceServiceRequest


class Sink(ThreadingHTTPServer):
    daemon_threads = True
    spans = 0
    lock = threading.Lock()


class Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"

    def do_POST(self) -> None:
        body = self.rfile.read(int(self.headers.get("Content-Length", "0")))
        if self.path == "/v1/traces":
            request = ExportTraceServiceRequest()
            request.ParseFromString(body)
            count = sum(len(s.spans) for r in request.resource_spans for s in r.scope_spans)
            sink: Sink = self.server  # type: ignore[assignment]
            with sink.lock:
                sink.spans += count
        self.send_response(200)
        self.send_header("Content-Length", "0")
        self.end_headers()

    def log_message(self, format: str, *args: Any) -> None:
        """No access log."""


def main() -> None:
    sink = Sink(("127.0.0.1", 0), Handler)
    threading.Thread(target=sink.serve_forever, daemon=True).start()
    print(sink.server_address[1], flush=True)
    sys.stdin.read()
    print(sink.spans, flush=True)


if __name__ == "__main__":
    main()
