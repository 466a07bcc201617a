"""``[alerts]`` and ``[metrics]`` in ``corral.toml``: routes, sinks, rules, checks, the dead-man's switch.

Read once at load, like the rest of the config. A sink's own keys are checked later,
when its plugin builds it (:func:`corral.alerts.routing.build_sinks`, run by ``corral
check`` and at daemon start), because a sink type may come from a plugin. Keys ending
in ``_env`` name an environment variable holding the value (``url_env =
"SLACK_WEBHOOK_URL"``), so secrets stay out of the file; the value is read here into a
:class:`~corral.secrets.Secret` named after the variable, which never shows itself.
"""

from __future__ import annotations

import difflib
import ipaddress
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from corral.alerts.alert import Severity
from corral.config import ENV_NAME, parse_duration
from corral.secrets import Secret

SEVERITIES = tuple(s.value for s in Severity)
LOG_SINK = "log"
"""The always-on sink: every alert is written to the daemon's log whatever the routes say."""

_SINK_KEYS = ("type", "escalate_to", "retries", "retry_wait", "retry_max_wait")
_ALERT_KEYS = (
    "route",
    "agents",
    "sinks",
    "repeat_after",
    "crash_loop",
    "crash_loop_pause",
    "stuck_after",
    "check_interval",
    "expect",
    "deadman",
)


@dataclass(frozen=True)
class SinkConfig:
    """One ``[alerts.sinks.NAME]``: the sink's type, how hard to try, where to escalate, its own settings."""

    name: str
    type: str
    settings: Mapping[str, object]
    """The table without corral's keys, ``*_env`` keys already replaced by their Secret values."""
    escalate_to: str | None = None
    retries: int = 5
    retry_wait: float = 2.0
    retry_max_wait: float = 300.0


@dataclass(frozen=True)
class Expectation:
    """``[alerts.expect.AGENT]``: what a healthy agent does, checked on a timer."""

    agent: str
    succeeded_within: float
    min_steps: int = 0
    """A success with fewer journaled steps does not count: a run that silently did nothing."""
    require_result: bool = False
    """A success that returned nothing (``None``) does not count."""


@dataclass(frozen=True)
class Deadman:
    """``[alerts.deadman]``: a URL the daemon pings while it is alive (healthchecks.io style)."""

    url: Secret
    every: float = 300.0
    timeout: float = 10.0


@dataclass(frozen=True)
class MetricsConfig:
    """``[metrics]``: the Prometheus endpoint, off unless ``port`` is given."""

    host: str = "127.0.0.1"
    port: int | None = None


@dataclass(frozen=True)
class AlertsConfig:
    """Everything under ``[alerts]`` plus ``[metrics]``, validated."""

    route: Mapping[str, tuple[str, ...]] = field(default_factory=dict)
    """severity -> sink names; a severity not listed goes to the log only."""
    agents: Mapping[str, Mapping[str, tuple[str, ...]]] = field(default_factory=dict)
    """agent -> severity -> sink names, replacing ``route`` for that agent's alerts."""
    sinks: Mapping[str, SinkConfig] = field(default_factory=dict)
    repeat_after: float | None = 3600.0
    """An open alert's key raised again within this is counted, not sent; None: not until resolved."""
    crash_loop: int = 3
    crash_loop_pause: float | None = None
    stuck_after: float | None = None
    check_interval: float = 30.0
    expect: Mapping[str, Expectation] = field(default_factory=dict)
    deadman: Deadman | None = None
    metrics: MetricsConfig = MetricsConfig()

    def route_for(self, severity: Severity, agent: str | None) -> tuple[str, ...]:
        """The sinks an alert goes to besides the log."""
        if agent is not None and agent in self.agents and severity.value in self.agents[agent]:
            return self.agents[agent][severity.value]
        return self.route.get(severity.value, ())


