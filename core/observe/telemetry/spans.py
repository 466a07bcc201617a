"""The spans of a run, built from its events after the fact, with the ids it was given.

A span is made when its event is delivered (on the background thread), from what the
journal recorded: a step's start and end times, model, usage, cost, outcome. Its ids are
planned, not drawn (:mod:`corral.traceids`): the trace id is the run's
``trace_id``, a step's span id is the one its ``traceparent`` carried, and the run's own
span, exported when the run ends, has the id its steps already named as their parent.

The tree of one run (docs/telemetry.md)::

    invoke_agent AGENT                     the run: first start to end, every attempt
      state set                            a ctx.state change
      chat MODEL                           a model call (CLIENT)
      execute_tool TOOL                    a tool call
      chat MODEL (corral.step.replayed)    answered from the journal on resume

A run retried after it failed (``corral retry``) gets a second ``invoke_agent`` span,
a child of the first, over the steps of its new life.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Mapping
from decimal import Decimal, InvalidOperation
from typing import Any

from opentelemetry.context import Context
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.id_generator import IdGenerator, RandomIdGenerator
from opentelemetry.semconv._incubating.attributes import gen_ai_attributes as gen_ai
from opentelemetry.semconv.attributes.error_attributes import ERROR_TYPE
from opentelemetry.trace import (
    NonRecordingSpan,
    SpanContext,
    SpanKind,
    Status,
    StatusCode,
    TraceFlags,
    set_span_in_context,
)

from corral import traceids
from corral.observe.telemetry import content
from corral.states import RunState

Redact = Callable[[Any], Any]
Attributes = dict[str, Any]

ERROR_CHARS = 1024
"""The longest span status description (an error message) exported."""
FAILED = frozenset({RunState.FAILED, RunState.ABANDONED})
"""Run states exported as an error status (a cancelled run was stopped, it did not fail)."""

RUN_ID, RUN_STATE, RUN_TRIGGER, RUN_ATTEMPTS = (
    "corral.run.id",
    "corral.run.state",
    "corral.run.trigger",
    "corral.run.attempts",
)
RUN_INPUT, RUN_RESULT = "corral.run.input", "corral.run.result"
STEP_SEQ, STEP_KIND, STEP_ATTEMPT, STEP_REPLAYED = (
    "corral.step.seq",
    "corral.step.kind",
    "corral.attempt",
    "corral.step.replayed",
)
STEP_EXECUTIONS, COST, MODEL = "corral.step.executions", "corral.cost_usd", "corral.model"
STATE_KEY, STATE_VALUE = "corral.state.key", "corral.state.value"
GUARDRAIL = "corral.guardrail"


class PlannedIds(IdGenerator):
    """Span and trace ids chosen by the caller just before it starts a span (:meth:`plan`);
    random ones otherwise. One per tracer provider, used from one thread at a time."""

    def __init__(self) -> None:
        self._planned = threading.local()
        self._random = RandomIdGenerator()

    def plan(self, trace_id: str, span_id: str) -> None:
        self._planned.trace, self._planned.span = int(trace_id, 16), int(span_id, 16)

    def generate_span_id(self) -> int:
        planned = getattr(self._planned, "span", None)
        self._planned.span = None
        return planned if planned is not None else self._random.generate_span_id()

    def generate_trace_id(self) -> int:
        planned = getattr(self._planned, "trace", None)
        self._planned.trace = None
        return planned if planned is not None else self._random.generate_trace_id()


def _ns(seconds: float) -> int:
    return int(seconds * 1e9)


def cost(value: object) -> float | None:
    """A journaled cost (a decimal string) as a float; None when not priced."""
    try:
        return float(Decimal(str(value))) if value is not None else None
    except InvalidOperation:
        return None


class Spans:
    """Builds a run's spans from its events into ``provider`` (whose id generator is ``ids``)."""

    def __init__(
        self,
        provider: TracerProvider,
        ids: PlannedIds,
        *,
        redact: Redact,
        capture: bool,
        endpoint_of: Callable[[str], tuple[str | None, str | None]],
        version: str,
    ) -> None:
        self._tracer = provider.get_tracer("corral", version)
        self._ids = ids
        self._redact = redact
        self._capture = capture
        self._endpoint_of = endpoint_of
        """(provider, the provider's model id) of a configured model, for a call that failed
        before the journal learned them."""

    # ------------------------------------------------------------------ the run

    def run(self, run: Mapping[str, Any]) -> None:
        """The ``invoke_agent`` span of a run that has ended (of its latest life, if retried)."""
        trace_id, life = run["trace_id"], run.get("retried")
        state = RunState(run["state"])
        attributes: Attributes = {
            gen_ai.GEN_AI_OPERATION_NAME: gen_ai.GenAiOperationNameValues.INVOKE_AGENT.value,
            gen_ai.GEN_AI_AGENT_NAME: run["agent"],
            RUN_ID: run["id"],
            RUN_STATE: state.value,
            RUN_TRIGGER: str(run.get("trigger", "")),
            RUN_ATTEMPTS: int(run.get("attempt", 0)),
        }
        spent = run.get("spent") or {}
        if spent.get("cost_micro_usd"):
            attributes[COST] = spent["cost_micro_usd"] / 1_000_000
        error = run.get("error") or {}
        status = None
        if state is not RunState.SUCCEEDED and error.get("kind"):
            attributes[ERROR_TYPE] = str(error["kind"])
            if state in FAILED:
                status = str(error.get("message") or error["kind"])
        if self._capture:
            attributes[RUN_INPUT] = content.text(run.get("input"), self._redact)
            if state is RunState.SUCCEEDED:
                attributes[RUN_RESULT] = content.text(run.get("result"), self._redact)
        start = life if life is not None else run.get("started", run.get("created", time.time()))
        self._span(
            f"invoke_agent {run['agent']}",
            SpanKind.INTERNAL,
            trace_id,
            traceids.run_span(trace_id, life),
            traceids.run_span(trace_id) if life is not None else None,
            start,
            run.get("ended") or time.time(),
            attributes,
            status,
        )

    # ------------------------------------------------------------------ steps

    def step(self, run: Mapping[str, Any], entry: Mapping[str, Any], replayed: bool, at: float | None) -> None:
        """The span of one journaled step: executed (its own times), or ``replayed`` (an
        instant, at ``at``, when the journal answered it on resume)."""
        trace_id, seq = run["trace_id"], entry["seq"]
        attributes: Attributes = {STEP_SEQ: seq, STEP_KIND: entry["kind"], RUN_ID: run["id"]}
        if replayed:
            span_id = traceids.replay_span(trace_id, seq, int(run.get("attempt", 0)))
            attributes[STEP_REPLAYED] = True
            attributes[STEP_ATTEMPT] = int(run.get("attempt", 0))
            start = end = at if at is not None else time.time()
        else:
            span_id = traceids.step_span(trace_id, seq, int(entry.get("executions", 0)))
            attributes[STEP_ATTEMPT] = int(entry.get("attempt", 0))
            attributes[STEP_EXECUTIONS] = int(entry.get("executions", 0))
            start = entry.get("started") or time.time()
            end = entry.get("ended") or start
        kind = entry["kind"]
        if kind == "model":
            name, span_kind = self._chat(entry, replayed, attributes), SpanKind.CLIENT
        elif kind == "tool":
            name, span_kind = self._tool(entry, attributes), SpanKind.INTERNAL
        else:
            name, span_kind = self._state(entry, attributes), SpanKind.INTERNAL
        status = None
        if not entry.get("ok"):
            error = entry.get("error") or {}
            attributes[ERROR_TYPE] = str(error.get("kind") or error.get("type") or "error")
            status = str(error.get("message") or attributes[ERROR_TYPE])
            if entry.get("guardrail"):
                attributes[GUARDRAIL] = str(entry["guardrail"].get("guardrail", ""))
        parent = traceids.run_span(trace_id, run.get("retried"))
        self._span(name, span_kind, trace_id, span_id, parent, start, end, attributes, status)

    def model_names(self, entry: Mapping[str, Any]) -> tuple[str | None, str]:
        """(provider, the model id asked for) of a model step: as journaled, else as configured."""
        provider, asked = entry.get("provider"), entry.get("request_model")
        if provider is None or asked is None:
            configured = self._endpoint_of(str(entry.get("model") or entry.get("name") or ""))
            provider, asked = provider or configured[0], asked or configured[1]
        return provider, str(asked or entry.get("model") or entry.get("name") or "unknown")

    def _chat(self, entry: Mapping[str, Any], replayed: bool, attributes: Attributes) -> str:
        provider, asked = self.model_names(entry)
        attributes[gen_ai.GEN_AI_OPERATION_NAME] = gen_ai.GenAiOperationNameValues.CHAT.value
        attributes[gen_ai.GEN_AI_REQUEST_MODEL] = asked
        if provider:
            attributes[gen_ai.GEN_AI_PROVIDER_NAME] = provider
        if entry.get("model") or entry.get("name"):
            attributes[MODEL] = str(entry.get("model") or entry.get("name"))
        args = entry.get("args") or {}
        options = args.get("options") or {}
        for key, attribute in (
            ("max_tokens", gen_ai.GEN_AI_REQUEST_MAX_TOKENS),
            ("temperature", gen_ai.GEN_AI_REQUEST_TEMPERATURE),
            ("top_p", gen_ai.GEN_AI_REQUEST_TOP_P),
        ):
            if options.get(key) is not None:
                attributes[attribute] = options[key]
        if options.get("stop"):
            attributes[gen_ai.GEN_AI_REQUEST_STOP_SEQUENCES] = [str(s) for s in options["stop"]]
        value = entry.get("value") if entry.get("ok") else None
        if isinstance(value, Mapping):
            if value.get("model"):
                attributes[gen_ai.GEN_AI_RESPONSE_MODEL] = str(value["model"])
            if value.get("finish_reason"):
                attributes[gen_ai.GEN_AI_RESPONSE_FINISH_REASONS] = [str(value["finish_reason"])]
            usage = value.get("usage") or {}
            if not replayed:  # a replay cost nothing: its tokens were counted by the call itself
                for key, attribute in (
                    ("input_tokens", gen_ai.GEN_AI_USAGE_INPUT_TOKENS),
                    ("output_tokens", gen_ai.GEN_AI_USAGE_OUTPUT_TOKENS),
                    ("cache_read_tokens", gen_ai.GEN_AI_USAGE_CACHE_READ_INPUT_TOKENS),
                    ("cache_write_tokens", gen_ai.GEN_AI_USAGE_CACHE_CREATION_INPUT_TOKENS),
                ):
                    if isinstance(usage.get(key), int):
                        attributes[attribute] = usage[key]
                priced = cost(entry.get("cost_usd"))
                if priced is not None:
                    attributes[COST] = priced
        if self._capture:
            attributes.update(content.chat(args, value, self._redact))
        return f"chat {asked}"

    def _tool(self, entry: Mapping[str, Any], attributes: Attributes) -> str:
        name = str(entry["name"])
        attributes[gen_ai.GEN_AI_OPERATION_NAME] = gen_ai.GenAiOperationNameValues.EXECUTE_TOOL.value
        attributes[gen_ai.GEN_AI_TOOL_NAME] = name
        attributes[gen_ai.GEN_AI_TOOL_TYPE] = "function"
        if entry.get("key"):
            attributes[gen_ai.GEN_AI_TOOL_CALL_ID] = str(entry["key"])
        if self._capture:
            attributes[gen_ai.GEN_AI_TOOL_CALL_ARGUMENTS] = content.text(entry.get("args"), self._redact)
            if entry.get("ok"):
                attributes[gen_ai.GEN_AI_TOOL_CALL_RESULT] = content.text(entry.get("value"), self._redact)
        return f"execute_tool {name}"

    def _state(self, entry: Mapping[str, Any], attributes: Attributes) -> str:
        args = entry.get("args") or {}
        attributes[STATE_KEY] = str(self._redact(str(args.get("key", ""))))
        if self._capture and entry["name"] == "set":
            attributes[STATE_VALUE] = content.text(args.get("value"), self._redact)
        return f"state {entry['name']}"

    # ------------------------------------------------------------------ one span

    def _span(
        self,
        name: str,
        kind: SpanKind,
        trace_id: str,
        span_id: str,
        parent: str | None,
        start: float,
        end: float,
        attributes: Attributes,
        error: str | None,
    ) -> None:
        context = Context()
        if parent is not None:
            above = SpanContext(int(trace_id, 16), int(parent, 16), False, TraceFlags(TraceFlags.SAMPLED))
            context = set_span_in_context(NonRecordingSpan(above), context)
        self._ids.plan(trace_id, span_id)
        span = self._tracer.start_span(name, context, kind, attributes, start_time=_ns(start))
        if error is not None:
            span.set_status(Status(StatusCode.ERROR, str(self._redact(error))[:ERROR_CHARS]))
        span.end(end_time=_ns(max(end, start)))
