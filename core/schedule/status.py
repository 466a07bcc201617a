"""What ``corral status`` says about each agent's schedule, read from the store.

It works with the daemon down (the store opened read-only): pauses, the next fire time
the daemon planned, the queue depth (runs stored as queued) and the agent's state.
"""

from __future__ import annotations

from typing import Any

from corral.config import CorralConfig
from corral.config.units import format_duration
from corral.schedule import state
from corral.schedule.pauses import read_pauses
from corral.states import RunState
from corral.store import Records, Store


def agent_status(
    store: Store, records: Records, txn: Any, config: CorralConfig, now: float
) -> dict[str, dict[str, Any]]:
    """Per agent: ``state`` (disabled, stopped, paused, running, queued, idle), ``next_fire`` (epoch
    seconds, jitter included, or None) and ``next_zone`` (the zone that trigger counts in: its own
    ``timezone``, else ``[corral] timezone``; None for the machine's), ``queue_depth``, ``pause``,
    ``slowed`` and ``triggers``."""
    db = store.dbs["schedules"]
    schedules = state.all_schedules(txn, db)
    pauses = {a: p for a, p in read_pauses(store, txn).items() if p["until"] is None or p["until"] > now}
    active = records.active_runs(txn)
    out: dict[str, dict[str, Any]] = {}
    for name, agent in config.agents.items():
        mine = [r for r in active if r["agent"] == name]
        depth = sum(1 for r in mine if r["state"] == RunState.QUEUED.value)
        dues = [
            (s["due"], t)
            for t in agent.triggers
            if (s := schedules.get(t.key)) is not None and s.get("due") is not None
        ]
        first = min(dues, key=lambda due: due[0], default=None)
        if not agent.enabled:
            current = "disabled"
        elif name in pauses:
            current = "stopped" if pauses[name].get("stopped") else "paused"
        elif any(r["state"] == RunState.RUNNING.value for r in mine):
            current = "running"
        elif depth:
            current = "queued"
        else:
            current = "idle"
        out[name] = {
            "state": current,
            "next_fire": first[0] if first else None,
            "next_zone": (first[1].settings.get("timezone") or config.timezone) if first else None,
            "queue_depth": depth,
            "pause": pauses.get(name),
            "slowed": state.get_agent(txn, db, name),
            "triggers": [
                {"key": t.key, "kind": t.kind, **{k: v for k, v in schedules.get(t.key, {}).items() if k != "agent"}}
                for t in agent.triggers
            ],
        }
    return out


def triggers_label(agent: Any) -> str:
    """The TRIGGER column: ``every 30s``, ``cron, webhook``, or ``manual``."""
    if not agent.triggers:
        return "manual"
    return ", ".join(
        f"every {format_duration(t.settings['every'])}"
        if t.kind == "interval" and t.section.endswith("every")
        else t.kind
        for t in agent.triggers
    )
