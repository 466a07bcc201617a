"""Prometheus metrics on 127.0.0.1, when ``[metrics] port`` is set (docs/alerting.md#metrics).

Counters follow the event stream (:mod:`corral.observe.events`), on the background
thread, never on the store writer's step path. What is a snapshot rather than a count (runs
queued and running, breaker states, each agent's memory and CPU) is read when
Prometheus scrapes, on the HTTP server's thread, from a read transaction and psutil.
"""

from __future__ import annotations

import threading
from collections.abc import Callable, Iterable, Iterator, Mapping
from decimal import Decimal, InvalidOperation
from typing import TYPE_CHECKING, Any

import psutil
from prometheus_client import CollectorRegistry, Counter, Histogram, start_http_server
from prometheus_client.core import GaugeMetricFamily
from prometheus_client.registry import Collector

from corral.breaker import describe
from corral.config.metrics import MetricsConfig
from corral.observe.events import Event
from corral.states import EventKind, RunState

if TYPE_CHECKING:
    from wsgiref.simple_server import WSGIServer

    from corral.sandbox.processes import Child
    from corral.store import Records, Store

BREAKER_VALUES = {"closed": 0, "half_open": 1, "open": 2}
STEP_BUCKETS = (0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0, 300.0)


class _Snapshot(Collector):
    """Gauges computed at scrape time."""

    def __init__(self, metrics: Metrics) -> None:
        self._metrics = metrics

    def collect(self) -> Iterator[GaugeMetricFamily]:
        metrics = self._metrics
        active = GaugeMetricFamily(
            "corral_runs_active", "Unfinished runs by state (queued is the queue depth)", labels=["state"]
        )
        counts = {"queued": 0, "running": 0, "interrupted": 0, "on_hold": 0}
        with metrics.store.read() as txn:
            for run in metrics.records.active_runs(txn):
                counts[run["state"]] = counts.get(run["state"], 0) + 1
        for state, count in sorted(counts.items()):
            active.add_metric([state], count)
        yield active
        breakers = GaugeMetricFamily(
            "corral_model_breaker_state", "Circuit breaker per model: 0 closed, 1 half-open, 2 open", labels=["model"]
        )
        downstreams = GaugeMetricFamily(
            "corral_tool_breaker_state",
            "Circuit breaker per tool downstream (tool:HOST or tool:PLUGIN, mcp:SERVER): 0 closed, 1 half-open, 2 open",
            labels=["downstream"],
        )
        for name, state in sorted(self._metrics.breakers().items()):
            kind, _ = describe(name)
            if kind == "model":
                breakers.add_metric([name], BREAKER_VALUES.get(state, 0))
            else:
                downstreams.add_metric([name], BREAKER_VALUES.get(state, 0))
        yield breakers
        yield downstreams
        rss = GaugeMetricFamily(
            "corral_agent_rss_bytes", "Resident memory of each agent's running processes", labels=["agent"]
        )
        cpu = GaugeMetricFamily(
            "corral_agent_cpu_seconds", "CPU time used so far by each agent's running processes", labels=["agent"]
        )
        for agent, (memory, seconds) in sorted(self._metrics.usage().items()):
            rss.add_metric([agent], memory)
            cpu.add_metric([agent], seconds)
        yield rss
        yield cpu


