"""The alert: one thing an operator should hear about, as every sink receives it.

An :class:`Alert` is immutable and validated when built, so a sink never meets a
malformed one, and it round-trips through :meth:`Alert.to_dict` / :meth:`Alert.from_dict`
as plain msgpack- and JSON-safe values: that dict is what the durable outbox stores and
what the webhook and command sinks send.
"""

from __future__ import annotations

import math
import time
import uuid
from collections.abc import Mapping
from dataclasses import dataclass, field
from enum import StrEnum
from typing import Any

from corral.errors import CorralError

FieldValue = str | int | float | bool | None
"""What an alert's ``fields`` may hold: scalars every sink can show and msgpack can store."""

_INT_LIMIT = 2**63  # msgpack's signed 64-bit range; a larger int cannot be stored


class Severity(StrEnum):
    """How urgent an alert is; sinks map it to their own priority scale."""

    INFO = "info"
    WARNING = "warning"
    CRITICAL = "critical"


class AlertError(CorralError, ValueError):
    """corral developer or plugin author: an alert was built, or read back, with a bad field."""


def _new_id() -> str:
    return uuid.uuid4().hex


@dataclass(frozen=True, slots=True, kw_only=True)
class Alert:
    """One alert. ``key`` is the dedup key: alerts about the same condition share it.

    ``resolved`` marks the all-clear for an earlier alert with the same key. ``created``
    is seconds since the epoch (UTC), like every timestamp corral stores.
    """

    key: str
    severity: Severity
    title: str
    body: str = ""
    agent: str | None = None
    run_id: str | None = None
    fields: Mapping[str, FieldValue] = field(default_factory=dict, hash=False)
    resolved: bool = False
    id: str = field(default_factory=_new_id)
    created: float = field(default_factory=time.time)
    links: Mapping[str, str] = field(default_factory=dict, hash=False)
    """Named URLs a sink may show or act on. ``approval``: a waiting approval's signed link
    (docs/console.md): opening it shows the request; a POST with the header
    ``X-Corral-Action: approve`` (or ``deny``) decides it. Added at delivery, never stored."""

    def __post_init__(self) -> None:
        for name in ("id", "key", "title"):
            value = getattr(self, name)
            if not isinstance(value, str) or not value.strip():
                raise AlertError(f"alert {name} must be a non-empty string, got {value!r}")
        if not isinstance(self.body, str):
            raise AlertError(f"alert body must be a string, got {type(self.body).__name__}")
        for name in ("agent", "run_id"):
            value = getattr(self, name)
            if value is not None and (not isinstance(value, str) or not value):
                raise AlertError(f"alert {name} must be a non-empty string or None, got {value!r}")
        try:
            severity = Severity(self.severity)
        except ValueError:
            allowed = ", ".join(repr(s.value) for s in Severity)
            raise AlertError(f"alert severity {self.severity!r} is not one of {allowed}") from None
        object.__setattr__(self, "severity", severity)
        if not isinstance(self.resolved, bool):
            raise AlertError(f"alert resolved must be true or false, got {self.resolved!r}")
        created = self.created
        if isinstance(created, bool) or not isinstance(created, int | float) or not math.isfinite(created):
            raise AlertError(f"alert created must be a finite number of seconds since the epoch, got {created!r}")
        object.__setattr__(self, "created", float(created))
        object.__setattr__(self, "fields", _checked_fields(self.fields))
        object.__setattr__(self, "links", _checked_links(self.links))

    def to_dict(self) -> dict[str, Any]:
        """Plain values only (str, float, bool, None, dict), safe for msgpack and JSON."""
        return {
            "id": self.id,
            "key": self.key,
            "severity": self.severity.value,
            "title": self.title,
            "body": self.body,
            "agent": self.agent,
            "run_id": self.run_id,
            "fields": dict(self.fields),
            "created": self.created,
            "resolved": self.resolved,
            "links": dict(self.links),
        }

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> Alert:
        """Rebuild an alert from :meth:`to_dict`'s output; unknown or missing keys are errors."""
        if not isinstance(data, Mapping):
            raise AlertError(f"a stored alert must be a map, got {type(data).__name__}")
        known = {"id", "key", "severity", "title", "body", "agent", "run_id", "fields", "created", "resolved", "links"}
        unknown = sorted(str(k) for k in data if k not in known)
        if unknown:
            raise AlertError(f"a stored alert has unknown keys {unknown}; it was not written by to_dict()")
        missing = sorted(k for k in ("id", "key", "severity", "title", "created") if k not in data)
        if missing:
            raise AlertError(f"a stored alert lacks {missing}; it was not written by to_dict()")
        return cls(**data)


def _checked_fields(fields: object) -> dict[str, FieldValue]:
    if not isinstance(fields, Mapping):
        raise AlertError(f"alert fields must be a map of names to values, got {type(fields).__name__}")
    out: dict[str, FieldValue] = {}
    for name, value in fields.items():
        if not isinstance(name, str) or not name:
            raise AlertError(f"alert field names must be non-empty strings, got {name!r}")
        if isinstance(value, float) and not math.isfinite(value):
            raise AlertError(f"alert field {name!r} is {value!r}; give a finite number or a string")
        if isinstance(value, int) and not isinstance(value, bool) and not -_INT_LIMIT <= value < _INT_LIMIT:
            raise AlertError(f"alert field {name!r} does not fit in 64 bits; give it as a string")
        if value is not None and not isinstance(value, str | int | float | bool):
            raise AlertError(
                f"alert field {name!r} is a {type(value).__name__}; give a string, number, boolean or None"
            )
        out[name] = value
    return out


def _checked_links(links: object) -> dict[str, str]:
    if not isinstance(links, Mapping):
        raise AlertError(f"alert links must be a map of names to URLs, got {type(links).__name__}")
    out: dict[str, str] = {}
    for name, url in links.items():
        if not isinstance(name, str) or not name:
            raise AlertError(f"alert link names must be non-empty strings, got {name!r}")
        if not isinstance(url, str) or not url.startswith(("http://", "https://")) or any(c.isspace() for c in url):
            raise AlertError(f"alert link {name!r} must be an http(s) URL without spaces")
        out[name] = url
    return out
