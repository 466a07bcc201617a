"""Reading the scheduling config: ``every``, ``[[agents.NAME.triggers]]``,
``[agents.NAME.schedule]`` and the top-level ``[schedule]``.

Common trigger keys (``type``, ``id``, ``jitter``, ``input``) are checked here, at load;
each kind's own keys are checked by its plugin when the scheduler builds the trigger
(``corral check`` and the daemon's start and reload do that), because a kind may come
from a plugin that the config loader has not loaded.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Mapping
from dataclasses import fields, replace
from typing import Any

from corral.config import AgentConfig, parse_duration
from corral.schedule.settings import (
    MISSED,
    NO_PROGRESS_ACTIONS,
    OVERLAP,
    SchedulePolicy,
    ScheduleSettings,
    TriggerConfig,
)

TRIGGER_KEYS = ("type", "id", "jitter", "input")
"""Keys corral reads from every trigger table; the rest belong to the trigger's kind."""


def schedule_key(agent: str, kind: str, settings: Mapping[str, Any], explicit: str | None = None) -> str:
    """A schedule's identity: ``agent:id`` when the table names one, else a hash of what decides
    *when* it fires (its kind and settings; not ``input`` or ``jitter``)."""
    if explicit:
        return f"{agent}:{explicit}"
    canonical = json.dumps({"kind": kind, "settings": settings}, sort_keys=True, default=str)
    return f"{agent}:{kind}:{hashlib.sha256(canonical.encode()).hexdigest()[:12]}"


def _natural(value: object, *, allow_zero: bool = False) -> int:
    if isinstance(value, bool) or not isinstance(value, int) or value < (0 if allow_zero else 1):
        raise ValueError(f"{value!r} is not a {'non-negative' if allow_zero else 'positive'} integer")
    return value


def _read_policy(where: str, data: object) -> tuple[SchedulePolicy, list[str]]:
    if data is None:
        return SchedulePolicy(), []
    if not isinstance(data, dict):
        return SchedulePolicy(), [f"{where}: must be a table (overlap, max_queued, max_running, missed, ...)"]
    problems: list[str] = []
    known = [f.name for f in fields(SchedulePolicy)]
    for key in data:
        if key not in known:
            problems.append(f"{where} {key}: unknown key; known keys: {', '.join(known)}")
    choices = {"overlap": OVERLAP, "missed": MISSED, "no_progress_action": NO_PROGRESS_ACTIONS}
    values: dict[str, Any] = {}
    for key in known:
        if key not in data:
            continue
        value = data[key]
        if key in choices:
            if value not in choices[key]:
                problems.append(f"{where} {key}: {value!r} is not one of {', '.join(map(repr, choices[key]))}")
                continue
            values[key] = value
        else:
            try:
                values[key] = _natural(value, allow_zero=key == "no_progress_runs")
            except ValueError as exc:
                problems.append(f"{where} {key}: {exc}")
    if values.get("slow_factor") == 1:
        problems.append(f"{where} slow_factor: 1 would not slow anything; give 2 or more")
    return SchedulePolicy(**values), problems


def _read_triggers(where: str, agent: AgentConfig, data: object) -> tuple[tuple[TriggerConfig, ...], list[str]]:
    problems: list[str] = []
    triggers: list[TriggerConfig] = []
    if agent.every is not None:
        settings = {"every": agent.every}
        key = schedule_key(agent.name, "interval", settings)
        triggers.append(TriggerConfig(agent.name, "interval", key, f"{where}] every", settings))
    if data is None:
        data = []
    if not isinstance(data, list):
        fix = f"must be a list of tables, written [[agents.{agent.name}.triggers]]"
        return tuple(triggers), [f"{where}] triggers: {fix}"]
    for index, table in enumerate(data):
        section = f"{where}.triggers.{index}]"
        if not isinstance(table, dict):
            problems.append(f'{section}: must be a table with a type, e.g. type = "cron"')
            continue
        kind = table.get("type")
        if not isinstance(kind, str) or not kind:
            kinds = '"cron", "interval", "once", "file", "webhook" or a plugin\'s kind'
            problems.append(f"{section} type: is required: {kinds}")
            continue
        explicit = table.get("id")
        if explicit is not None and (not isinstance(explicit, str) or not explicit.strip()):
            problems.append(f"{section} id: must be a non-empty string naming this schedule")
            explicit = None
        jitter = 0.0
        if "jitter" in table:
            try:
                jitter = parse_duration(table["jitter"])
            except ValueError as exc:
                problems.append(f'{section} jitter: {exc}; give the most a fire may be delayed, e.g. "2m"')
        settings = {k: v for k, v in table.items() if k not in TRIGGER_KEYS}
        key = schedule_key(agent.name, kind, settings, explicit)
        if any(t.key == key for t in triggers):
            problems.append(
                f"{section}: the same schedule as an earlier trigger of this agent (or its `every`); "
                'remove one, or give each a distinct id = "..."'
            )
            continue
        triggers.append(
            TriggerConfig(agent.name, kind, key, section, settings, jitter, table.get("input"), "input" in table)
        )
    return tuple(triggers), problems


def _read_settings(where: str, data: object) -> tuple[ScheduleSettings, list[str]]:
    if data is None:
        return ScheduleSettings(), []
    if not isinstance(data, dict):
        return ScheduleSettings(), [f"{where}: must be a table (webhook_port, webhook_max_bytes)"]
    problems = [
        f"{where} {key}: unknown key; known keys: webhook_port, webhook_max_bytes"
        for key in data
        if key not in ("webhook_port", "webhook_max_bytes")
    ]
    values: dict[str, Any] = {}
    port = data.get("webhook_port")
    if port is not None:
        if isinstance(port, bool) or not isinstance(port, int) or not 0 <= port <= 65535:
            problems.append(f"{where} webhook_port: {port!r} is not a TCP port (0-65535; 0 picks a free one)")
        else:
            values["webhook_port"] = port
    if "webhook_max_bytes" in data:
        try:
            values["webhook_max_bytes"] = _natural(data["webhook_max_bytes"])
        except ValueError as exc:
            problems.append(f"{where} webhook_max_bytes: {exc}; give the largest payload accepted, in bytes")
    return ScheduleSettings(**values), problems


def read_schedules(
    where: str, data: Mapping[str, Any], agents: Mapping[str, AgentConfig]
) -> tuple[dict[str, AgentConfig], ScheduleSettings, list[str]]:
    """Each agent's triggers and schedule policy, and the ``[schedule]`` table, with every problem."""
    settings, problems = _read_settings(f"{where}: [schedule]", data.get("schedule"))
    tables = data.get("agents")
    out: dict[str, AgentConfig] = {}
    for name, agent in agents.items():
        table = tables.get(name, {}) if isinstance(tables, dict) else {}
        table = table if isinstance(table, dict) else {}
        triggers, found = _read_triggers(f"{where}: [agents.{name}", agent, table.get("triggers"))
        policy, more = _read_policy(f"{where}: [agents.{name}.schedule]", table.get("schedule"))
        problems += found + more
        if any(t.kind == "webhook" for t in triggers) and settings.webhook_port is None:
            problems.append(
                f"{where}: [agents.{name}] has a webhook trigger but [schedule] webhook_port is not set; "
                "set it to the port to listen on at 127.0.0.1"
            )
        out[name] = replace(agent, triggers=triggers, schedule=policy)
    return out, settings, problems
