"""Alerts: what corral tells an operator, and the sinks that deliver it.

An :class:`Alert` is built by the daemon (run failed, breaker opened, budget reached,
approval waiting, ...) and handed to each configured sink's ``deliver``, which either
returns (delivered) or raises :class:`SinkError` saying whether a retry can help. The
sink names are imported on first use (see :mod:`corral.alerts.sinks`), so reading an
alert or the config does not load the HTTP and SMTP clients.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from corral.alerts.alert import Alert, AlertError, FieldValue, Severity

if TYPE_CHECKING:
    from collections.abc import Mapping

    from corral.alerts.sinks import (
        CommandSink,
        DesktopSink,
        EmailSink,
        LogSink,
        NtfySink,
        Secret,
        Settings,
        Sink,
        SinkError,
        WebhookSink,
        redact_url,
    )

    BUILTIN_SINKS: Mapping[str, type[Sink]]

_FROM_SINKS = (
    "BUILTIN_SINKS",
    "CommandSink",
    "DesktopSink",
    "EmailSink",
    "LogSink",
    "NtfySink",
    "Secret",
    "Settings",
    "Sink",
    "SinkError",
    "WebhookSink",
    "redact_url",
)


def __getattr__(name: str) -> Any:
    if name not in _FROM_SINKS:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    from corral.alerts import sinks

    value = getattr(sinks, name)
    globals()[name] = value
    return value


__all__ = [
    "BUILTIN_SINKS",
    "Alert",
    "AlertError",
    "CommandSink",
    "DesktopSink",
    "EmailSink",
    "FieldValue",
    "LogSink",
    "NtfySink",
    "Secret",
    "Settings",
    "Severity",
    "Sink",
    "SinkError",
    "WebhookSink",
    "redact_url",
]
