"""The metrics corral exports: the GenAI client metrics, and its own run and step counters.

- ``gen_ai.client.token.usage`` (histogram, ``{token}``): the input and output tokens of
  each model call, by ``gen_ai.token.type``;
- ``gen_ai.client.operation.duration`` (histogram, ``s``): each model call, start to
  answer (retries and breaker waits included), failures with ``error.type``;
- ``corral.runs`` (counter): runs that ended, stopped for a human or were interrupted,
  by agent and state;
- ``corral.steps`` (observable counter, counted here and read at each export: it is the
  one instrument every step touches): journaled steps by agent, kind, outcome and whether
  they were replayed;
- ``corral.model.cost`` (counter, ``{USD}``): model spend.

A replayed step counts in ``corral.steps`` only: its call was measured when it was made.
Attribute sets are few (agents x models x outcomes), so the SDK's aggregation memory is
bounded by the config, not by traffic.
"""

from __future__ import annotations

import threading
from collections import Counter
from collections.abc import Iterator, Mapping
from typing import Any

from opentelemetry.metrics import CallbackOptions, Meter, Observation
from opentelemetry.semconv._incubating.attributes import gen_ai_attributes as gen_ai
from opentelemetry.semconv._incubating.metrics import gen_ai_metrics
from opentelemetry.semconv.attributes.error_attributes import ERROR_TYPE

from corral.observe.telemetry.spans import MODEL, RUN_STATE, STEP_KIND, STEP_REPLAYED, cost

TOKEN_BUCKETS = (1, 4, 16, 64, 256, 1024, 4096, 16384, 65536, 262144, 1048576, 4194304, 16777216, 67108864)
"""The conventions' advised boundaries for ``gen_ai.client.token.usage``."""
DURATION_BUCKETS = (0.01, 0.02, 0.04, 0.08, 0.16, 0.32, 0.64, 1.28, 2.56, 5.12, 10.24, 20.48, 40.96, 81.92)
"""The conventions' advised boundaries for ``gen_ai.client.operation.duration``."""
STEP_OK = "corral.step.ok"


class Measures:
    """The instruments, and what each event adds to them."""

    def __init__(self, meter: Meter) -> None:
        self.tokens = meter.create_histogram(
            gen_ai_metrics.GEN_AI_CLIENT_TOKEN_USAGE,
            unit="{token}",
            description="Number of input and output tokens used.",
            explicit_bucket_boundaries_advisory=TOKEN_BUCKETS,
        )
        self.duration = meter.create_histogram(
            gen_ai_metrics.GEN_AI_CLIENT_OPERATION_DURATION,
            unit="s",
            description="GenAI operation duration.",
            explicit_bucket_boundaries_advisory=DURATION_BUCKETS,
        )
        self.runs = meter.create_counter(
            "corral.runs", unit="{run}", description="Runs that ended, stopped for a human or were interrupted."
        )
        self._steps: Counter[tuple[str, str, bool, bool]] = Counter()
        self._lock = threading.Lock()
        meter.create_observable_counter(
            "corral.steps", callbacks=[self._step_totals], unit="{step}", description="Journaled steps."
        )
        self.cost = meter.create_counter("corral.model.cost", unit="{USD}", description="Model spend in US dollars.")

    def _step_totals(self, options: CallbackOptions) -> Iterator[Observation]:
        with self._lock:
            totals = dict(self._steps)
        for (agent, kind, ok, replayed), count in totals.items():
            yield Observation(
                count, {gen_ai.GEN_AI_AGENT_NAME: agent, STEP_KIND: kind, STEP_OK: ok, STEP_REPLAYED: replayed}
            )

    def run(self, run: Mapping[str, Any]) -> None:
        self.runs.add(1, {gen_ai.GEN_AI_AGENT_NAME: run["agent"], RUN_STATE: run["state"]})

    def step(
        self, run: Mapping[str, Any], entry: Mapping[str, Any], replayed: bool, model: tuple[str | None, str]
    ) -> None:
        """One journaled step; ``model`` is a model step's (provider, model id asked for)."""
        agent, kind, ok = run["agent"], str(entry["kind"]), bool(entry.get("ok"))
        with self._lock:  # a count here, the data point at export: the SDK's add() costs 20x more a step
            self._steps[agent, kind, ok, replayed] += 1
        if kind != "model" or replayed:
            return
        provider, asked = model
        common: dict[str, Any] = {
            gen_ai.GEN_AI_OPERATION_NAME: gen_ai.GenAiOperationNameValues.CHAT.value,
            gen_ai.GEN_AI_REQUEST_MODEL: asked,
        }
        if provider:
            common[gen_ai.GEN_AI_PROVIDER_NAME] = provider
        value = entry.get("value") if ok else None
        if isinstance(value, Mapping) and value.get("model"):
            common[gen_ai.GEN_AI_RESPONSE_MODEL] = str(value["model"])
        timed = dict(common)
        if not ok:
            timed[ERROR_TYPE] = str((entry.get("error") or {}).get("kind") or "error")
        if entry.get("started") and entry.get("ended"):
            self.duration.record(max(0.0, entry["ended"] - entry["started"]), timed)
        usage = value.get("usage") if isinstance(value, Mapping) else None
        for key, token_type in (("input_tokens", "input"), ("output_tokens", "output")):
            tokens = (usage or {}).get(key)
            if isinstance(tokens, int):
                self.tokens.record(tokens, {**common, gen_ai.GEN_AI_TOKEN_TYPE: token_type})
        priced = cost(entry.get("cost_usd"))
        if priced:
            self.cost.add(priced, {gen_ai.GEN_AI_AGENT_NAME: agent, MODEL: str(entry.get("model") or entry["name"])})
