"""What the console's pages show, read from the store in read-only transactions.

Each function takes the daemon's open store and returns plain data for a template; none
writes, and none holds a transaction while rendering. They run on a worker thread, never
on the event loop, so a large read does not delay a model call.
"""

from __future__ import annotations

import datetime as dt
import json
import sys
import time
from dataclasses import dataclass
from decimal import Decimal
from typing import Any

from corral.alerts.outbox import Outbox
from corral.cli.views import when_in
from corral.config import CorralConfig
from corral.console.agentpage import zone_name
from corral.observe.logs import log_path
from corral.observe.logview import last_lines
from corral.run.approvals import PENDING, Approvals
from corral.run.budget import spent_today
from corral.run.downstreams import open_breakers
from corral.schedule.status import agent_status, triggers_label
from corral.states import RunState
from corral.store import Records, Store, conversations

PAGE = 50
"""Runs per page of the runs list."""
SCAN = 5_000
"""Runs a filtered page looks through at most before it offers the next page (a state or
trigger that matches rarely then costs one bounded walk per page, not the whole store)."""
STEPS_SHOWN = 100
"""A run's last steps, and last log lines, its page shows unless asked for all: a long
run's page, refetched live while it runs, stays cheap to render (1,000 steps and their
1,000 log lines took 350 ms of Jinja)."""
LOG_LINES = 2000
"""Log events of an agent read to find one run's lines."""
LOG_BYTES = 4 * 2**20
"""Bytes of an agent's log read at most to find one run's lines: an agent's line may be a
megabyte (64 fields of 16 KiB), and the page is read again every second while live."""


@dataclass(frozen=True)
class StoreView:
    """Where the pages read from: the daemon's store and its current config."""

    store: Store
    records: Records
    config: CorralConfig


def overview(src: StoreView, started: float, protections: list[str]) -> dict[str, Any]:
    """Agents with their state, next fire, last run and spend today against their budget;
    the breakers, the queue, what waits; the daemon."""
    now = time.time()
    with src.store.read() as txn:
        status = agent_status(src.store, src.records, txn, src.config, now)
        last = {name: next(iter(src.records.list_runs(txn, name, limit=1)), None) for name in src.config.agents}
        today = spent_today(txn, src.store.dbs["spend"], now, src.config.zone)
        active = src.records.active_runs(txn)
        waiting = Approvals(src.records).pending(txn)
        alerts = list(Outbox(src.records).since(txn, now - 86400))
        opened = open_breakers(src.store, txn)
    agents = [
        {
            "name": name,
            "state": status[name]["state"],
            "triggers": triggers_label(src.config.agents[name]),
            "next_fire": status[name]["next_fire"],
            "pause": status[name]["pause"],
            "queued": status[name]["queue_depth"],
            "last": last[name],
            "spent": today.get(name),
            "spent_usd": _usd(today.get(name)),
            "cap": _cap(src.config.agents[name].budget.day.cost_usd),
        }
        for name in sorted(src.config.agents)
    ]
    return {
        "agents": agents,
        "active": [r for r in active if r["state"] != RunState.QUEUED.value],
        "queued": [r for r in active if r["state"] == RunState.QUEUED.value],
        "max_running": src.config.max_concurrent_runs,
        "approvals": waiting,
        "alerts": list(reversed(alerts))[:20],
        "spent_all": today.get(""),
        "spent_all_usd": _usd(today.get("")),
        "cap_all": _cap(src.config.budget.day.cost_usd),
        "breakers": _breakers(src.config, opened),
        "daemon": {"uptime": now - started, "store": src.store.size(), "protections": protections},
        "zone": zone_name(src.config.zone),
    }


def _breakers(config: CorralConfig, opened: dict[str, Any]) -> list[dict[str, Any]]:
    """Every model endpoint's breaker (closed unless the daemon recorded otherwise), and any
    tool's or MCP server's breaker that is not closed."""
    found = {(b["kind"], b["name"]): {**b, "state": b["new"]} for b in opened.values()}
    for name in config.models:
        found.setdefault(("model", name), {"kind": "model", "name": name, "state": "closed"})
    return [found[key] for key in sorted(found)]


def _usd(tally: dict[str, int] | None) -> float:
    return int((tally or {}).get("cost_micro_usd", 0)) / 1_000_000


def _cap(dollars: Decimal | None) -> float | None:
    return float(dollars) if dollars is not None else None


def runs(src: StoreView, agent: str, state: str, trigger: str, since: float | None, before: str) -> dict[str, Any]:
    """A page of runs, newest first, filtered; ``before`` is the last id of the page before.

    Run ids sort by creation time, so the walk goes newest first through the agent's index
    (or the runs themselves) from ``before`` and stops at the first run older than
    ``since``: a page costs its own runs, plus those a state or trigger filter skips (at
    most :data:`SCAN`)."""
    found: list[dict[str, Any]] = []
    scanned = 0
    last = ""
    more = False
    with src.store.read() as txn:
        for run in src.records.runs_newest_first(txn, agent or None, before=before or None):
            if since is not None and run.get("created", 0) < since:
                break
            if _matches(run, state, trigger):
                if len(found) == PAGE:
                    more = True
                    break
                found.append(run)
            scanned += 1
            last = run["id"]
            if scanned >= SCAN:
                more = True
                break
    return {
        "runs": found,
        "next": last if more else "",
        "scanned": scanned,
        "agents": sorted(src.config.agents),
        "states": [s.value for s in RunState],
    }


