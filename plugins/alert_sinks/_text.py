"""Turning an alert into text: one-line titles and a plain-text body every sink can share."""

from __future__ import annotations

import re
from datetime import UTC, datetime

from corral.alerts import Alert, FieldValue

_CONTROL = re.compile(r"[\x00-\x08\x0b\x0c\x0e-\x1f\x7f]")
_SPACE = re.compile(r"\s+")


def clip(text: str, limit: int) -> str:
    """``text`` cut to at most ``limit`` characters, ending in an ellipsis when cut."""
    return text if len(text) <= limit else text[: limit - 1] + "…"


def one_line(text: str, limit: int) -> str:
    """``text`` as one line (no control characters, whitespace runs collapsed), clipped.

    Titles go into mail and HTTP headers, where a newline would inject a header.
    """
    return clip(_SPACE.sub(" ", _CONTROL.sub("", text)).strip(), limit)


def without_controls(text: str) -> str:
    """``text`` keeping newlines and tabs but no other control characters."""
    return _CONTROL.sub("", text)


def headline(alert: Alert, limit: int = 200) -> str:
    """``CRITICAL: title`` or ``RESOLVED: title``, one line."""
    state = "RESOLVED" if alert.resolved else alert.severity.value.upper()
    return one_line(f"{state}: {alert.title}", limit)


def show(value: FieldValue) -> str:
    """A field value as an operator reads it (``true``, not ``True``)."""
    if value is None:
        return "-"
    if isinstance(value, bool):
        return "true" if value else "false"
    return str(value)


def iso_time(created: float) -> str:
    """``created`` as UTC ISO 8601 with seconds, e.g. ``2026-03-01T12:00:00Z``."""
    return datetime.fromtimestamp(created, UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def details(alert: Alert) -> list[tuple[str, str]]:
    """Agent, run and the alert's fields, as (name, value) pairs in a stable order."""
    pairs: list[tuple[str, str]] = []
    if alert.agent:
        pairs.append(("agent", alert.agent))
    if alert.run_id:
        pairs.append(("run", alert.run_id))
    pairs.extend((name, show(value)) for name, value in alert.fields.items())
    return pairs


def plain_text(alert: Alert) -> str:
    """The body, then the details, then the alert's id and time: for mail and push messages."""
    lines: list[str] = []
    if alert.body:
        lines += [without_controls(alert.body).rstrip(), ""]
    lines += [f"{name}: {one_line(value, 500)}" for name, value in details(alert)]
    if "approval" in alert.links:
        lines += ["", f"approve or deny: {alert.links['approval']}", ""]
    lines += [
        f"severity: {alert.severity.value}",
        f"alert: {alert.id} ({alert.key})",
        f"raised: {iso_time(alert.created)}",
    ]
    return "\n".join(lines) + "\n"