class _Problems:
    def __init__(self, where: str) -> None:
        self.where = where
        self.items: list[str] = []

    def fail(self, table: str, key: str | None, message: str) -> None:
        at = f"[{table}] {key}" if key else f"[{table}]"
        self.items.append(f"{self.where}: {at}: {message}")

    def table(self, table: str, value: object) -> Mapping[str, Any]:
        if value is None:
            return {}
        if not isinstance(value, Mapping):
            self.fail(table, None, "must be a table")
            return {}
        return value

    def unknown(self, table: str, data: Mapping[str, Any], known: tuple[str, ...]) -> None:
        for key in data:
            if key not in known:
                near = difflib.get_close_matches(str(key), known, n=1)
                hint = f"did you mean {near[0]!r}?" if near else f"known keys: {', '.join(sorted(known))}"
                self.fail(table, str(key), f"unknown key; {hint}")

    def duration(self, table: str, data: Mapping[str, Any], key: str, default: float | None) -> float | None:
        if key not in data or data[key] is False:
            return None if key in data else default
        try:
            seconds = parse_duration(data[key])
        except ValueError as exc:
            self.fail(table, key, str(exc))
            return default
        if seconds <= 0:
            self.fail(table, key, 'must be more than zero; give e.g. "30s", or false to turn it off')
            return default
        return seconds

    def count(self, table: str, data: Mapping[str, Any], key: str, default: int, *, zero: bool = False) -> int:
        value = data.get(key, default)
        if value is False and zero:
            return 0
        if isinstance(value, bool) or not isinstance(value, int) or value < (0 if zero else 1):
            what = "a whole number, 0 or false to turn it off" if zero else "a positive whole number"
            self.fail(table, key, f"{value!r} is not {what}")
            return default
        return value

    def env_secret(self, table: str, key: str, name: object, environ: Mapping[str, str]) -> Secret | None:
        if not isinstance(name, str) or not ENV_NAME.match(name):
            self.fail(table, key, f'{name!r} is not an environment variable name; write {key} = "MY_VARIABLE"')
            return None
        value = environ.get(name)
        if not value:
            self.fail(table, key, f"{name} is not set in corral's environment; set it where corral runs")
            return None
        return Secret(value, name)


def _sink_names(p: _Problems, table: str, key: str, value: object, sinks: Mapping[str, object]) -> tuple[str, ...]:
    if isinstance(value, str):
        value = [value]
    if not isinstance(value, list) or not all(isinstance(v, str) and v for v in value):
        p.fail(table, key, f'{value!r} is not a list of sink names; write {key} = ["ops-mail"]')
        return ()
    for name in value:
        if name != LOG_SINK and name not in sinks:
            known = ", ".join(sorted(n for n in sinks if n != LOG_SINK)) or "none yet"
            p.fail(table, key, f"{name!r} is not an [alerts.sinks.NAME] table (known: {known}); add it or fix the name")
    return tuple(v for v in value if v != LOG_SINK)


def _routes(
    p: _Problems, table: str, data: Mapping[str, Any], sinks: Mapping[str, object]
) -> dict[str, tuple[str, ...]]:
    p.unknown(table, data, SEVERITIES)
    return {sev: _sink_names(p, table, sev, data[sev], sinks) for sev in SEVERITIES if sev in data}


def _sink(p: _Problems, name: str, data: Mapping[str, Any], environ: Mapping[str, str]) -> SinkConfig | None:
    table = f"alerts.sinks.{name}"
    kind = data.get("type")
    if not isinstance(kind, str) or not kind:
        p.fail(table, "type", 'is required: the sink type, e.g. type = "webhook" (email, ntfy, command, desktop, ...)')
        return None
    if kind == LOG_SINK:
        p.fail(table, "type", '"log" is always on and needs no table; remove this one')
        return None
    settings: dict[str, object] = {}
    for key, value in data.items():
        if key in _SINK_KEYS:
            continue
        if key.endswith("_env"):
            base = key[: -len("_env")]
            if base in data:
                p.fail(table, key, f"give {base} or {key}, not both")
                continue
            secret = p.env_secret(table, key, value, environ)
            if secret is not None:
                settings[base] = secret
            continue
        settings[key] = value
    escalate = data.get("escalate_to")
    if escalate is not None and (not isinstance(escalate, str) or not escalate):
        p.fail(table, "escalate_to", f"{escalate!r} is not a sink name")
        escalate = None
    return SinkConfig(
        name=name,
        type=kind,
        settings=settings,
        escalate_to=escalate,
        retries=p.count(table, data, "retries", 5),
        retry_wait=p.duration(table, data, "retry_wait", 2.0) or 2.0,
        retry_max_wait=p.duration(table, data, "retry_max_wait", 300.0) or 300.0,
    )


def _check_escalation(p: _Problems, sinks: Mapping[str, SinkConfig]) -> None:
    for sink in sinks.values():
        seen = [sink.name]
        current = sink
        while current.escalate_to is not None:
            target = current.escalate_to
            if target not in sinks:
                p.fail(f"alerts.sinks.{current.name}", "escalate_to", f"{target!r} is not an [alerts.sinks.NAME] table")
                break
            if target in seen:
                cycle = " -> ".join([*seen, target])
                p.fail(f"alerts.sinks.{sink.name}", "escalate_to", f"escalation goes round in a circle ({cycle})")
                break
            seen.append(target)
            current = sinks[target]


