"""What every alert sink builds on, and the one sink corral always has.

A sink type (the built-in ones are :mod:`corral.plugins.alert_sinks`, offered through
the same hook as any plugin's) subclasses :class:`Sink` (``base``) and declares its
config table with :class:`Settings` (:mod:`corral.config.settings`). :class:`LogSink` (``log``) is
corral's own: the daemon builds it with its logger and it is always on. Names are
imported on first use: every CLI command reads the config. ``Secret`` and
``redact_url`` are :mod:`corral.secrets`' own, offered here too for sink plugins.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from corral.alerts.sinks.base import Sink, SinkError
    from corral.alerts.sinks.log import LogSink
    from corral.config.settings import Settings

from corral.secrets import Secret, redact_url

_WHERE = {
    "Settings": "corral.config.settings",
    "Sink": f"{__name__}.base",
    "SinkError": f"{__name__}.base",
    "LogSink": f"{__name__}.log",
}


def __getattr__(name: str) -> Any:
    if name not in _WHERE:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    value = getattr(importlib.import_module(_WHERE[name]), name)
    globals()[name] = value
    return value


__all__ = [
    "LogSink",
    "Secret",
    "Settings",
    "Sink",
    "SinkError",
    "redact_url",
]
