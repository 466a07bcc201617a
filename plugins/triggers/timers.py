"""The built-in timed triggers: cron expressions in a time zone, fixed intervals, one-shot times."""

from __future__ import annotations

import datetime as dt
import hashlib
import math
from collections.abc import Mapping
from typing import Any

from croniter import croniter

from corral.config import parse_duration, zone_named
from corral.errors import ConfigError
from corral.schedule.triggers import RESOLUTION, BuildContext, TimedTrigger, unknown_keys


def _zone(context: BuildContext, settings: Mapping[str, Any], problems: list[str]) -> dt.tzinfo:
    """The table's ``timezone``, else ``[corral] timezone``, else the machine's."""
    name = settings.get("timezone")
    if name is None:
        return context.zone or zone_named(None)
    try:
        return zone_named(name)
    except ValueError as exc:
        problems.append(f'{context.section} timezone: {exc}; give an IANA name such as "Europe/Paris"')
        return dt.UTC


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
    problems = unknown_keys(context.section, settings, ("cron", "timezone"))
    expression = settings.get("cron")
    if not isinstance(expression, str) or not croniter.is_valid(expression):
        fix = 'write five fields, e.g. "0 7 * * mon-fri"'
        problems.append(f"{context.section} cron: {expression!r} is not a cron expression; {fix}")
    zone = _zone(context, settings, problems)
    if problems:
        raise ConfigError(problems)
    assert isinstance(expression, str)
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
        return f"every {self.every:g}s"

    def next_after(self, moment: float) -> float | None:
        steps = math.floor((moment - self.anchor) / self.every + RESOLUTION / self.every) + 1
        return self.anchor + steps * self.every

    def last_until(self, moment: float) -> float | None:
        steps = math.floor((moment - self.anchor) / self.every + RESOLUTION / self.every)
        return self.anchor + steps * self.every


def _moment(section: str, key: str, value: object, zone: dt.tzinfo, problems: list[str]) -> float | None:
    if isinstance(value, str):
        try:
            value = dt.datetime.fromisoformat(value)
        except ValueError:
            value = None
    if isinstance(value, dt.datetime):
        return (value if value.tzinfo else value.replace(tzinfo=zone)).timestamp()
    problems.append(f"{section} {key}: give a date and time, e.g. {key} = 2026-12-01T09:00:00+01:00")
    return None


def interval_factory(settings: Mapping[str, Any], context: BuildContext) -> IntervalTrigger:
    """``type = "interval"``: ``every = "10m"``, optional ``start`` (a date-time the grid passes through)."""
    problems = unknown_keys(context.section, settings, ("every", "start", "timezone"))
    every = 0.0
    try:
        every = parse_duration(settings.get("every"))
        if every < RESOLUTION * 10:
            raise ValueError(f"{every:g}s is shorter than the scheduler's 10 ms")
    except ValueError as exc:
        problems.append(f'{context.section} every: {exc}; give an interval such as "30s" or "10m"')
    zone = _zone(context, settings, problems)
    anchor: float | None = None
    if "start" in settings:
        anchor = _moment(context.section, "start", settings["start"], zone, problems)
    if problems:
        raise ConfigError(problems)
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
    problems = unknown_keys(context.section, settings, ("at", "timezone"))
    zone = _zone(context, settings, problems)
    at = _moment(context.section, "at", settings.get("at"), zone, problems)
    if problems:
        raise ConfigError(problems)
    assert at is not None
    return OnceTrigger(at)
