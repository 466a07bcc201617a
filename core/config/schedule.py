"""The scheduling config: ``every``, ``[[agents.NAME.triggers]]``, ``[agents.NAME.schedule]``
and the top-level ``[schedule]``.

Common trigger keys (``type``, ``id``, ``jitter``, ``input``) are checked here, at load;
each kind's own keys are checked by its plugin when the scheduler builds the trigger
(``corral check`` and the daemon's start and reload do that), because a kind may come
from a plugin that the config loader has not loaded.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Annotated, Any, Literal

from corral.config.kinds import AnyPort, Count, Key, PositiveInt, Rule, Seconds, Text
from corral.config.problems import Problems

TRIGGER_KEYS = ("type", "id", "jitter", "input")
"""Keys corral reads from every trigger table; the rest belong to the trigger's kind."""


@dataclass(frozen=True)
class TriggerConfig:
    """One trigger of an agent: a ``[[agents.NAME.triggers]]`` table, or the ``every`` shorthand."""

    agent: str
    kind: str
    key: str
    """Stable identity: the agent, the kind and its timing settings hashed (or the table's ``id``),
    so a reload, restart or upgrade finds the same schedule and its last fire time."""
    section: str
    """Where it was written, for messages: ``corral.toml: [agents.NAME.triggers #1]``."""
    settings: Mapping[str, Any] = field(default_factory=dict)
    """The table without corral's own keys; the trigger's plugin checks them."""
    jitter: float = 0.0
    input: Any = None
    has_input: bool = False
    """Whether the table gives ``input`` (else the agent's own ``input`` is used)."""
    table: str = ""
    """The table its settings are read from: ``agents.NAME.triggers #1`` (``agents.NAME`` for ``every``)."""


class _TriggerKeys:
    """What corral reads of every trigger table (``input`` is any value)."""

    type: Annotated[
        Text, Key('give its kind: "cron", "interval", "once", "file", "webhook" or a plugin\'s', required=True)
    ]
    id: Annotated[Text, Rule("must be a non-empty string naming this schedule"), Key()]
    jitter: Annotated[Seconds, Key('give the most a fire may be delayed, e.g. "2m"')]


@dataclass(frozen=True)
class SchedulePolicy:
    """``[agents.NAME.schedule]``: what happens when triggers meet a busy, idle or downed agent."""

    overlap: Annotated[Literal["skip", "queue", "cancel"], Key()] = "skip"
    """A trigger fires while the agent has ``max_running`` runs going: skip it, queue it, or cancel the oldest."""
    max_queued: Annotated[PositiveInt, Key("give how many runs may wait")] = 10
    """With ``overlap = "queue"``: at most this many runs wait; later fires are skipped."""
    max_running: Annotated[PositiveInt, Key("give how many runs of this agent may run at once")] = 1
    """Runs of this agent at once."""
    missed: Annotated[Literal["skip", "once", "all"], Key()] = "skip"
    """Fire times that passed while the daemon was down: skip them, run once, or run each (up to ``missed_max``)."""
    missed_max: Annotated[PositiveInt, Key("give how many missed fire times may run")] = 10
    no_progress_runs: Annotated[Count, Key("give after how many runs without progress to act, or 0 for never")] = 10
    """After this many scheduled runs in a row that ended the same way with no tool effects, act (0: never)."""
    no_progress_action: Annotated[Literal["slow", "pause"], Key()] = "slow"
    """``slow``: only every ``slow_factor``-th fire runs; ``pause``: the agent is paused."""
    slow_factor: Annotated[PositiveInt, Key("give which fire runs while slowed: 2 for every second one")] = 4


@dataclass(frozen=True)
class ScheduleSettings:
    """The top-level ``[schedule]`` table: daemon-wide trigger settings."""

    webhook_port: Annotated[AnyPort, Key()] | None = None
    """Port of the webhook listener on 127.0.0.1; required when any agent has a webhook trigger."""
    webhook_max_bytes: Annotated[PositiveInt, Key("give the largest payload accepted, in bytes")] = 1 << 20
    """Default payload limit of a webhook trigger (each may set its own ``max_bytes``)."""


def schedule_key(agent: str, kind: str, settings: Mapping[str, Any], explicit: str | None = None) -> str:
    """A schedule's identity: ``agent:id`` when the table names one, else a hash of what decides
    *when* it fires (its kind and settings; not ``input`` or ``jitter``)."""
    if explicit:
        return f"{agent}:{explicit}"
    canonical = json.dumps({"kind": kind, "settings": settings}, sort_keys=True, default=str)
    return f"{agent}:{kind}:{hashlib.sha256(canonical.encode()).hexdigest()[:12]}"


def read_policy(p: Problems, agent: str, data: object) -> SchedulePolicy:
    """One ``[agents.NAME.schedule]`` table (defaults when there is none)."""
    section = f"agents.{agent}.schedule"
    policy = p.read(section, data, SchedulePolicy, shape="a table (overlap, max_queued, max_running, missed, ...)")
    if policy.slow_factor == 1:
        p.fail(section, "slow_factor", "1 would not slow anything; give 2 or more")
    return policy


def read_triggers(p: Problems, agent: str, every: float | None, data: object) -> tuple[TriggerConfig, ...]:
    """An agent's ``every`` and its ``[[agents.NAME.triggers]]`` tables."""
    triggers: list[TriggerConfig] = []
    if every is not None:
        settings = {"every": every}
        key = schedule_key(agent, "interval", settings)
        section = p.at(f"agents.{agent}", "every")
        triggers.append(TriggerConfig(agent, "interval", key, section, settings, table=f"agents.{agent}"))
    if data is None:
        return tuple(triggers)
    if not isinstance(data, list):
        p.fail(f"agents.{agent}", "triggers", f"must be a list of tables, written [[agents.{agent}.triggers]]")
        return tuple(triggers)
    for index, table in enumerate(data):
        section = f"agents.{agent}.triggers #{index + 1}"  # counted as a person counts the [[...]] tables
        if not isinstance(table, dict):
            p.fail(section, None, 'must be a table with a type, e.g. type = "cron"')
            continue
        read = p.keys(section, table, _TriggerKeys)
        if "type" not in read:
            continue
        settings = {k: v for k, v in table.items() if k not in TRIGGER_KEYS}
        key = schedule_key(agent, read["type"], settings, read.get("id"))
        if any(t.key == key for t in triggers):
            p.fail(
                section,
                None,
                "the same schedule as an earlier trigger of this agent (or its `every`); "
                'remove one, or give each a distinct id = "..."',
            )
            continue
        jitter = read.get("jitter", 0.0)
        triggers.append(
            TriggerConfig(
                agent, read["type"], key, p.at(section), settings, jitter, table.get("input"), "input" in table, section
            )
        )
    return tuple(triggers)


def read_schedule_settings(p: Problems, data: object) -> ScheduleSettings:
    """The top-level ``[schedule]`` table."""
    return p.read("schedule", data, ScheduleSettings, shape="a table (webhook_port, webhook_max_bytes)")
