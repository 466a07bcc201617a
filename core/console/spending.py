"""Model spend as the console shows it: by day, agent and model, as charts, a table and CSV.

Read from the store's ``spend`` database (:mod:`corral.run.budget`), the rows ``corral
spend`` reads: one per day, agent and model, written in the commit of each call's journal
entry. Days are the calendar days of ``[corral] timezone``, as the daemon recorded them.
"""

from __future__ import annotations

import csv
import datetime as dt
import io
from decimal import Decimal
from typing import Any

from corral.console.charts import BarChart, bar_chart
from corral.run.budget import DB, MICRO, Tally, day_of, rows
from corral.store import Store

DAYS = 14
"""Days the spend page and an agent's chart show unless asked for more."""
MAX_DAYS = 366
CSV_COLUMNS = ("day", "agent", "model", "calls", "input_tokens", "output_tokens", "cost_usd", "unpriced_calls")


def last_days(now: float, zone: dt.tzinfo, days: int) -> list[str]:
    """The ``days`` calendar days up to ``now``'s (included), oldest first, as ``YYYY-MM-DD``."""
    today = dt.date.fromisoformat(day_of(now, zone))
    return [(today - dt.timedelta(days=back)).isoformat() for back in range(days - 1, -1, -1)]


def dollars(value: float | Decimal) -> str:
    """``$0.0123``: four decimals, since a model call often costs less than a cent."""
    return f"${Decimal(value):.4f}"


def cost_of(tally: Tally) -> float:
    return float(Decimal(tally.cost_micro_usd) / MICRO)


def by_day_chart(per_day: dict[str, Tally]) -> BarChart:
    """Cost per day as bars, the days in order, a day without calls a gap."""
    return bar_chart([(day, cost_of(tally)) for day, tally in per_day.items()], dollars)


def model_rows(store: Store, txn: Any, days: list[str], agent: str | None = None) -> list[tuple[str, str, str, Tally]]:
    """Every (day, agent, model, tally) row of ``days`` (of ``agent``), per model: the
    totals rows the daemon keeps beside them are left out, so nothing counts twice."""
    found = []
    for day in days:
        for (_, who, model), tally in rows(txn, store.dbs[DB], day + "\x00"):
            if model and (agent is None or who == agent):
                found.append((day, who, model, tally))
    return found


def spend(store: Store, now: float, zone: dt.tzinfo, days: int) -> dict[str, Any]:
    """The spend page: totals by day (a chart), by agent and by model, and every row."""
    span = last_days(now, zone, days)
    with store.read() as txn:
        found = model_rows(store, txn, span, None)
    per_day: dict[str, Tally] = {day: Tally() for day in span}
    per_agent: dict[str, Tally] = {}
    per_model: dict[str, Tally] = {}
    total = Tally()
    for day, agent, model, tally in found:
        per_day[day].add(tally)
        per_agent.setdefault(agent, Tally()).add(tally)
        per_model.setdefault(model, Tally()).add(tally)
        total.add(tally)
    return {
        "days": days,
        "chart": by_day_chart(per_day),
        "by_day": list(reversed(per_day.items())),
        "by_agent": sorted(per_agent.items(), key=lambda item: -item[1].cost_micro_usd),
        "by_model": sorted(per_model.items(), key=lambda item: -item[1].cost_micro_usd),
        "agent_chart": bar_chart([(a, cost_of(t)) for a, t in sorted(per_agent.items())], dollars),
        "rows": list(reversed(found)),
        "total": total,
    }


def spend_csv(store: Store, now: float, zone: dt.tzinfo, days: int) -> str:
    """Every row of the last ``days`` days as CSV (the cost in dollars, exact)."""
    with store.read() as txn:
        found = model_rows(store, txn, last_days(now, zone, days), None)
    out = io.StringIO()
    writer = csv.writer(out, lineterminator="\n")
    writer.writerow(CSV_COLUMNS)
    for day, agent, model, tally in found:
        cost = Decimal(tally.cost_micro_usd) / MICRO
        row = (day, agent, model, tally.calls, tally.input_tokens, tally.output_tokens, cost, tally.unpriced_calls)
        writer.writerow(row)
    return out.getvalue()
