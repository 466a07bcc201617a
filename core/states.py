"""Run states and the one function allowed to change them.

This module imports nothing else of corral's, so every layer (store, daemon, CLI)
can share the same vocabulary without cycles.
"""

from __future__ import annotations

import enum


class RunState(enum.StrEnum):
    """Where a run is in its life. Stored by value in LMDB; never rename a member."""

    QUEUED = "queued"
    RUNNING = "running"
    INTERRUPTED = "interrupted"
    ON_HOLD = "on_hold"
    SUCCEEDED = "succeeded"
    FAILED = "failed"
    CANCELLED = "cancelled"
    ABANDONED = "abandoned"


class EventKind(enum.StrEnum):
    """What an event of the run stream (:mod:`corral.observe.events`) reports. Stored by value."""

    RUN_CREATED = "run_created"
    """A run was stored, queued (``Engine.create_run``); ``run`` is the record."""
    RUN_CHANGED = "run_changed"
    """A run's state changed; ``run`` is the record as committed, ``old`` its state before."""
    STEP_DONE = "step_done"
    """A journaled step finished (or, ``replayed``, was answered from the journal)."""
    APPROVAL_REQUESTED = "approval_requested"
    """A guardrail asked a human to approve a tool call; ``data`` is the approval record."""
    APPROVAL_DECIDED = "approval_decided"
    """An approval was approved, denied or expired; ``data`` is the approval record."""
    ALERT_RAISED = "alert_raised"
    """An alert was stored for delivery (a repeat within ``repeat_after`` is not); ``data``
    is the alert (``key``, ``severity``, ``title``, ``body``, ``resolved``, ...)."""
    BREAKER_CHANGED = "breaker_changed"
    """A circuit breaker (a model endpoint's, a tool downstream's, an MCP server's) changed
    state; ``data``: ``downstream`` (the breaker's name, :func:`corral.breaker.describe`),
    ``kind`` (``model``, ``tool``, ``mcp``), ``name``, ``model`` (a model's breaker only),
    ``old``, ``new`` (``closed``, ``open``, ``half_open``), ``reason``, ``retry_in``."""
    MODEL_FAILOVER = "model_failover"
    """A model's calls began going to its fallbacks (``to``: the model tried next, ``reason``),
    once per episode, or ``model`` answers again (``to`` None). ``data`` also has ``agent``."""
    BUDGET_CROSSED = "budget_crossed"
    """A model budget reached a threshold. ``data``: ``budget`` (``run`` or ``day``),
    ``agent``, ``message``; a daily one also ``scope`` (an agent's name, "" for all agents
    together), ``day`` and ``fraction`` (1.0: the cap is spent and calls are refused, with
    ``until``; below it a soft threshold, with ``measure``, ``used`` and ``cap``)."""


FINISHED = frozenset({RunState.SUCCEEDED, RunState.FAILED, RunState.CANCELLED, RunState.ABANDONED})
"""States a run has ended in. It leaves one only by ``corral retry`` of a failure marked
resumable (a model endpoint down, a budget spent, a model not configured), which queues it again."""


_ALLOWED: dict[RunState, frozenset[RunState]] = {
    RunState.QUEUED: frozenset({RunState.RUNNING, RunState.CANCELLED, RunState.ABANDONED, RunState.FAILED}),
    RunState.RUNNING: frozenset(
        {
            RunState.SUCCEEDED,
            RunState.FAILED,
            RunState.INTERRUPTED,
            RunState.ON_HOLD,
            RunState.CANCELLED,
            RunState.ABANDONED,
        }
    ),
    RunState.INTERRUPTED: frozenset({RunState.RUNNING, RunState.FAILED, RunState.ABANDONED, RunState.CANCELLED}),
    RunState.ON_HOLD: frozenset({RunState.QUEUED, RunState.FAILED, RunState.CANCELLED}),
    RunState.FAILED: frozenset({RunState.QUEUED}),
}


class IllegalTransition(ValueError):
    """A bug in corral: something tried to move a run along an edge that does not exist."""


def check_transition(old: RunState, new: RunState) -> None:
    """Raise IllegalTransition unless ``old -> new`` is an edge of the run life cycle."""
    if new not in _ALLOWED.get(old, frozenset()):
        raise IllegalTransition(f"run cannot go from {old.value} to {new.value}")
