"""The built-in trigger kinds, registered through the same hook as any plugin's.

``cron``, ``interval`` and ``once`` are timed (:mod:`corral.schedule.timers`); ``file``
watches a path (:mod:`corral.schedule.files`); ``webhook`` takes ``POST`` requests on
the daemon's listener (:mod:`corral.schedule.webhook`). Manual runs (``corral run``)
need no trigger. The modules are imported only when a trigger is built: every agent's
process loads the built-in plugins too, and has no use for croniter or watchdog.
"""

from __future__ import annotations

import importlib
from collections.abc import Callable, Mapping
from typing import Any

import corral

KINDS = {
    "cron": "corral.schedule.timers:cron_factory",
    "interval": "corral.schedule.timers:interval_factory",
    "once": "corral.schedule.timers:once_factory",
    "file": "corral.schedule.files:file_factory",
    "webhook": "corral.schedule.webhook:webhook_factory",
}


def _lazy(target: str) -> Callable[[Mapping[str, Any], Any], Any]:
    module, name = target.split(":")

    def factory(settings: Mapping[str, Any], context: Any) -> Any:
        return getattr(importlib.import_module(module), name)(settings, context)

    factory.__doc__ = f"Builds a trigger with {target}."
    return factory


@corral.hookimpl
def corral_register_triggers(register: Callable[..., None]) -> None:
    for kind, target in KINDS.items():
        register(kind, _lazy(target))
