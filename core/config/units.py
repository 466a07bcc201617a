"""Durations and time zones as an operator writes them: ``"1h30m"``, ``"Europe/Paris"``.

Pure functions of their input (and of the machine's zone), importing nothing else of
corral's: the CLI's flags and the trigger kinds read durations and zones this same way.
"""

from __future__ import annotations

import datetime as dt
import functools
import os
import re
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

_DURATION = re.compile(r"(\d+(?:\.\d+)?)\s*(ms|s|m|h|d)")
_UNIT_SECONDS = {"ms": 0.001, "s": 1.0, "m": 60.0, "h": 3600.0, "d": 86400.0}


def parse_duration(value: object) -> float:
    """Seconds from ``90``, ``2.5``, ``"90s"``, ``"5m"``, ``"1h30m"`` or ``"2d"``."""
    if isinstance(value, bool):
        raise ValueError('expected a duration such as 30, "30s", "5m" or "1h"')
    if isinstance(value, int | float):
        if value < 0:
            raise ValueError("a duration cannot be negative")
        return float(value)
    if isinstance(value, str):
        text = value.strip().replace(" ", "")
        parts = _DURATION.findall(text)
        if parts and "".join(n + u for n, u in parts) == text:
            return sum(float(n) * _UNIT_SECONDS[u] for n, u in parts)
    raise ValueError(f'{value!r} is not a duration; write 30, "30s", "5m", "1h30m" or "2d"')


def local_zone() -> dt.tzinfo:
    """The machine's zone with its daylight-saving rules: ``TZ``, else ``/etc/localtime`` (a
    TZif file on Linux and macOS), read once per process. Only where neither can be read,
    today's fixed offset."""
    return _local_zone(os.environ.get("TZ", ""))


@functools.cache
def _local_zone(tz: str) -> dt.tzinfo:
    name = tz.lstrip(":")
    if name:
        try:
            return ZoneInfo(name)
        except (ZoneInfoNotFoundError, ValueError):
            pass
    try:
        with open("/etc/localtime", "rb") as tzif:
            return ZoneInfo.from_file(tzif, key="localtime")
    except (OSError, ValueError):
        local = dt.datetime.now().astimezone().tzinfo
        assert local is not None
        return local


def zone_named(name: str | None) -> dt.tzinfo:
    """The IANA zone ``name`` (None: the machine's, :func:`local_zone`); ValueError names a bad one."""
    if name is None:
        return local_zone()
    try:
        if not isinstance(name, str) or not name:
            raise ValueError
        return ZoneInfo(name)
    except (ZoneInfoNotFoundError, ValueError):
        raise ValueError(f"{name!r} is not a time zone") from None


def format_duration(seconds: float) -> str:
    """``seconds`` written back the way :func:`parse_duration` reads it, shortest first:
    ``"350ms"``, ``"4.25s"``, ``"30s"``, ``"1m30s"``, ``"1h"``, ``"2d3h"``; from a minute up,
    to the whole second."""
    if seconds < 0:
        return "-" + format_duration(-seconds)
    if seconds < 1:
        ms = seconds * 1000
        return f"{ms:.1f}".rstrip("0").rstrip(".") + "ms" if ms < 10 else f"{ms:.0f}ms"
    if seconds < 60:
        return f"{seconds:.2f}".rstrip("0").rstrip(".") + "s"
    rest = round(seconds)
    parts = []
    for unit, size in (("d", 86400), ("h", 3600), ("m", 60), ("s", 1)):
        count, rest = divmod(rest, size)
        if count:
            parts.append(f"{count}{unit}")
    return "".join(parts)