class Metrics:
    """An observer of the event stream plus the HTTP endpoint serving its registry."""

    def __init__(
        self,
        config: MetricsConfig,
        store: Store,
        records: Records,
        models: Iterable[str],
        live: Callable[[], Mapping[str, Child]],
        log: Any,
    ) -> None:
        self.config = config
        self.store, self.records = store, records
        self._live = live
        """The running agents' processes by run id."""
        self._log = log
        self.registry = CollectorRegistry()
        self._lock = threading.Lock()
        self._agents: dict[str, str] = {}  # run id -> agent, while its process runs
        self._breakers: dict[str, str] = dict.fromkeys(models, "closed")
        self.runs = Counter("corral_runs", "Runs that ended, by outcome", ["agent", "outcome"], registry=self.registry)
        self.retries = Counter(
            "corral_run_retries", "Attempts that were interrupted and retried", ["agent"], registry=self.registry
        )
        self.steps = Histogram(
            "corral_step_seconds",
            "Time from a step's start to its durable outcome (replayed steps excluded)",
            ["agent", "kind"],
            buckets=STEP_BUCKETS,
            registry=self.registry,
        )
        self.model_calls = Counter(
            "corral_model_calls", "Model calls made, by outcome", ["agent", "model", "ok"], registry=self.registry
        )
        self.tokens = Counter(
            "corral_model_tokens", "Model tokens used", ["agent", "model", "direction"], registry=self.registry
        )
        self.cost = Counter(
            "corral_model_cost_usd", "Model spend in US dollars", ["agent", "model"], registry=self.registry
        )
        self.registry.register(_Snapshot(self))
        self._server: WSGIServer | None = None
        self._thread: threading.Thread | None = None
        self.port: int | None = None

    def start(self) -> None:
        """Serve ``/metrics`` on the configured loopback address."""
        assert self.config.port is not None
        self._server, self._thread = start_http_server(self.config.port, addr=self.config.host, registry=self.registry)
        self.port = self._server.server_port
        self._log.info("metrics endpoint started", url=f"http://{self.config.host}:{self.port}/metrics")

    def stop(self) -> None:
        if self._server is not None:
            self._server.shutdown()
            self._server.server_close()
            self._server = None

    def breakers(self) -> dict[str, str]:
        with self._lock:
            return dict(self._breakers)

    def usage(self) -> dict[str, tuple[int, float]]:
        """agent -> (RSS bytes, CPU seconds) summed over its running processes and their children."""
        with self._lock:
            agents = dict(self._agents)
        totals: dict[str, tuple[int, float]] = {}
        for run_id, child in list(self._live().items()):
            agent = agents.get(run_id)
            if agent is None:
                continue
            memory, seconds = totals.get(agent, (0, 0.0))
            try:
                root = psutil.Process(child.pid)
                procs = [root, *root.children(recursive=True)]
            except psutil.Error:
                continue
            for proc in procs:
                try:
                    with proc.oneshot():
                        memory += proc.memory_info().rss
                        times = proc.cpu_times()
                        seconds += times.user + times.system
                except psutil.Error:
                    continue
            totals[agent] = (memory, seconds)
        return totals

    # ------------------------------------------------------------------ events (background thread)

    def observe(self, event: Event) -> None:
        """The event stream's subscriber."""
        run = event.run
        if event.kind is EventKind.STEP_DONE and not event.replayed:
            self._step(run, event.step)
        elif event.kind is EventKind.BREAKER_CHANGED:
            with self._lock:
                self._breakers[event.data.get("downstream") or event.data["model"]] = event.data["new"]
        elif event.kind is EventKind.RUN_CHANGED and run["state"] == RunState.RUNNING.value:
            with self._lock:
                self._agents[run["id"]] = run["agent"]
        elif event.ended:
            self._ended(run)

    def _step(self, run: dict[str, Any], step: dict[str, Any]) -> None:
        agent, kind = run["agent"], str(step.get("kind"))
        if step.get("started") and step.get("ended"):
            self.steps.labels(agent, kind).observe(max(0.0, step["ended"] - step["started"]))
        if kind != "model":
            return
        model = str(step.get("model") or step.get("name"))
        self.model_calls.labels(agent, model, "true" if step.get("ok") else "false").inc()
        usage = step.get("usage") or {}
        for direction in ("input", "output"):
            tokens = usage.get(f"{direction}_tokens")
            if isinstance(tokens, int) and tokens > 0:
                self.tokens.labels(agent, model, direction).inc(tokens)
        try:
            cost = float(Decimal(str(step["cost_usd"]))) if step.get("cost_usd") is not None else 0.0
        except InvalidOperation:
            cost = 0.0
        if cost > 0:
            self.cost.labels(agent, model).inc(cost)

    def _ended(self, run: dict[str, Any]) -> None:
        with self._lock:
            self._agents.pop(run["id"], None)
        if run["state"] == "interrupted":
            self.retries.labels(run["agent"]).inc()
        else:
            self.runs.labels(run["agent"], run["state"]).inc()
