"""The scheduling part of the config, as typed values (parsed in :mod:`corral.config.schedule`).

This module imports nothing else of corral's, so :mod:`corral.config` can hold these
values on every agent without an import cycle.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

OVERLAP = ("skip", "queue", "cancel")
MISSED = ("skip", "once", "all")
NO_PROGRESS_ACTIONS = ("slow", "pause")


@dataclass(frozen=True)
class TriggerConfig:
    """One trigger of an agent: a ``[[agents.NAME.triggers]]`` table, or the ``every`` shorthand."""

    agent: str
    kind: str
    key: str
    """Stable identity: the agent, the kind and its timing settings hashed (or the table's ``id``),
    so a reload, restart or upgrade finds the same schedule and its last fire time."""
    section: str
    """Where it was written, for messages: ``[agents.NAME.triggers.0]``."""
    settings: Mapping[str, Any] = field(default_factory=dict)
    """The table without corral's own keys; the trigger's plugin checks them."""
    jitter: float = 0.0
    input: Any = None
    has_input: bool = False
    """Whether the table gives ``input`` (else the agent's own ``input`` is used)."""


@dataclass(frozen=True)
class SchedulePolicy:
    """``[agents.NAME.schedule]``: what happens when triggers meet a busy, idle or downed agent."""

    overlap: str = "skip"
    """A trigger fires while the agent has ``max_running`` runs going: skip it, queue it, or cancel the oldest."""
    max_queued: int = 10
    """With ``overlap = "queue"``: at most this many runs wait; later fires are skipped."""
    max_running: int = 1
    """Runs of this agent at once."""
    missed: str = "skip"
    """Fire times that passed while the daemon was down: skip them, run once, or run each (up to ``missed_max``)."""
    missed_max: int = 10
    no_progress_runs: int = 10
    """After this many scheduled runs in a row that ended the same way with no tool effects, act (0: never)."""
    no_progress_action: str = "slow"
    """``slow``: only every ``slow_factor``-th fire runs; ``pause``: the agent is paused."""
    slow_factor: int = 4


@dataclass(frozen=True)
class ScheduleSettings:
    """The top-level ``[schedule]`` table: daemon-wide trigger settings."""

    webhook_port: int | None = None
    """Port of the webhook listener on 127.0.0.1; required when any agent has a webhook trigger."""
    webhook_max_bytes: int = 1 << 20
    """Default payload limit of a webhook trigger (each may set its own ``max_bytes``)."""
