"""What an agent's page shows: its config in brief (triggers with their next fire and zone,
grants, limits, budget, models), its recent runs, and its spend by day.

Read in one read-only transaction from the daemon's store and its current config; the
actions on the page (run now, pause, resume, stop, start) go to the daemon's operations
like every other action of the console (:mod:`corral.console.app`).
"""

from __future__ import annotations

import datetime as dt
import json
import time
from decimal import Decimal
from typing import Any

from corral.config import CorralConfig, zone_named
from corral.config.agents import AgentConfig
from corral.config.budget import Caps
from corral.config.units import format_duration
from corral.console.spending import by_day_chart, last_days, model_rows
from corral.run.budget import DB, Tally, rows
from corral.schedule.status import agent_status
from corral.store import Records, Store

RECENT = 20
"""Runs the page lists; the runs page has the rest."""


def zone_name(zone: dt.tzinfo) -> str:
    """A zone as an operator names it: ``Europe/Paris``; the machine's own zone read from
    /etc/localtime by its abbreviation now (``CET``)."""
    key = getattr(zone, "key", None)
    if key and key != "localtime":
        return str(key)
    return dt.datetime.now(zone).tzname() or str(zone)


def agent(store: Store, records: Records, config: CorralConfig, name: str, days: int) -> dict[str, Any] | None:
    """The agent page's data, or None when no agent ``name`` is configured."""
    cfg = config.agents.get(name)
    if cfg is None:
        return None
    now = time.time()
    span = last_days(now, config.zone, days)
    with store.read() as txn:
        status = agent_status(store, records, txn, config, now)[name]
        recent = records.list_runs(txn, name, limit=RECENT)
        per_day = {day: Tally() for day in span}
        for day, _, _, tally in model_rows(store, txn, span, name):
            per_day[day].add(tally)
        today = next(
            (t for (_, who, model), t in rows(txn, store.dbs[DB], span[-1] + "\x00") if who == name and not model), None
        )
    return {
        "agent": cfg,
        "current": status,
        "triggers": _triggers(cfg, status, config),
        "grants": _grants(cfg),
        "limits": _limits(cfg),
        "budget": _budget(cfg),
        "models": [_model(config, m) for m in cfg.models],
        "recent": recent,
        "chart": by_day_chart(per_day),
        "days": days,
        "today": today or Tally(),
        "default_input": "" if cfg.input is None else json.dumps(cfg.input, ensure_ascii=False),
    }


def _triggers(cfg: AgentConfig, status: dict[str, Any], config: CorralConfig) -> list[dict[str, Any]]:
    """Each trigger: its kind, what it says of itself, its next fire and the zone it is told in."""
    planned = {t["key"]: t for t in status["triggers"]}
    out = []
    for trigger in cfg.triggers:
        record = planned.get(trigger.key, {})
        named = trigger.settings.get("timezone")
        zone = zone_named(named) if isinstance(named, str) else config.zone
        out.append(
            {
                "kind": trigger.kind,
                "describe": record.get("describe") or trigger.kind,
                "next": record.get("due"),
                "zone": zone,
                "zone_name": zone_name(zone),
                "last": record.get("last"),
            }
        )
    return out


def _grants(cfg: AgentConfig) -> list[tuple[str, str]]:
    policy = cfg.sandbox
    return [
        ("tools", ", ".join(cfg.tools) or "none"),
        ("models", ", ".join(cfg.models) or "none"),
        ("secrets", ", ".join(cfg.secrets) or "none"),
        ("network", policy.network_text()),
        ("read-write paths", ", ".join(map(str, policy.read_write)) or "its workdir only"),
        ("read-only paths", ", ".join(map(str, policy.read_only)) or "none"),
    ]


def _limits(cfg: AgentConfig) -> list[tuple[str, str]]:
    limits = cfg.limits

    def mb(value: int | None) -> str:
        return "unlimited" if value is None else f"{value} MiB"

    return [
        ("wall time", format_duration(limits.wall_seconds)),
        ("memory", mb(limits.memory_mb)),
        ("CPU", "unlimited" if limits.cpu_seconds is None else f"{limits.cpu_seconds} s"),
        ("processes", str(limits.processes or "unlimited")),
        ("disk", mb(limits.disk_mb)),
        ("attempts", str(cfg.max_attempts)),
    ]


def _caps(caps: Caps) -> str:
    said = []
    if caps.cost_usd is not None:
        cents = caps.cost_usd.quantize(Decimal("0.01"))
        said.append(f"${cents}" if cents == caps.cost_usd else f"${caps.cost_usd}")
    if caps.tokens is not None:
        said.append(f"{caps.tokens} tokens")
    if caps.calls is not None:
        said.append(f"{caps.calls} calls")
    return ", ".join(said) or "no cap"


def _budget(cfg: AgentConfig) -> list[tuple[str, str]]:
    return [("per run", _caps(cfg.budget.run)), ("per day", _caps(cfg.budget.day))]


def _model(config: CorralConfig, name: str) -> tuple[str, str]:
    model = config.models.get(name)
    endpoint = model.endpoint if model is not None else None
    if endpoint is None:
        return name, "found when first needed (provider auto)"
    return name, f"{endpoint.provider} {endpoint.model}"
