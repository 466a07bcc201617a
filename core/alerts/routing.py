"""Sink types from plugins, and the configured sinks built from them.

Types come only through the ``corral_register_alert_sinks`` hook (the built-ins too), so
a sink package installed with pip works exactly like the shipped ones. Building checks
every ``[alerts.sinks.NAME]`` table with its type's own validation; ``corral check``
and the daemon's start both run it.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any, Protocol

import pluggy

from corral.alerts.alert import Alert
from corral.config.alerts import AlertsConfig, SinkConfig
from corral.errors import ConfigError, PluginError
from corral.pluginmanager import ask_each


class AlertSink(Protocol):
    """What corral needs of a sink: deliver or raise SinkError, and say where it sends."""

    async def deliver(self, alert: Alert) -> None: ...

    def target(self) -> str: ...


SinkFactory = Callable[..., AlertSink]


@dataclass(frozen=True)
class SinkType:
    """A registered sink type and the plugin that offered it (named in errors)."""

    kind: str
    factory: SinkFactory
    plugin: str


@dataclass(frozen=True)
class BuiltSink:
    """One configured sink, ready to deliver."""

    config: SinkConfig
    sink: AlertSink
    plugin: str


def sink_types(manager: pluggy.PluginManager, failures: list[str]) -> dict[str, SinkType]:
    """Ask each plugin for its sink types, one at a time, so one broken plugin is contained."""
    types: dict[str, SinkType] = {}

    def make_register(plugin: str) -> Callable[..., None]:
        def register(kind: str, factory: SinkFactory) -> None:
            if not isinstance(kind, str) or not kind or not callable(factory):
                raise PluginError(f"plugin {plugin} registers an alert sink as {kind!r}; give a name and a factory")
            if kind in types:
                raise PluginError(
                    f"alert sink type {kind!r} is registered by both {types[kind].plugin} and {plugin}; "
                    "uninstall one of them"
                )
            types[kind] = SinkType(kind, factory, plugin)

        return register

    ask_each(manager, "corral_register_alert_sinks", "alert sinks", make_register, failures, lambda message: None)
    return types


def build_sinks(
    config: AlertsConfig, types: Mapping[str, SinkType], where: str
) -> tuple[dict[str, BuiltSink], list[str]]:
    """Every configured sink that can be built, and a problem (file, table, fix) for each that cannot."""
    built: dict[str, BuiltSink] = {}
    problems: list[str] = []
    for name, sink_config in config.sinks.items():
        section = f"alerts.sinks.{name}"
        found = types.get(sink_config.type)
        if found is None:
            known = ", ".join(sorted(types)) or "none"
            problems.append(
                f"{where}: [{section}] type: no plugin provides alert sink type {sink_config.type!r}; "
                f"available: {known}"
            )
            continue
        try:
            sink: Any = found.factory(dict(sink_config.settings), section=section)
        except ConfigError as exc:
            problems += [f"{where}: {problem}" for problem in exc.problems]
            continue
        except Exception as exc:  # a plugin's factory may raise anything
            problems.append(
                f"{where}: [{section}]: plugin {found.plugin} failed to build the sink: {type(exc).__name__}: {exc}"
            )
            continue
        built[name] = BuiltSink(sink_config, sink, found.plugin)
    return built, problems