def _expectation(p: _Problems, agent: str, data: Mapping[str, Any], agents: set[str]) -> Expectation | None:
    table = f"alerts.expect.{agent}"
    p.unknown(table, data, ("succeeded_within", "min_steps", "require_result"))
    if agent not in agents:
        p.fail(table, None, f"there is no [agents.{agent}]; expectations are per configured agent")
    within = p.duration(table, data, "succeeded_within", None)
    if within is None:
        p.fail(table, "succeeded_within", 'is required: how often a successful run must happen, e.g. "1d"')
        return None
    require = data.get("require_result", False)
    if not isinstance(require, bool):
        p.fail(table, "require_result", f"{require!r} is not true or false")
        require = False
    return Expectation(agent, within, p.count(table, data, "min_steps", 0, zero=True), require)


def _deadman(p: _Problems, data: Mapping[str, Any], environ: Mapping[str, str]) -> Deadman | None:
    table = "alerts.deadman"
    p.unknown(table, data, ("url", "url_env", "every", "timeout"))
    url: Secret | None = None
    if "url" in data and "url_env" in data:
        p.fail(table, "url_env", "give url or url_env, not both")
    elif "url_env" in data:
        url = p.env_secret(table, "url_env", data["url_env"], environ)
    elif isinstance(data.get("url"), str) and data["url"]:
        url = Secret(data["url"], f"{table}.url")
    else:
        p.fail(table, "url", 'is required: the ping URL, or url_env = "HEALTHCHECK_URL" naming a variable holding it')
    if url is not None and not url.reveal().startswith(("http://", "https://")):
        p.fail(table, "url", "must be an http:// or https:// URL (not shown: it is a secret)")
        url = None
    every = p.duration(table, data, "every", 300.0) or 300.0
    timeout = p.duration(table, data, "timeout", 10.0) or 10.0
    return Deadman(url, every, timeout) if url is not None else None


def _metrics(p: _Problems, data: Mapping[str, Any]) -> MetricsConfig:
    p.unknown("metrics", data, ("host", "port"))
    host = data.get("host", "127.0.0.1")
    try:
        if not isinstance(host, str) or not ipaddress.ip_address(host).is_loopback:
            raise ValueError
    except ValueError:
        p.fail("metrics", "host", f"{host!r} is not a loopback address; metrics are served on 127.0.0.1 or ::1 only")
        host = "127.0.0.1"
    port = data.get("port")
    if port is not None and (isinstance(port, bool) or not isinstance(port, int) or not 0 <= port <= 65535):
        p.fail("metrics", "port", f"{port!r} is not a port number; give 1 to 65535, or 0 for any free port")
        port = None
    return MetricsConfig(str(host), port)


def read_alerts(
    where: str, alerts: object, metrics: object, agents: set[str], environ: Mapping[str, str]
) -> tuple[AlertsConfig, list[str]]:
    """``[alerts]`` and ``[metrics]``, and every problem found (each naming file, table, key and fix)."""
    p = _Problems(where)
    data = p.table("alerts", alerts)
    p.unknown("alerts", data, _ALERT_KEYS)
    sinks: dict[str, SinkConfig] = {}
    for name, table in p.table("alerts.sinks", data.get("sinks")).items():
        if name == LOG_SINK:
            p.fail(f"alerts.sinks.{name}", None, '"log" is always on; give this sink another name')
            continue
        sink = _sink(p, name, p.table(f"alerts.sinks.{name}", table), environ)
        if sink is not None:
            sinks[name] = sink
    _check_escalation(p, sinks)
    raw_sinks = p.table("alerts.sinks", data.get("sinks"))
    route = _routes(p, "alerts.route", p.table("alerts.route", data.get("route")), raw_sinks)
    per_agent: dict[str, dict[str, tuple[str, ...]]] = {}
    for agent, table in p.table("alerts.agents", data.get("agents")).items():
        if agent not in agents:
            p.fail(
                f"alerts.agents.{agent}", None, f"there is no [agents.{agent}]; routes here are per configured agent"
            )
        per_agent[agent] = _routes(p, f"alerts.agents.{agent}", p.table(f"alerts.agents.{agent}", table), raw_sinks)
    expect: dict[str, Expectation] = {}
    for agent, table in p.table("alerts.expect", data.get("expect")).items():
        found = _expectation(p, agent, p.table(f"alerts.expect.{agent}", table), agents)
        if found is not None:
            expect[agent] = found
    config = AlertsConfig(
        route=route,
        agents=per_agent,
        sinks=sinks,
        repeat_after=p.duration("alerts", data, "repeat_after", 3600.0),
        crash_loop=p.count("alerts", data, "crash_loop", 3, zero=True),
        crash_loop_pause=p.duration("alerts", data, "crash_loop_pause", None),
        stuck_after=p.duration("alerts", data, "stuck_after", None),
        check_interval=p.duration("alerts", data, "check_interval", 30.0) or 30.0,
        expect=expect,
        deadman=_deadman(p, p.table("alerts.deadman", data["deadman"]), environ) if "deadman" in data else None,
        metrics=_metrics(p, p.table("metrics", metrics)),
    )
    return config, p.items
