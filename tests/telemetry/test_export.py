"""A collector that is down or refusing costs one warning and bounded memory, never an
error: the real observer and the official exporter, against a closed port on 127.0.0.1
and a receiver that answers 503 then recovers."""

from __future__ import annotations

import gc
import time
import tracemalloc
from typing import Any

from corral.config.telemetry import TelemetryConfig
from corral.observe.events import Event
from corral.observe.telemetry import Telemetry
from corral.states import EventKind
from tests.models.fake_servers import closed_port_url
from tests.telemetry.receiver import Receiver

TRACE = "4bf92f3577b34da6a3ce929d0e0e4736"
RUN = {"id": "r1", "agent": "mixed", "state": "running", "attempt": 1, "trace_id": TRACE}


class Lines:
    """A logger that keeps what it is told, as corral's structlog loggers are called."""

    def __init__(self) -> None:
        self.lines: list[tuple[str, str, dict[str, Any]]] = []

    def _keep(self, level: str) -> Any:
        return lambda event, **fields: self.lines.append((level, event, fields))

    def __getattr__(self, level: str) -> Any:
        return self._keep(level)

    def said(self, level: str, part: str) -> list[str]:
        return [event for kept, event, _ in self.lines if kept == level and part in event]


def step(seq: int, big: str = "") -> Event:
    entry = {
        "seq": seq,
        "kind": "tool",
        "name": "word_count",
        "args": {"text": big},
        "status": "done",
        "ok": True,
        "value": 1,
        "attempt": 1,
        "executions": 1,
        "started": time.time(),
        "ended": time.time(),
        "key": f"key-{seq}",
    }
    return Event(EventKind.STEP_DONE, RUN, step=entry)


def telemetry(endpoint: str, log: Lines, **config: Any) -> Telemetry:
    settings = {"export_interval": 0.05, "timeout": 0.5, **config}
    return Telemetry(
        TelemetryConfig(otlp_endpoint=endpoint, **settings),
        log=log,
        redact=lambda value: value,
        endpoint_of=lambda model: (None, None),
    )


def test_a_collector_that_is_down_costs_one_warning_and_bounded_memory() -> None:
    log = Lines()
    observer = telemetry(closed_port_url(), log, max_queue=64, capture_content=True)
    try:
        for seq in range(1, 201):
            observer.observe(step(seq))
        deadline = time.monotonic() + 20
        while not log.said("warning", "did not take") and time.monotonic() < deadline:
            time.sleep(0.05)
        tracemalloc.start()
        for seq in range(201, 1201):
            observer.observe(step(seq, big="x" * 4000))
        gc.collect()  # spans hold reference cycles: count what is kept, not what awaits collection
        before, _ = tracemalloc.get_traced_memory()
        for seq in range(1201, 4201):
            observer.observe(step(seq, big="x" * 4000))
        time.sleep(0.3)
        gc.collect()
        after, _ = tracemalloc.get_traced_memory()
        tracemalloc.stop()
    finally:
        observer.close()
    [warning] = log.said("warning", "telemetry:")
    assert "did not take" in warning and "connection refused" in warning and "Runs are not affected" in warning
    assert not log.said("warning", "telemetry library"), log.lines
    # 3000 more spans of ~4 KiB each would be ~12 MiB if they were kept; at most 64 are
    assert after - before < 2**20, f"memory grew by {(after - before) / 2**20:.1f} MiB while the collector was down"


def test_a_collector_that_recovers_is_used_again_and_says_what_was_lost() -> None:
    log = Lines()
    receiver = Receiver(status=503).start()
    observer = telemetry(receiver.url, log, metrics=False, timeout=0.2)
    try:
        observer.observe(step(1))
        deadline = time.monotonic() + 20
        while not log.said("warning", "did not take") and time.monotonic() < deadline:
            time.sleep(0.05)
        [warning] = log.said("warning", "telemetry:")
        assert "did not take traces (HTTP 503" in warning
        receiver.status = 200
        seq = 1
        while not receiver.spans and time.monotonic() < deadline:  # spans in the wait between tries are dropped
            seq += 1
            observer.observe(step(seq))
            time.sleep(0.1)
        assert receiver.spans and all(span.attributes["corral.step.seq"] > 1 for span in receiver.spans)
        [back] = log.said("info", "takes traces again")
        assert back.startswith(f"telemetry: {receiver.url} takes traces again")
    finally:
        observer.close()
        receiver.stop()
    assert len(log.said("warning", "telemetry:")) == 1
