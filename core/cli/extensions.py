"""Commands that plugins add to ``corral`` through ``corral_register_commands``.

Plugins are found before the arguments are parsed: the installed ``corral`` entry
points, and the drop-ins the config names (``[corral] plugins``, ``<home>/plugins``),
with the config located from ``--config`` wherever it appears on the line. The built-in
plugins add no commands, so they are not imported here and every ``corral`` call stays
quick. A plugin's command cannot take the name of a built-in one; a plugin that fails is
reported on stderr and the other commands still work.
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Callable, Sequence
from typing import Any

from corral.config import find_config, load_config
from corral.errors import ConfigError, PluginError
from corral.pluginmanager import ask_each, register_plugins

AddCommands = Callable[[Any, argparse.ArgumentParser], None]


class _Guarded:
    """The subparsers as a plugin sees them: new names only."""

    def __init__(self, sub: Any, plugin: str) -> None:
        self._sub = sub
        self._plugin = plugin

    def add_parser(self, name: str, **kwargs: Any) -> argparse.ArgumentParser:
        if name in self._sub.choices:
            raise PluginError(f"plugin {self._plugin} adds a command {name!r}, which corral already has; rename it")
        parser: argparse.ArgumentParser = self._sub.add_parser(name, **kwargs)
        return parser


def add_plugin_commands(sub: Any, common: argparse.ArgumentParser, argv: Sequence[str] | None) -> None:
    """Let every plugin that implements ``corral_register_commands`` add its commands."""
    pre = argparse.ArgumentParser(add_help=False)
    pre.add_argument("--config", "-c")
    known, _ = pre.parse_known_args(list(sys.argv[1:] if argv is None else argv))
    try:
        config = load_config(find_config(known.config))
        extra, plugin_dir = config.plugins, config.home / "plugins"
    except ConfigError:
        extra, plugin_dir = (), None  # the command itself reports the config's problems
    plugins = register_plugins(extra, plugin_dir, builtins=False)

    def warn(message: str) -> None:
        print(f"corral: {message}", file=sys.stderr)

    def make_register(plugin: str) -> Callable[[AddCommands], None]:
        def register(add_commands: AddCommands) -> None:
            add_commands(_Guarded(sub, plugin), common)

        return register

    ask_each(plugins.manager, "corral_register_commands", "commands", make_register, [], warn)
