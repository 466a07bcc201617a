"""The built-in timed triggers: cron expressions in a time zone, fixed intervals, one-shot times."""

from __future__ import annotations

import datetime as dt
import hashlib
import math
from collections.abc import Mapping
from typing import Any

from croniter import croniter

from corral.config import zone_named
from corral.config.settings import Settings
from corral.config.units import format_duration
from corral.schedule.triggers import RESOLUTION, BuildContext, TimedTrigger


def _zone(context: BuildContext, table: Settings) -> dt.tzinfo:
    """The table's ``timezone``, else ``[corral] timezone``, else the machine's."""
    name = table.zone("timezone")
    if name is not None:
        return zone_named(name)
    return dt.UTC if not table.ok("timezone") else context.zone or zone_named(None)


class CronTrigger(TimedTrigger):
    """Standard five-field cron (or six with seconds), in a time zone; DST gaps and repeats as croniter handles them."""

    def __init__(self, expression: str, zone: dt.tzinfo) -> None:
        self.expression = expression
        self.zone = zone

    def describe(self) -> str:
        return f"cron {self.expression} {self.zone}"

    def next_after(self, moment: float) -> float | None:
        start = dt.datetime.fromtimestamp(moment, self.zone)
        return float(croniter(self.expression, start).get_next(float))

    def last_until(self, moment: float) -> float | None:
        start = dt.datetime.fromtimestamp(moment + RESOLUTION, self.zone)
        return float(croniter(self.expression, start).get_prev(float))


def cron_factory(settings: Mapping[str, Any], context: BuildContext) -> CronTrigger:
    """``type = "cron"``: ``cron = "0 7 * * mon-fri"``, optional ``timezone`` (default: the machine's)."""
    table = context.reader(settings)
    example = '"0 7 * * mon-fri"'
    expression = table.required_text("cron", example)
    if table.ok("cron") and not croniter.is_valid(expression):
        table.fail("cron", f"{expression!r} is not a cron expression; write five fields, e.g. {example}")
    zone = _zone(context, table)
    table.finish()
    return CronTrigger(expression, zone)


class IntervalTrigger(TimedTrigger):
    """Every ``every`` seconds on a fixed grid: ``anchor + k * every``.

    Without a configured ``start`` the grid's offset comes from the schedule's key, so fifty
    agents on the same interval spread over it instead of all firing at once, and a restart
    keeps the same grid. The grid is on steady time, so a clock step neither stalls nor
    hurries it.
    """

    steady = True

    def __init__(self, every: float, anchor: float) -> None:
        self.every = every
        self.anchor = anchor

    def describe(self) -> str:
        return f"every {format_duration(self.every)}"

    def next_after(self, moment: float) -> float | None:
        steps = math.floor((moment - self.anchor) / self.every + RESOLUTION / self.every) + 1
        return self.anchor + steps * self.every

    def last_until(self, moment: float) -> float | None:
        steps = math.floor((moment - self.anchor) / self.every + RESOLUTION / self.every)
        return self.anchor + steps * self.every


def _moment(table: Settings, key: str, zone: dt.tzinfo) -> float | None:
    """``key`` as a moment: a TOML date-time, or one in ISO text (without an offset: in ``zone``)."""
    value = table.raw(key)
    if isinstance(value, str):
        try:
            value = dt.datetime.fromisoformat(value)
        except ValueError:
            value = None
    if isinstance(value, dt.datetime):
        return (value if value.tzinfo else value.replace(tzinfo=zone)).timestamp()
    table.fail(key, f"give a date and time, e.g. {key} = 2026-12-01T09:00:00+01:00")
    return None


def interval_factory(settings: Mapping[str, Any], context: BuildContext) -> IntervalTrigger:
    """``type = "interval"``: ``every = "10m"``, optional ``start`` (a date-time the grid passes through)."""
    table = context.reader(settings)
    every = table.duration("every")
    if table.ok("every") and every < RESOLUTION * 10:
        table.fail("every", f'{every:g}s is shorter than the scheduler\'s 10 ms; give an interval such as "30s"')
    zone = _zone(context, table)
    anchor = _moment(table, "start", zone) if "start" in settings else None
    table.finish()
    if anchor is None:
        fraction = int.from_bytes(hashlib.sha256(context.key.encode()).digest()[:8], "big") / 2**64
        anchor = fraction * every
    return IntervalTrigger(every, anchor)


class OnceTrigger(TimedTrigger):
    """Fires once, at ``at``."""

    def __init__(self, at: float) -> None:
        self.at = at

    def describe(self) -> str:
        return f"once at {dt.datetime.fromtimestamp(self.at, dt.UTC).isoformat()}"

    def next_after(self, moment: float) -> float | None:
        return self.at if self.at > moment + RESOLUTION else None

    def last_until(self, moment: float) -> float | None:
        return self.at if self.at <= moment + RESOLUTION else None


def once_factory(settings: Mapping[str, Any], context: BuildContext) -> OnceTrigger:
    """``type = "once"``: ``at = 2026-12-01T09:00:00+01:00`` (without an offset: in ``timezone``)."""
    table = context.reader(settings)
    zone = _zone(context, table)
    at = _moment(table, "at", zone)
    table.finish()
    assert at is not None
    return OnceTrigger(at)
