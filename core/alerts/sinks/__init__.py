"""The built-in alert sinks, one module each, and what they share (``base``).

``BUILTIN_SINKS`` maps each configurable sink's ``kind`` to its class; the log sink is
apart because the daemon builds it with its own logger and it is always on.
"""

from __future__ import annotations

from collections.abc import Mapping
from types import MappingProxyType

from corral.alerts.sinks._secret import Secret, redact_url
from corral.alerts.sinks._settings import Settings
from corral.alerts.sinks.base import Sink, SinkError
from corral.alerts.sinks.command import CommandSink
from corral.alerts.sinks.desktop import DesktopSink
from corral.alerts.sinks.log import LogSink
from corral.alerts.sinks.mail import EmailSink
from corral.alerts.sinks.ntfy import NtfySink
from corral.alerts.sinks.webhook import WebhookSink

BUILTIN_SINKS: Mapping[str, type[Sink]] = MappingProxyType(
    {cls.kind: cls for cls in (DesktopSink, EmailSink, WebhookSink, NtfySink, CommandSink)}
)
"""``kind`` -> class for the sinks built from config alone: ``cls(config, section=...)``."""

__all__ = [
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
]
