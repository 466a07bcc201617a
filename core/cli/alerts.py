"""``corral alerts``: the alerts stored in the outbox, and the alert part of ``corral trace``.

Read from the store read-only, so it works with the daemon down. Each line says what
was raised and what became of it: delivered, failed (no sink took it), or pending.
"""

from __future__ import annotations

import argparse
import time
from typing import Any

from corral.alerts.outbox import Outbox
from corral.cli.common import EXIT_OK, load, print_json, reader
from corral.config import parse_duration
from corral.store import Records

DEFAULT_SINCE = "24h"


def add_commands(sub: argparse._SubParsersAction[argparse.ArgumentParser], common: argparse.ArgumentParser) -> None:
    alerts = sub.add_parser("alerts", parents=[common], help="alerts raised recently and where they went")
    alerts.add_argument(
        "--since", type=_since, default=DEFAULT_SINCE, help=f'how far back, e.g. "2h", "7d" (default {DEFAULT_SINCE})'
    )
    alerts.add_argument("--agent", help="only this agent's alerts")
    alerts.add_argument("--json", action="store_true")
    alerts.set_defaults(func=cmd_alerts)


def _since(text: str) -> float:
    try:
        seconds = parse_duration(text)
    except ValueError as exc:
        raise argparse.ArgumentTypeError(f"{exc}; e.g. --since 2h") from None
    if seconds <= 0:
        raise argparse.ArgumentTypeError("must be more than zero, e.g. --since 2h")
    return seconds


def alerts_since(store: Any, seconds_ago: float, agent: str | None = None) -> list[dict[str, Any]]:
    """Stored alert records of the last ``seconds_ago`` seconds, oldest first."""
    outbox = Outbox(Records(store.dbs))
    with store.read() as txn:
        found = list(outbox.since(txn, time.time() - seconds_ago))
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
    store, _ = reader(config)
    try:
        records = alerts_since(store, args.since, args.agent)
    finally:
        store.close()
    if args.json:
        print_json(records)
        return EXIT_OK
    if not records:
        print(f"no alerts in the last {args.since:g}s")
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
