"""``corral spend``: model tokens and cost over recent days, by agent, model or day.

Read from the store's ``spend`` database (written in the same commit as each call's
journal entry), so it works with the daemon down and survives journal retention. Days
are the calendar days of ``[corral] timezone``, as the daemon recorded them.
"""

from __future__ import annotations

import argparse
import datetime as dt
import time
from typing import Any

from corral.cli.common import EXIT_OK, described, load, print_json, reader, whole
from corral.run.budget import DB, Tally, day_of, rows


def add_commands(sub: argparse._SubParsersAction[argparse.ArgumentParser], common: argparse.ArgumentParser) -> None:
    spend = sub.add_parser("spend", parents=[common], help="model tokens and cost, by agent, model or day")
    described(
        spend,
        "Model calls, tokens and cost over the last N days (today included) of [corral] timezone, grouped by agent, "
        "model or day, from the store; calls to models without prices are counted as unpriced. Works with the daemon "
        "down.",
        ["corral spend", "corral spend --by model --days 30", "corral spend --by day --json"],
    )
    spend.add_argument("--by", choices=("agent", "model", "day"), default="agent", help="group by (default: agent)")
    spend.add_argument(
        "--days",
        type=whole(1, "--days 30", maximum=36500),
        default=7,
        help="how many days back, today included (default 7)",
    )
    spend.add_argument("--json", action="store_true", help="as JSON, raw values (times in epoch seconds)")
    spend.set_defaults(func=cmd_spend)


def summarise(txn: Any, db: Any, by: str, days: int, now: float, zone: dt.tzinfo | None = None) -> dict[str, Tally]:
    """Spend per group over the last ``days`` days (today included) of ``zone`` (None: local),
    from the per-model rows."""
    first = (dt.date.fromisoformat(day_of(now, zone)) - dt.timedelta(days=days - 1)).isoformat()
    groups: dict[str, Tally] = {}
    for (day, agent, model), tally in rows(txn, db):
        if day < first or not model:
            continue
        group = {"agent": agent, "model": model, "day": day}[by]
        groups.setdefault(group, Tally()).add(tally)
    return dict(sorted(groups.items()))


def cmd_spend(args: argparse.Namespace) -> int:
    from corral.cli import views

    config = load(args)
    store, _ = reader(config)
    try:
        with store.read() as txn:
            groups = summarise(txn, store.dbs[DB], args.by, args.days, time.time(), config.zone)
    finally:
        store.close()
    total = Tally()
    for tally in groups.values():
        total.add(tally)
    if args.json:
        print_json(
            {
                "by": args.by,
                "days": args.days,
                "groups": {name: _json(tally) for name, tally in groups.items()},
                "total": _json(total),
            }
        )
        return EXIT_OK
    if not groups:
        print(f"no model calls in the last {args.days} days")
        return EXIT_OK
    table = [_row(name, tally) for name, tally in groups.items()]
    table.append(_row("total", total))
    print(views.table(table, [args.by.upper(), "CALLS", "INPUT TOKENS", "OUTPUT TOKENS", "COST"]))
    if total.unpriced_calls:
        print(f"\n{total.unpriced_calls} calls were to models without prices; their cost is not included")
    return EXIT_OK


def _row(name: str, tally: Tally) -> list[str]:
    from corral.cli.views import money

    cost = money(tally.cost_usd) if tally.unpriced_calls < tally.calls else "unpriced"
    if 0 < tally.unpriced_calls < tally.calls:
        cost += f" + {tally.unpriced_calls} unpriced"
    return [name, str(tally.calls), str(tally.input_tokens), str(tally.output_tokens), cost]


def _json(tally: Tally) -> dict[str, Any]:
    return {**tally.to_dict(), "tokens": tally.tokens, "cost_usd": str(tally.cost_usd)}
