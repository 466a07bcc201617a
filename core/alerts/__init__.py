"""Alerts: what corral tells an operator, and the sinks that deliver it.

An :class:`Alert` is built by the daemon (run failed, breaker opened, budget reached,
approval waiting, ...) and handed to each configured sink's ``deliver``, which either
returns (delivered) or raises :class:`SinkError` saying whether a retry can help.
"""

from __future__ import annotations

from corral.alerts.alert import Alert, AlertError, FieldValue, Severity
from corral.alerts.sinks import (
    BUILTIN_SINKS,
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
