"""The built-in trigger kinds, registered through the same hook as any plugin's.

``cron``, ``interval`` and ``once`` are timed (:mod:`~corral.plugins.triggers.timers`);
``file`` watches a path (:mod:`~corral.plugins.triggers.files`); ``webhook`` takes
``POST`` requests on the daemon's listener (:mod:`~corral.plugins.triggers.webhook`).
Each builds on what a third-party kind would: the base classes of
:mod:`corral.schedule.triggers`, and the reader its ``BuildContext`` gives for the
table. Manual runs (``corral run``) need no trigger. The modules are imported only when
a trigger is built: every agent's process may load the built-in plugins too, and has no
use for croniter or watchdog.
"""

from __future__ import annotations

import importlib
from collections.abc import Callable, Mapping
from typing import Any

import corral

KINDS = {
    "cron": "corral.plugins.triggers.timers:cron_factory",
    "interval": "corral.plugins.triggers.timers:interval_factory",
    "once": "corral.plugins.triggers.timers:once_factory",
    "file": "corral.plugins.triggers.files:file_factory",
    "webhook": "corral.plugins.triggers.webhook:webhook_factory",
}
"""Each kind's factory, as ``module:function``, imported when a trigger of it is built."""


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
