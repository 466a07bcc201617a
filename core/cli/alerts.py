"""``corral alerts``: the alerts stored in the outbox, and the alert part of ``corral trace``.

Read from the store read-only, so it works with the daemon down. Each line says what
was raised and what became of it: delivered, failed (no sink took it), or pending.
"""

from __future__ import annotations

import argparse
from typing import Any

from corral.alerts.outbox import Outbox
from corral.cli.common import EXIT_OK, agent_argument, agent_named, command, load, print_json, reader
from corral.cli.moments import moment
from corral.store import Records

DEFAULT_SINCE = "1d"


def add_commands(sub: argparse._SubParsersAction[argparse.ArgumentParser], common: argparse.ArgumentParser) -> None:
    alerts = command(
        sub,
        common,
        "alerts",
        "alerts raised recently and where they went",
        description="Alerts stored in the last day (or --since), oldest first: when, severity, agent, run, "
        "title, and where each went: delivered (to which sinks), failed (no sink but the log took it) or pending. "
        "Works with the daemon down.",
        examples=["corral alerts", "corral alerts --since 7d --agent digest", "corral alerts --json"],
    )
    alerts.add_argument(
        "--since",
        type=moment("--since"),
        help=f'how far back: "2h", "7d" (default {DEFAULT_SINCE}), or a date and time',
    )
    agent_argument(alerts, "--agent", help="only this agent's alerts")
    alerts.add_argument("--json", action="store_true", help="the stored records as JSON, times as epoch seconds")
    alerts.set_defaults(func=cmd_alerts)


def alerts_since(store: Any, since: float, agent: str | None = None) -> list[dict[str, Any]]:
    """Stored alert records since ``since`` (epoch seconds), oldest first."""
    outbox = Outbox(Records(store.dbs))
    with store.read() as txn:
        found = list(outbox.since(txn, since))
    return [r for r in found if agent is None or r["alert"].get("agent") == agent]


def alerts_of_run(store: Any, run: dict[str, Any]) -> list[dict[str, Any]]:
    """Alerts raised about ``run`` (stored since it was created), oldest first."""
    outbox = Outbox(Records(store.dbs))
    with store.read() as txn:
        return [r for r in outbox.since(txn, run.get("created", 0) - 1) if r["alert"].get("run_id") == run["id"]]


def outcome(record: dict[str, Any]) -> str:
    """Where the alert went: ``delivered (chat, log)``, ``failed``, ``pending``."""
    delivered = sorted(name for name, d in record.get("deliveries", {}).items() if d.get("ok"))
    status = record.get("status", "pending")
    if status == "delivered" and delivered:
        return f"delivered ({', '.join(delivered)})"
    return status


def cmd_alerts(args: argparse.Namespace) -> int:
    from corral.cli import views

    config = load(args)
    since = args.since or moment("--since")(DEFAULT_SINCE)
    store, _ = reader(config)
    try:
        records = alerts_since(store, since.at, args.agent)
    finally:
        store.close()
    if args.agent is not None and not records:  # a removed agent keeps its alerts; a misspelt one has none
        agent_named(config, args.agent)
    if args.json:
        print_json(records)
        return EXIT_OK
    if not records:
        print(f"no alerts {since.since()}" + (f" for {args.agent}" if args.agent else ""))
        return EXIT_OK
    rows = []
    for record in records:
        alert = record["alert"]
        severity = "resolved" if alert.get("resolved") else alert.get("severity", "?")
        title = alert.get("title", "")
        if record.get("repeats"):
            title += f" (+{record['repeats']} repeats)"
        rows.append(
            [
                views.when(alert.get("created")),
                severity,
                alert.get("agent") or "-",
                (alert.get("run_id") or "-")[-8:],
                views.short(title, 70),
                outcome(record),
            ]
        )
    print(views.table(rows, ["WHEN", "SEVERITY", "AGENT", "RUN", "ALERT", "OUTCOME"]))
    return EXIT_OK
