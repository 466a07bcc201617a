"""Alerts: what corral tells an operator, and what a sink needs to deliver it.

An :class:`Alert` is built by the daemon (run failed, breaker opened, budget reached,
approval waiting, ...) and handed to each configured sink's ``deliver``, which either
returns (delivered) or raises :class:`SinkError` saying whether a retry can help. A sink
plugin needs only this module: :class:`Sink`, :class:`Settings` and the alert types
(the built-in sinks, in :mod:`corral.plugins.alert_sinks`, import the same). The sink
names are imported on first use (see :mod:`corral.alerts.sinks`), so reading an alert
does not load the config machinery.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from corral.alerts.alert import Alert, AlertError, FieldValue, Severity

if TYPE_CHECKING:
    from corral.alerts.sinks import LogSink, Secret, Settings, Sink, SinkError, redact_url

_FROM_SINKS = ("LogSink", "Secret", "Settings", "Sink", "SinkError", "redact_url")


def __getattr__(name: str) -> Any:
    if name not in _FROM_SINKS:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    from corral.alerts import sinks

    value = getattr(sinks, name)
    globals()[name] = value
    return value


__all__ = [
    "Alert",
    "AlertError",
    "FieldValue",
    "LogSink",
    "Secret",
    "Settings",
    "Severity",
    "Sink",
    "SinkError",
    "redact_url",
]
