"""The built-in alert sinks, one module each, and what they share (``base``).

``BUILTIN_SINKS`` maps each configurable sink's ``kind`` to its class; the log sink is
apart because the daemon builds it with its own logger and it is always on. Names are
imported on first use: every CLI command reads the config, so the HTTP and SMTP clients
load only where sinks are built. ``Secret`` and ``redact_url`` are
:mod:`corral.secrets`' own, offered here too for sink plugins.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from collections.abc import Mapping

    from corral.alerts.sinks._settings import Settings
    from corral.alerts.sinks.base import Sink, SinkError
    from corral.alerts.sinks.command import CommandSink
    from corral.alerts.sinks.desktop import DesktopSink
    from corral.alerts.sinks.log import LogSink
    from corral.alerts.sinks.mail import EmailSink
    from corral.alerts.sinks.ntfy import NtfySink
    from corral.alerts.sinks.webhook import WebhookSink

    BUILTIN_SINKS: Mapping[str, type[Sink]]

from corral.secrets import Secret, redact_url

_WHERE = {
    "Settings": "_settings",
    "Sink": "base",
    "SinkError": "base",
    "CommandSink": "command",
    "DesktopSink": "desktop",
    "LogSink": "log",
    "EmailSink": "mail",
    "NtfySink": "ntfy",
    "WebhookSink": "webhook",
}


def _builtin_sinks() -> Mapping[str, type[Sink]]:
    from types import MappingProxyType

    classes = [getattr(importlib.import_module(f"{__name__}.{_WHERE[n]}"), n) for n in _CONFIGURABLE]
    return MappingProxyType({cls.kind: cls for cls in classes})


_CONFIGURABLE = ("DesktopSink", "EmailSink", "WebhookSink", "NtfySink", "CommandSink")


def __getattr__(name: str) -> Any:
    if name == "BUILTIN_SINKS":
        value: Any = _builtin_sinks()
    elif name in _WHERE:
        value = getattr(importlib.import_module(f"{__name__}.{_WHERE[name]}"), name)
    else:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    globals()[name] = value
    return value


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
