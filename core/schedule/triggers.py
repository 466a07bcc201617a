"""What a trigger is, and how the scheduler gets one from a plugin.

A plugin registers trigger *kinds* through ``corral_register_triggers``:
``register(kind, factory)``. For each ``[[agents.NAME.triggers]]`` table of that
``type`` the scheduler calls ``factory(settings, context)``, which checks the table's
own keys and returns a trigger, or raises :class:`corral.ConfigError` listing every
problem (the built-in kinds, in :mod:`corral.plugins.triggers`, are built the same way).
A trigger is one of two shapes:

- :class:`TimedTrigger` computes fire times; the scheduler does the waiting, the
  jitter, the stored last fire time, the catching up after downtime, and the clock
  steps and sleeps (docs/scheduling.md, "Clock steps, suspend and wake").
- :class:`EventTrigger` is started with a :class:`TriggerEnv` and calls
  ``env.fire(payload)`` whenever its event happens (a file changed, a request came).
"""

from __future__ import annotations

import abc
import datetime as dt
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any, ClassVar

import pluggy

from corral.config.settings import Settings
from corral.errors import ConfigError, PluginError
from corral.pluginmanager import ask_each

if TYPE_CHECKING:
    from corral.config.schedule import TriggerConfig
    from corral.schedule.listener import WebhookServer

RESOLUTION = 0.001
"""Fire times closer than this (seconds) are the same time."""


@dataclass(frozen=True)
class BuildContext:
    """What a factory may need besides the table's own keys."""

    agent: str
    key: str
    """The schedule's stable identity (a timed trigger may derive a fixed offset from it)."""
    section: str
    """Where the table is, for messages: ``corral.toml: [agents.NAME.triggers.0]``."""
    base_dir: Path
    """The config file's folder: relative paths start here."""
    environ: Mapping[str, str]
    """The daemon's environment, for settings named ``*_env``."""
    settings: Any = None
    """The top-level ``[schedule]`` settings (:class:`corral.config.schedule.ScheduleSettings`)."""
    zone: dt.tzinfo | None = None
    """``[corral] timezone``: the zone of a table without its own ``timezone`` (None: the machine's)."""
    table: str = ""
    """The table the settings come from, as messages name it: ``agents.NAME.triggers.0``."""
    where: str | None = None
    """The config file, as messages name it."""

    def reader(self, settings: Mapping[str, Any]) -> Settings:
        """The kind's settings, read key by key with corral's kinds of value into one list of
        problems (the :class:`~corral.config.settings.Settings` an alert sink gets too):
        ``finish()`` raises them all, unknown keys included."""
        return Settings(self.table, settings, self.where)


class Trigger(abc.ABC):
    """Base of every trigger kind."""

    @abc.abstractmethod
    def describe(self) -> str:
        """One line for ``corral status`` and the logs, e.g. ``cron 0 7 * * * Europe/Paris``."""


class TimedTrigger(Trigger):
    """Fires at times it computes. Times are seconds since the epoch; resolution :data:`RESOLUTION`."""

    steady: ClassVar[bool] = False
    """False: fire times are wall-clock times (cron, a date): they follow the clock when it
    is set. True: they are on corral's steady time, which reads like the wall clock but
    never steps and counts sleep (intervals: "every 10 minutes" means ten real minutes)."""

    @abc.abstractmethod
    def next_after(self, moment: float) -> float | None:
        """The first fire time strictly after ``moment``, or None if it never fires again."""

    @abc.abstractmethod
    def last_until(self, moment: float) -> float | None:
        """The latest fire time at or before ``moment``, or None if there is none."""


@dataclass
class TriggerEnv:
    """What a running event trigger is given."""

    agent: str
    key: str
    fire: Callable[[Any], Awaitable[dict[str, Any]]]
    """``await env.fire(payload)``: ask for a run with ``payload`` as ``ctx.input`` (None: the
    trigger's or agent's configured input). Returns ``{"run": id}`` or ``{"skipped": reason}``."""
    webhooks: WebhookServer | None
    """The daemon's webhook listener, for triggers that receive HTTP requests."""
    log: Any
    """The daemon's logger."""


class EventTrigger(Trigger):
    """Fires when something outside happens; started and stopped by the scheduler."""

    @abc.abstractmethod
    async def start(self, env: TriggerEnv) -> None:
        """Begin watching; return promptly (run the watching in a task or thread)."""

    @abc.abstractmethod
    async def stop(self) -> None:
        """Stop watching; no ``fire`` after this returns."""


Factory = Callable[[Mapping[str, Any], BuildContext], Trigger]


@dataclass(frozen=True)
class Kind:
    factory: Factory
    plugin: str


def collect_kinds(manager: pluggy.PluginManager, warn: Callable[[str], None]) -> dict[str, Kind]:
    """Ask each plugin for its trigger kinds, one plugin at a time so one failure is contained."""
    kinds: dict[str, Kind] = {}

    def make_register(plugin: str) -> Callable[..., None]:
        def register(kind: str, factory: Factory) -> None:
            if not isinstance(kind, str) or not kind or not callable(factory):
                raise PluginError(f"plugin {plugin} registers a trigger kind {kind!r} without a name or a factory")
            if kind in kinds:
                raise PluginError(
                    f"trigger kind {kind!r} is registered by both {kinds[kind].plugin} and {plugin}; uninstall one"
                )
            kinds[kind] = Kind(factory, plugin)

        return register

    ask_each(manager, "corral_register_triggers", "triggers", make_register, [], warn)
    return kinds


def build(config: TriggerConfig, kinds: Mapping[str, Kind], context: BuildContext) -> Trigger:
    """The trigger for one table; raises ConfigError naming the table and the fix."""
    kind = kinds.get(config.kind)
    if kind is None:
        known = ", ".join(sorted(kinds)) or "none"
        raise ConfigError(
            [f"{config.section} type: unknown trigger type {config.kind!r}; known: {known} (a plugin may add more)"]
        )
    try:
        trigger = kind.factory(config.settings, context)
    except ConfigError:
        raise
    except Exception as exc:  # a plugin's factory may raise anything
        raise ConfigError(
            [f"{config.section}: plugin {kind.plugin} failed to build the trigger: {type(exc).__name__}: {exc}"]
        ) from None
    if not isinstance(trigger, TimedTrigger | EventTrigger):
        raise ConfigError(
            [f"{config.section}: plugin {kind.plugin} returned {trigger!r}, not a TimedTrigger or EventTrigger"]
        )
    return trigger
