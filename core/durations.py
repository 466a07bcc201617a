"""Durations as an operator or a plugin author writes them: ``90``, ``"90s"``, ``"1h30m"``.

Imports nothing: the config (:mod:`corral.config.units` re-exports these), the CLI and a
tool's retry policy, which is read in the agent's process too, all read durations here.
"""

from __future__ import annotations

import re

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
