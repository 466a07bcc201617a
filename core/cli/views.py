"""Turning store records into what ``status``, ``runs`` and ``trace`` print.

Agents choose much of what is shown (results, errors, tool names), so every piece of
text goes through :func:`corral.observe.logview.printable`: controls and bidirectional controls
are printed as escapes, never obeyed by the terminal.
"""

from __future__ import annotations

import datetime as dt
import json
from decimal import Decimal
from typing import Any

from corral.config.units import format_duration, local_zone
from corral.observe.failures import agent_frames, headline
from corral.observe.logview import printable
from corral.secrets import PLACEHOLDER
from corral.states import RunState

NOT_HELD = "daemon not running"
"""Why a run the store holds as ``running`` is shown ``interrupted``: no process holds the home."""


def when(ts: float | None) -> str:
    """``ts`` as a local date and time with the zone's abbreviation (``2026-12-07 07:00:00 CET``)."""
    if not ts:
        return "-"
    return when_in(ts, local_zone())


def when_in(ts: float, zone: dt.tzinfo) -> str:
    """``ts`` as a date and time in ``zone``, with the zone's abbreviation (``2026-12-07 07:00:00 CET``)."""
    return dt.datetime.fromtimestamp(ts, zone).strftime("%Y-%m-%d %H:%M:%S %Z")


def zone_name(zone: dt.tzinfo) -> str:
    """The zone's IANA name, or ``local`` for the machine's own when it has none."""
    name = str(zone)
    return "local" if name == "localtime" else name


def took(start: float | None, end: float | None) -> str:
    """How long from ``start`` to ``end`` (wall-clock times), for a person: ``329ms``, ``1.42s``, ``2m5s``."""
    if not start or not end:
        return "-"
    seconds = end - start
    if seconds < 0:  # both are wall-clock times, and the clock was set back in between
        return "? (clock set back)"
    return format_duration(seconds)


def short(value: Any, width: int = 60) -> str:
    """``value`` on one line, escaped for a terminal, cut to ``width`` characters."""
    text = json.dumps(value, default=str, ensure_ascii=False) if not isinstance(value, str) else value
    text = printable(text.replace("\n", " "))
    if len(text) <= width:
        return text
    end = width - 1
    start = text.rfind("[redacted:", 0, end)
    if start != -1 and (whole := PLACEHOLDER.match(text, start)) is not None and whole.end() > end:
        end = start  # half a placeholder would name another secret: leave it out whole
    return text[:end] + "…"


def size(n: float) -> str:
    for unit in ("B", "KiB", "MiB", "GiB"):
        if n < 1024 or unit == "GiB":
            return f"{n:.0f}{unit}" if unit == "B" else f"{n:.1f}{unit}"
        n /= 1024
    return f"{n}"


def table(rows: list[list[str]], headers: list[str]) -> str:
    widths = [max(len(str(c)) for c in col) for col in zip(headers, *rows, strict=False)]
    lines = ["  ".join(h.ljust(w) for h, w in zip(headers, widths, strict=True)).rstrip()]
    for row in rows:
        lines.append("  ".join(str(c).ljust(w) for c, w in zip(row, widths, strict=True)).rstrip())
    return "\n".join(lines)


def unheld(run: dict[str, Any] | None) -> Any:
    """``run`` as seen while no daemon or foreground run holds the home: one the store still
    holds as ``running`` is not running (its process died with the daemon), so it is shown
    ``interrupted``, as the next ``corral up`` records it and resumes it; ``stored_state``
    keeps what the store says. The store itself is not changed."""
    if run is None or run["state"] != RunState.RUNNING.value:
        return run
    return {**run, "state": RunState.INTERRUPTED.value, "stored_state": run["state"]}


def state(run: dict[str, Any]) -> str:
    """A run's state for a table: ``interrupted (daemon not running)`` for one :func:`unheld` changed."""
    return f"{run['state']} ({NOT_HELD})" if "stored_state" in run else str(run["state"])


def runs_table(runs: list[dict[str, Any]]) -> str:
    if not runs:
        return "no runs yet"
    rows = [
        [
            r["id"],
            r["agent"],
            state(r),
            r.get("trigger", "-"),
            str(r.get("attempt", 0)),
            when(r.get("created")),
            took(r.get("started"), r.get("ended")),
            spent(r.get("spent")),
            short((r.get("error") or {}).get("message") or r.get("hold_reason") or "", 50),
        ]
        for r in runs
    ]
    return table(rows, ["RUN", "AGENT", "STATE", "TRIGGER", "ATT", "CREATED", "TOOK", "SPENT", "NOTE"])


def spent(record: dict[str, Any] | None) -> str:
    """A run's (or a day's) model spend: ``275 tok, $0.04``; calls to models without prices
    make it ``unpriced`` (all of them) or add ``+ N unpriced``; ``-`` when no model was called."""
    if not record or not record.get("calls"):
        return "-"
    tokens = int(record.get("input_tokens", 0)) + int(record.get("output_tokens", 0))
    unpriced, calls = int(record.get("unpriced_calls", 0)), int(record.get("calls", 0))
    if unpriced >= calls:
        return f"{tokens} tok, unpriced"
    dollars = money(Decimal(int(record.get("cost_micro_usd", 0))) / 1_000_000)
    return f"{tokens} tok, {dollars}" + (f" + {unpriced} unpriced" if unpriced else "")


def money(usd: Decimal) -> str:
    """Dollars for a person: ``$0.04``, ``< $0.01`` for a cost too small to show in cents."""
    if 0 < usd < Decimal("0.01"):
        return "< $0.01"
    return f"${usd:.2f}"


def failure_lines(error: dict[str, Any]) -> list[str]:
    """``error (KIND): TYPE: message`` and, for an exception in agent code, the agent's own
    frames of its traceback (corral's frames left out), so the file and line are shown. A
    message of several lines (a command's stderr it quotes) goes on indented under the first:
    the caller escapes each line whole, so a message's own lines forge none of corral's."""
    first, *more = headline(error).splitlines() or [""]
    return [
        f"error ({error.get('kind', '?')}): {first}",
        *(f"    {line}" for line in more),
        *agent_frames(str(error.get("traceback") or "")),
    ]
