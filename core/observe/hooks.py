"""The events plugins hear of: the lifecycle hooks, called from the event stream.

``corral_run_started`` (a run's state became running: a first attempt or a resume),
``corral_step_done`` (every journaled step, replayed ones marked) and
``corral_run_finished`` (every change into an end state, a hold or an interruption) are
called here and nowhere else, once per event, in order, from the background thread
(:mod:`corral.observe.events`), so their guarantees are the stream's.

A plugin's hook must not hold corral up: each plugin's calls run on a thread of its own,
and delivery waits for one at most :data:`HOOK_WAIT`. A plugin whose call has not returned
by then is *stuck*: its calls are skipped (logged once) until that call returns, so the
alert rules, the log lines, the metrics and the other plugins go on.
"""

from __future__ import annotations

import functools
import queue
import threading
from collections.abc import Callable
from typing import Any

import pluggy

from corral.errors import explain
from corral.observe.events import Event
from corral.pluginmanager import call_impl, ordered
from corral.states import EventKind, RunState

HOOK_WAIT = 2.0
"""Seconds delivery waits for one plugin's hook before it counts that plugin as stuck (well
under the 5 s a foreground run gives its alerts at exit)."""


class _Plugin:
    """One plugin's calls, made in order on its own daemon thread."""

    def __init__(self, name: str, log: Any) -> None:
        self.name = name
        self._log = log
        self._calls: queue.SimpleQueue[tuple[Callable[[], Any], threading.Event]] = queue.SimpleQueue()
        self.stuck_on: str | None = None
        self.skipped = 0
        threading.Thread(target=self._loop, name=f"corral-hooks-{name}", daemon=True).start()

    def call(self, hook: str, func: Callable[[], Any], wait: float) -> None:
        """Make one call, waiting up to ``wait``; a stuck plugin's calls are skipped."""
        if self.stuck_on is not None:
            self.skipped += 1
            return
        done = threading.Event()
        self._calls.put((lambda: self._guarded(hook, func), done))
        if not done.wait(wait):
            self.stuck_on = hook
            self._log.warning(
                "plugin hook not returning; its calls are skipped until it does",
                plugin=self.name,
                hook=hook,
                waited_s=wait,
            )

    def _guarded(self, hook: str, func: Callable[[], Any]) -> None:
        try:
            func()
        except BaseException as exc:  # noqa: BLE001 - sys.exit() in a listener must not stop the others
            self._log.warning(f"plugin {self.name} failed in {hook}: {explain(exc)}")

    def _loop(self) -> None:
        while True:
            call, done = self._calls.get()
            call()
            done.set()
            if self.stuck_on is not None:
                self._log.warning("plugin hook returned", plugin=self.name, hook=self.stuck_on, skipped=self.skipped)
                self.stuck_on, self.skipped = None, 0


class HookRelay:
    """Subscribed to the event stream by the composition root."""

    def __init__(self, manager: pluggy.PluginManager, log: Any, wait: float = HOOK_WAIT) -> None:
        self._manager = manager
        self._log = log
        self._wait = wait
        self._plugins: dict[str, _Plugin] = {}

    def __call__(self, event: Event) -> None:
        if event.kind is EventKind.STEP_DONE:
            self._call("corral_step_done", run=dict(event.run), step={**event.step, "replayed": event.replayed})
        elif event.kind is EventKind.RUN_CHANGED and event.run["state"] == RunState.RUNNING.value:
            self._call("corral_run_started", run=dict(event.run))
        elif event.ended:
            self._call("corral_run_finished", run=dict(event.run))

    def _call(self, hook: str, **kwargs: Any) -> None:
        for impl in ordered(getattr(self._manager.hook, hook)):
            plugin = self._plugins.get(impl.plugin_name)
            if plugin is None:
                plugin = self._plugins[impl.plugin_name] = _Plugin(impl.plugin_name, self._log)
            plugin.call(hook, functools.partial(call_impl, impl, **kwargs), self._wait)
