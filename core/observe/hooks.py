"""The events plugins hear of: the lifecycle hooks, called from the event stream.

``corral_run_started`` (a run's state became running: a first attempt or a resume),
``corral_step_done`` (every journaled step, replayed ones marked) and
``corral_run_finished`` (every change into an end state, a hold or an interruption) are
called here and nowhere else, once per event, in order, on the background thread
(:mod:`corral.observe.events`), so their guarantees are the stream's.
"""

from __future__ import annotations

from typing import Any

import pluggy

from corral import pluginmanager
from corral.observe.events import Event
from corral.states import EventKind, RunState


class HookRelay:
    """Subscribed to the event stream by the composition root."""

    def __init__(self, manager: pluggy.PluginManager, log: Any) -> None:
        self._manager = manager
        self._log = log

    def __call__(self, event: Event) -> None:
        if event.kind is EventKind.STEP_DONE:
            self._call("corral_step_done", run=dict(event.run), step={**event.step, "replayed": event.replayed})
        elif event.kind is EventKind.RUN_CHANGED and event.run["state"] == RunState.RUNNING.value:
            self._call("corral_run_started", run=dict(event.run))
        elif event.ended:
            self._call("corral_run_finished", run=dict(event.run))

    def _call(self, hook: str, **kwargs: Any) -> None:
        if getattr(self._manager.hook, hook).get_hookimpls():  # nobody listens: build nothing
            pluginmanager.notify(self._manager, hook, self._log.warning, **kwargs)
