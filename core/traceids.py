"""The W3C trace context of a run: its trace id, and the span ids its work gets.

A run's ``trace_id`` (32 hex digits, stored on the run record when it is created) is the
OpenTelemetry trace id of everything it does, so ``corral trace`` and an OTel backend show
the same id. Span ids are derived from the trace id and what the span stands for, never
drawn at random: the daemon's model client puts a model call's span id in the
``traceparent`` header it sends, and the telemetry exporter (:mod:`corral.observe.telemetry`),
which builds the call's ``chat`` span later from the journal on another thread (or in
another process after a restart), derives the same id. The run's root span gets its id
the same way, so spans exported before the run ends already name their parent.

Shared vocabulary, like :mod:`corral.states`: no OpenTelemetry import and nothing else
of corral's, so the run machinery sends the header whether or not telemetry is installed
or on, and imports no observer.
"""

from __future__ import annotations

import hashlib

VERSION = "00"
"""The W3C Trace Context version corral writes."""


def span_id(trace_id: str, *parts: object) -> str:
    """16 hex digits naming one span of the trace ``trace_id``: the same ``parts`` give the
    same id in any process. Never all zeros (an invalid id in W3C Trace Context)."""
    digest = hashlib.blake2b(":".join([trace_id, *map(str, parts)]).encode(), digest_size=8).hexdigest()
    return digest if digest != "0" * 16 else "0" * 15 + "1"


def run_span(trace_id: str, life: float | None = None) -> str:
    """The span of the run itself (``invoke_agent``). ``life`` is the time of the
    ``corral retry`` that started a run's later life, whose own span is a child of the first."""
    return span_id(trace_id, "run") if life is None else span_id(trace_id, "run", life)


def step_span(trace_id: str, seq: int, executions: int) -> str:
    """The span of execution ``executions`` (1, 2, ... as the journal counts them) of step
    ``seq``: a model call made again after a crash is a new call with a new span."""
    return span_id(trace_id, "step", seq, executions)


def replay_span(trace_id: str, seq: int, attempt: int) -> str:
    """The span of step ``seq`` answered from the journal in attempt ``attempt``."""
    return span_id(trace_id, "replay", seq, attempt)


def traceparent(trace_id: str, parent: str, *, sampled: bool) -> str:
    """The ``traceparent`` header value: ``00-<trace id>-<parent span id>-<flags>``;
    ``sampled`` says that corral records the trace (telemetry is exporting)."""
    return f"{VERSION}-{trace_id}-{parent}-{'01' if sampled else '00'}"
