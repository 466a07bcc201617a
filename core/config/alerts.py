"""``[alerts]``: routes, sinks, rules, checks, the dead-man's switch (docs/alerting.md).

Read once at load, like the rest of the config. A sink's own keys are checked later,
when its plugin builds it (:func:`corral.alerts.routing.build_sinks`, run by ``corral
check`` and at daemon start), because a sink type may come from a plugin. Keys ending
in ``_env`` name an environment variable holding the value (``url_env =
"SLACK_WEBHOOK_URL"``), so secrets stay out of the file; the value is read here into a
:class:`~corral.secrets.Secret` named after the variable, which never shows itself.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field, fields
from typing import Annotated, Any

from corral.alerts.alert import Severity
from corral.config.kinds import (
    Count,
    EnvName,
    Flag,
    Key,
    Names,
    PositiveInt,
    PositiveSeconds,
    PositiveSecondsOrOff,
    Rule,
    Text,
    Wrong,
    read,
)
from corral.config.metrics import MetricsConfig
from corral.config.problems import Problems, table_keys
from corral.secrets import Secret

SEVERITIES = tuple(s.value for s in Severity)
LOG_SINK = "log"
"""The always-on sink: every alert is written to the daemon's log whatever the routes say."""


def _false_is_zero(value: object) -> object:
    return 0 if value is False else value


OffCount = Annotated[Count, Rule("{value!r} is not a whole number, 0 or false to turn it off", parse=_false_is_zero)]
_OFF = 'give e.g. "30s", or false to turn it off'


@dataclass(frozen=True)
class SinkConfig:
    """One ``[alerts.sinks.NAME]``: the sink's type, how hard to try, where to escalate, its own settings."""

    name: str
    type: Annotated[
        Text, Key('the sink type, e.g. type = "webhook" (email, ntfy, command, desktop, ...)', required=True)
    ]
    settings: Mapping[str, object]
    """The table without corral's keys, ``*_env`` keys already replaced by their Secret values."""
    escalate_to: Annotated[Text, Rule("{value!r} is not a sink name"), Key()] | None = None
    retries: Annotated[PositiveInt, Key("give how many times an alert is tried")] = 5
    retry_wait: Annotated[PositiveSeconds, Key('give the first wait between tries, e.g. "2s"')] = 2.0
    retry_max_wait: Annotated[PositiveSeconds, Key('give the longest wait between tries, e.g. "5m"')] = 300.0


@dataclass(frozen=True)
class Expectation:
    """``[alerts.expect.AGENT]``: what a healthy agent does, checked on a timer."""

    agent: str
    succeeded_within: Annotated[
        PositiveSeconds, Key('how often a successful run must happen, e.g. "1d"', required=True)
    ]
    min_steps: Annotated[OffCount, Key()] = 0
    """A success with fewer journaled steps does not count: a run that silently did nothing."""
    require_result: Annotated[Flag, Key()] = False
    """A success that returned nothing (``None``) does not count."""


@dataclass(frozen=True)
class Deadman:
    """``[alerts.deadman]``: a URL the daemon pings while it is alive (healthchecks.io style)."""

    url: Secret
    every: Annotated[PositiveSeconds, Key('give how often to ping, e.g. "5m"')] = 300.0
    timeout: Annotated[PositiveSeconds, Key('give how long a ping may take, e.g. "10s"')] = 10.0


@dataclass(frozen=True)
class AlertsConfig:
    """Everything under ``[alerts]`` plus ``[metrics]``, validated."""

    route: Mapping[str, tuple[str, ...]] = field(default_factory=dict)
    """severity -> sink names; a severity not listed goes to the log only."""
    agents: Mapping[str, Mapping[str, tuple[str, ...]]] = field(default_factory=dict)
    """agent -> severity -> sink names, replacing ``route`` for that agent's alerts."""
    sinks: Mapping[str, SinkConfig] = field(default_factory=dict)
    repeat_after: Annotated[PositiveSecondsOrOff, Key(_OFF)] = 3600.0
    """An open alert's key raised again within this is counted, not sent; None: not until resolved."""
    crash_loop: Annotated[OffCount, Key()] = 3
    crash_loop_pause: Annotated[PositiveSecondsOrOff, Key(_OFF)] = None
    stuck_after: Annotated[PositiveSecondsOrOff, Key(_OFF)] = None
    check_interval: Annotated[PositiveSeconds, Key('give e.g. "30s"')] = 30.0
    expect: Mapping[str, Expectation] = field(default_factory=dict)
    deadman: Deadman | None = None
    metrics: MetricsConfig = MetricsConfig()

    def route_for(self, severity: Severity, agent: str | None) -> tuple[str, ...]:
        """The sinks an alert goes to besides the log."""
        if agent is not None and agent in self.agents and severity.value in self.agents[agent]:
            return self.agents[agent][severity.value]
        return self.route.get(severity.value, ())


