"""Durations and time zones as an operator writes them: ``"1h30m"``, ``"Europe/Paris"``.

Pure functions of their input (and of the machine's zone), importing nothing else of
corral's but :mod:`corral.durations` (durations live there, so an agent's process can read
one without loading the config package): the CLI's flags and the trigger kinds read
durations and zones this same way.
"""

from __future__ import annotations

import datetime as dt
import functools
import os
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from corral.durations import format_duration, parse_duration

__all__ = ["format_duration", "local_zone", "parse_duration", "zone_named"]


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