def _matches(run: dict[str, Any], state: str, trigger: str) -> bool:
    return (not state or run["state"] == state) and (not trigger or str(run.get("trigger", "")) == trigger)


def run(src: StoreView, run_id: str, every_step: bool = False) -> dict[str, Any] | None:
    """One run: its record, its steps (the last :data:`STEPS_SHOWN` unless ``every_step``),
    its approvals and alerts, its log lines."""
    with src.store.read() as txn:
        record = src.records.get_run(txn, run_id)
        if record is None:
            return None
        if every_step:  # as stored: each step's new messages, not the conversation
            stored, hidden = list(src.records.steps(txn, run_id)), 0
        else:
            total, stored = src.records.last_steps(txn, run_id, STEPS_SHOWN)
            hidden = total - len(stored)
        steps = [conversations.spelled(step) for step in stored]
        approvals = [a for a in Approvals(src.records).all(txn) if a.get("run_id") == run_id]
        alerts = [
            r
            for r in Outbox(src.records).since(txn, record.get("created", 0) - 1)
            if r["alert"].get("run_id") == run_id
        ]
    logs, more_logs = _log_lines(src, record, every_step)
    return {
        "run": record,
        "steps": steps,
        "hidden": hidden,
        "approvals": approvals,
        "alerts": alerts,
        "logs": logs,
        "more_logs": more_logs,
    }


def _log_lines(src: StoreView, record: dict[str, Any], every: bool) -> tuple[list[dict[str, Any]], bool]:
    """The run's last :data:`STEPS_SHOWN` log lines among its agent's last :data:`LOG_LINES`
    (and :data:`LOG_BYTES`), or, with ``every``, all of its lines in the agent's log, oldest
    first; and whether it has earlier lines not shown. Lines are picked by the run id in
    their bytes, then parsed from the newest until enough are the run's own (a later run
    may name this one in a field, so its id alone does not make a line this run's)."""
    try:
        path = log_path(src.config.log_dir, record["agent"])
    except ValueError:
        return [], False
    run_id = record["id"]
    if every:
        lines = last_lines(path, sys.maxsize, having=run_id.encode())
    else:
        lines = last_lines(path, LOG_LINES, having=run_id.encode(), most=LOG_BYTES)
    shown: list[dict[str, Any]] = []
    for line in reversed(lines):
        event = line.parsed()
        if event is None or event.get("run_id") != run_id:
            continue
        if len(shown) == STEPS_SHOWN and not every:
            return shown[::-1], True
        shown.append(event)
    return shown[::-1], False


def approvals(src: StoreView) -> dict[str, Any]:
    """What waits for a human, oldest first, and the last decided ones."""
    with src.store.read() as txn:
        every = Approvals(src.records).all(txn)
    waiting = sorted((a for a in every if a["state"] == PENDING), key=lambda a: a["created"])
    decided = sorted((a for a in every if a["state"] != PENDING), key=lambda a: -a.get("decided", a["created"]))
    return {"waiting": waiting, "decided": decided[:20]}


def alerts(src: StoreView, since: float, agent: str) -> dict[str, Any]:
    """Alerts stored since ``since``, newest first, with where each went and how."""
    with src.store.read() as txn:
        found = [r for r in Outbox(src.records).since(txn, since) if not agent or r["alert"].get("agent") == agent]
    return {"alerts": list(reversed(found)), "agents": sorted(src.config.agents)}


SHORT = 80
"""Characters of JSON shown on one line; a longer value is indented."""
SHOWN = 64 * 1024
"""Characters of one value a page shows: a model's 2 MB answer made a 120 MB page, fetched
again every second while the run was followed."""


def shown(value: Any) -> str:
    """An agent's value as readable text (the template escapes it), cut after
    :data:`SHOWN` characters with a note of how many more there are. A short value stays
    on one line, written by json's C encoder: with ``indent`` json uses its Python
    encoder, and a run's page shows hundreds of small values, refetched live."""
    if isinstance(value, str):
        text = value
    else:
        text = json.dumps(value, ensure_ascii=False, default=str)
        if len(text) > SHORT:
            text = json.dumps(value, indent=2, ensure_ascii=False, default=str)
    if len(text) <= SHOWN:
        return text
    return f"{text[:SHOWN]}\n… {len(text) - SHOWN:,} more characters not shown here: corral trace shows them"


def when(ts: float | None, zone: dt.tzinfo) -> str:
    """A moment as the pages show it, in the config's zone (as the CLI shows it)."""
    return when_in(ts, zone) if ts else "-"