def read_alerts(
    p: Problems, data: object, agents: set[str], environ: Mapping[str, str], metrics: MetricsConfig
) -> AlertsConfig:
    """``[alerts]`` for the configured ``agents``; ``*_env`` keys are read from ``environ``."""
    table = p.table("alerts", data)
    p.unknown("alerts", table, [f.name for f in fields(AlertsConfig) if f.name != "metrics"])
    raw_sinks = p.table("alerts.sinks", table.get("sinks"))
    sinks: dict[str, SinkConfig] = {}
    for name, sink_table in raw_sinks.items():
        if name == LOG_SINK:
            p.fail(f"alerts.sinks.{name}", None, '"log" is always on; give this sink another name')
            continue
        sink = _sink(p, name, p.table(f"alerts.sinks.{name}", sink_table), environ)
        if sink is not None:
            sinks[name] = sink
    _check_escalation(p, sinks)
    route = _routes(p, "alerts.route", table.get("route"), raw_sinks)
    per_agent: dict[str, dict[str, tuple[str, ...]]] = {}
    for agent, routes in p.table("alerts.agents", table.get("agents")).items():
        if agent not in agents:
            p.fail(
                f"alerts.agents.{agent}", None, f"there is no [agents.{agent}]; routes here are per configured agent"
            )
        per_agent[agent] = _routes(p, f"alerts.agents.{agent}", routes, raw_sinks)
    expect: dict[str, Expectation] = {}
    for agent, expectation in p.table("alerts.expect", table.get("expect")).items():
        found = _expectation(p, agent, expectation, agents)
        if found is not None:
            expect[agent] = found
    return AlertsConfig(
        route=route,
        agents=per_agent,
        sinks=sinks,
        expect=expect,
        deadman=_deadman(p, table["deadman"], environ) if "deadman" in table else None,
        metrics=metrics,
        **p.keys("alerts", table, AlertsConfig),
    )


_SinkNames = Annotated[Names, Rule("{value!r} is not a list of sink names")]


def _routes(p: Problems, section: str, data: object, sinks: Mapping[str, object]) -> dict[str, tuple[str, ...]]:
    table = p.table(section, data)
    p.unknown(section, table, SEVERITIES)
    routes: dict[str, tuple[str, ...]] = {}
    for severity in SEVERITIES:
        names: tuple[str, ...] = p.value(section, table, severity, _SinkNames, (), f'write {severity} = ["ops-mail"]')
        for name in names:
            if name != LOG_SINK and name not in sinks:
                known = ", ".join(sorted(n for n in sinks if n != LOG_SINK)) or "none yet"
                p.fail(
                    section,
                    severity,
                    f"{name!r} is not an [alerts.sinks.NAME] table (known: {known}); add it or fix the name",
                )
        if severity in table:
            routes[severity] = tuple(name for name in names if name != LOG_SINK)
    return routes


def _sink(p: Problems, name: str, table: Mapping[str, Any], environ: Mapping[str, str]) -> SinkConfig | None:
    section = f"alerts.sinks.{name}"
    values = p.keys(section, table, SinkConfig)
    if "type" not in values:
        return None
    if values["type"] == LOG_SINK:
        p.fail(section, "type", '"log" is always on and needs no table; remove this one')
        return None
    settings: dict[str, object] = {}
    for key, value in table.items():
        if key in table_keys(SinkConfig):
            continue
        if key.endswith("_env"):
            base = key.removesuffix("_env")
            if base in table:
                p.fail(section, key, f"give {base} or {key}, not both")
                continue
            secret = _env_secret(p, section, key, value, environ)
            if secret is not None:
                settings[base] = secret
            continue
        settings[key] = value
    return SinkConfig(name=name, settings=settings, **values)


def _check_escalation(p: Problems, sinks: Mapping[str, SinkConfig]) -> None:
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


def _expectation(p: Problems, agent: str, data: object, agents: set[str]) -> Expectation | None:
    section = f"alerts.expect.{agent}"
    table = p.table(section, data)
    p.unknown(section, table, table_keys(Expectation))
    if agent not in agents:
        p.fail(section, None, f"there is no [agents.{agent}]; expectations are per configured agent")
    values = p.keys(section, table, Expectation)
    if "succeeded_within" not in values:
        return None
    return Expectation(agent, **values)


def _deadman(p: Problems, data: object, environ: Mapping[str, str]) -> Deadman | None:
    section = "alerts.deadman"
    table = p.table(section, data)
    p.unknown(section, table, [*table_keys(Deadman), "url", "url_env"])
    url: Secret | None = None
    if "url" in table and "url_env" in table:
        p.fail(section, "url_env", "give url or url_env, not both")
    elif "url_env" in table:
        url = _env_secret(p, section, "url_env", table["url_env"], environ)
    elif "url" in table:
        try:
            url = Secret(read(table["url"], Text), f"{section}.url")
        except Wrong:
            p.fail(section, "url", "must be a string holding the ping URL (not shown: it is a secret)")
    else:
        p.fail(section, "url", 'is required: the ping URL, or url_env = "HEALTHCHECK_URL" naming a variable holding it')
    if url is not None and not url.reveal().startswith(("http://", "https://")):
        p.fail(section, "url", "must be an http:// or https:// URL (not shown: it is a secret)")
        url = None
    values = p.keys(section, table, Deadman)
    return Deadman(url, **values) if url is not None else None


def _env_secret(p: Problems, section: str, key: str, name: object, environ: Mapping[str, str]) -> Secret | None:
    """The value of the environment variable a ``*_env`` key names, as a Secret."""
    try:
        variable = read(name, EnvName)
    except Wrong:
        p.fail(section, key, f'{name!r} is not an environment variable name; write {key} = "MY_VARIABLE"')
        return None
    value = environ.get(variable)
    if not value:
        p.fail(section, key, f"{variable} is not set in corral's environment; set it where corral runs")
        return None
    return Secret(value, variable)
