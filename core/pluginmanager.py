"""Finding, loading and asking plugins.

Plugins come from three places and are registered the same way: the built-ins
(:data:`BUILTINS`, by module name), the ``corral`` entry-point group of installed
packages, and drop-ins (modules or ``.py`` files named in ``[corral] plugins``, and
``*.py`` files in ``<home>/plugins``). A plugin that fails to import is logged and
skipped, never fatal.
"""

from __future__ import annotations

import importlib
import importlib.metadata
import importlib.util
import pkgutil
import re
import sys
from collections.abc import Callable, Collection, Iterable, Mapping
from dataclasses import dataclass, field, replace
from functools import partial
from pathlib import Path
from types import ModuleType
from typing import Any

import pluggy

from corral import hookspecs
from corral.errors import PluginError, ToolDefinitionError
from corral.tools import TOOL_NAME, ToolSpec, spec_for, tool_name

ENTRY_POINT_GROUP = "corral"

BUILTINS: tuple[str, ...] = (
    "corral.plugins.example_tools",
    "corral.plugins.files",
    "corral.plugins.fetch",
    "corral.plugins.shell",
    "corral.plugins.guardrails",
    "corral.plugins.model_providers",
    "corral.plugins.alert_sinks",
    "corral.plugins.triggers",
    "corral.plugins.sandbox_linux",
    "corral.plugins.sandbox_macos",
)
"""Module names of the built-in plugins, loaded first, by name, exactly as a drop-in named
in ``[corral] plugins`` is: core never imports ``corral.plugins`` itself."""


@dataclass
class Plugins:
    """The loaded plugin manager, the tools it offers, and what failed to load."""

    manager: pluggy.PluginManager
    tools: dict[str, ToolSpec] = field(default_factory=dict)
    guardrails: list[Any] = field(default_factory=list)
    """Registered :class:`corral.guardrails.Guardrail` objects, in hook order."""
    providers: dict[str, Any] = field(default_factory=dict)
    """Model API adapters by provider name (:class:`corral.models.provider.Adapter`)."""
    failures: list[str] = field(default_factory=list)
    entry_points: list[tuple[str, str]] = field(default_factory=list)
    """(name, "module:attr") of the ``corral`` entry points found, so an agent's process
    can load the same ones without scanning every installed distribution again."""

    def names(self) -> list[str]:
        return sorted(name for name, _ in self.manager.list_name_plugin() if name)


def new_manager() -> pluggy.PluginManager:
    manager = pluggy.PluginManager("corral")
    manager.add_hookspecs(hookspecs)
    return manager


def _load_file(path: Path) -> ModuleType:
    safe = re.sub(r"\W", "_", path.stem)
    name = f"corral_dropin_{safe}"
    spec = importlib.util.spec_from_file_location(name, path)
    if spec is None or spec.loader is None:
        raise PluginError(f"{path} is not a loadable Python file")
    module = importlib.util.module_from_spec(spec)
    sys.modules[name] = module
    try:
        spec.loader.exec_module(module)
    except BaseException:
        del sys.modules[name]
        raise
    return module


def find_entry_points() -> list[tuple[str, str]]:
    """(name, "module:attr") of every installed ``corral`` entry point, sorted by name."""
    found = importlib.metadata.entry_points(group=ENTRY_POINT_GROUP)
    return sorted((ep.name, ep.value) for ep in found)


def _sources(
    extra: Iterable[str], plugin_dir: Path | None, entry_points: Iterable[tuple[str, str]], builtins: bool = True
) -> list[tuple[str, Callable[[], Any]]]:
    """(name, loader) for every plugin, in a fixed order: built-ins, entry points, drop-ins."""
    sources: list[tuple[str, Callable[[], Any]]] = [
        (name, partial(importlib.import_module, name)) for name in (BUILTINS if builtins else ())
    ]
    for name, value in entry_points:
        sources.append((f"entrypoint:{name}", partial(pkgutil.resolve_name, value)))
    for spec in extra:
        if spec.endswith(".py"):
            path = Path(spec)
            sources.append((str(path), partial(_load_file, path)))
        else:
            sources.append((spec, partial(importlib.import_module, spec)))
    if plugin_dir is not None and plugin_dir.is_dir():
        for path in sorted(plugin_dir.glob("*.py")):
            sources.append((str(path), partial(_load_file, path)))
    return sources


def load_plugins(
    extra: Iterable[str] = (), plugin_dir: Path | None = None, warn: Callable[[str], None] = lambda message: None
) -> Plugins:
    """Register every plugin, then describe their tools. Broken plugins are skipped."""
    plugins = register_plugins(extra, plugin_dir, warn)
    plugins.tools = collect_tools(plugins.manager, plugins.failures, warn)
    plugins.guardrails = collect_guardrails(plugins.manager, plugins.failures, warn)
    plugins.providers = collect_providers(plugins.manager, plugins.failures, warn)
    return plugins


def register_plugins(
    extra: Iterable[str] = (),
    plugin_dir: Path | None = None,
    warn: Callable[[str], None] = lambda message: None,
    entry_points: Iterable[tuple[str, str]] | None = None,
    builtins: bool = True,
    only: Collection[str] | None = None,
) -> Plugins:
    """Import and register every plugin without asking for anything yet.

    ``entry_points`` are the ones the daemon found (the agent's process passes them on);
    by default the installed distributions are scanned. ``builtins=False`` leaves out
    corral's own plugins (for a hook none of them implements). ``only`` keeps just the
    plugins of those names: an agent's process imports the plugins of its granted tools
    and nothing else, which keeps its start-up and memory small.
    """
    manager = new_manager()
    plugins = Plugins(manager, entry_points=list(find_entry_points() if entry_points is None else entry_points))
    for name, load in _sources(extra, plugin_dir, plugins.entry_points, builtins):
        if only is not None and name not in only:
            continue
        try:
            manager.register(load(), name=name)
        except Exception as exc:  # a plugin's import may raise anything
            message = f"plugin {name} failed to load and was skipped: {type(exc).__name__}: {exc}"
            plugins.failures.append(message)
            warn(message)
    try:
        manager.check_pending()
    except pluggy.PluginValidationError as exc:
        message = f"a plugin implements a hook corral does not have: {exc}"
        plugins.failures.append(message)
        warn(message)
    return plugins


def ask_each(
    manager: pluggy.PluginManager,
    hook: str,
    what: str,
    make_register: Callable[[str], Callable[..., None]],
    failures: list[str],
    warn: Callable[[str], None],
) -> None:
    """Call a registering hook one plugin at a time, each with its own ``register``, so a
    plugin whose registration fails is reported by name and the others are kept."""
    for impl in ordered(getattr(manager.hook, hook)):
        plugin = impl.plugin_name
        try:
            call_impl(impl, register=make_register(plugin))
        except (PluginError, ToolDefinitionError) as exc:
            failures.append(str(exc))
            warn(str(exc))
        except Exception as exc:
            message = f"plugin {plugin} failed while registering {what}: {type(exc).__name__}: {exc}"
            failures.append(message)
            warn(message)


def collect_tools(
    manager: pluggy.PluginManager, failures: list[str], warn: Callable[[str], None]
) -> dict[str, ToolSpec]:
    """Ask each plugin for its tools, one plugin at a time so one failure is contained."""
    tools: dict[str, ToolSpec] = {}

    def make_register(plugin: str) -> Callable[..., None]:
        def register(func: Callable[..., Any], *, name: str | None = None) -> None:
            spec = spec_for(func)
            if name is not None:
                if not TOOL_NAME.match(name):
                    raise ToolDefinitionError(
                        f"plugin {plugin} registers a tool as {name!r}, which is not a valid tool name; "
                        "use letters, digits, '_', '.' or '-' (at most 64), starting with a letter or '_'"
                    )
                spec = replace(spec, name=name)
            spec = spec.with_plugin(plugin)
            if spec.name in tools:
                raise PluginError(
                    f"tool {spec.name!r} is registered by both {tools[spec.name].plugin} and {plugin}; "
                    "uninstall one or register it under another name"
                )
            tools[spec.name] = spec

        return register

    ask_each(manager, "corral_register_tools", "tools", make_register, failures, warn)
    return tools


def collect_guardrails(manager: pluggy.PluginManager, failures: list[str], warn: Callable[[str], None]) -> list[Any]:
    """Ask each plugin for its guardrails; one that registers something without ``name`` and
    ``start`` is reported and skipped."""
    guardrails: list[Any] = []

    def make_register(plugin: str) -> Callable[..., None]:
        def register(guardrail: Any) -> None:
            if not isinstance(getattr(guardrail, "name", None), str) or not callable(getattr(guardrail, "start", None)):
                raise PluginError(
                    f"plugin {plugin} registered {guardrail!r} as a guardrail; a guardrail needs a `name` string "
                    "and a `start(run, agent)` method (see corral.guardrails)"
                )
            guardrails.append(guardrail)

        return register

    ask_each(manager, "corral_register_guardrails", "guardrails", make_register, failures, warn)
    return guardrails


def collect_providers(
    manager: pluggy.PluginManager, failures: list[str], warn: Callable[[str], None]
) -> dict[str, Any]:
    """Ask each plugin for its model providers; a name registered twice is reported with both plugins."""
    providers: dict[str, Any] = {}
    owners: dict[str, str] = {}

    def make_register(plugin: str) -> Callable[..., None]:
        def register(adapter: Any) -> None:
            name = getattr(adapter, "name", None)
            if not isinstance(name, str) or not all(callable(getattr(adapter, m, None)) for m in ("build", "parse")):
                raise PluginError(
                    f"plugin {plugin} registered {adapter!r} as a model provider; it needs a `name` and "
                    "`build`/`parse` methods (see corral.models.provider.Adapter)"
                )
            if name in providers:
                raise PluginError(
                    f"model provider {name!r} is registered by both {owners[name]} and {plugin}; uninstall one"
                )
            providers[name], owners[name] = adapter, plugin

        return register

    ask_each(manager, "corral_register_model_providers", "model providers", make_register, failures, warn)
    return providers


def ordered(caller: pluggy.HookCaller) -> list[pluggy.HookImpl]:
    """Implementations in pluggy's own call order (``tryfirst`` first), wrappers excluded.

    corral calls each implementation itself to contain failures; pluggy keeps them in
    the reverse of the order it calls them. Wrappers only make sense inside pluggy's
    own loop, so they are not offered these hooks.
    """
    return [impl for impl in reversed(caller.get_hookimpls()) if not (impl.wrapper or impl.hookwrapper)]


def call_impl(impl: pluggy.HookImpl, **kwargs: Any) -> Any:
    """Call one hookimpl with the arguments it declares (pluggy lets it take a subset)."""
    return impl.function(*[kwargs[name] for name in impl.argnames])


def tool_functions(manager: pluggy.PluginManager, owners: Mapping[str, str]) -> dict[str, Callable[..., Any]]:
    """Tool name -> function, for the tools in ``owners``, each taken from the plugin the
    daemon chose (``owners[name]``), without deriving schemas.

    The agent's process needs only the callables: the daemon already validated each
    call against that plugin's schema before telling the agent to run it.
    """
    functions: dict[str, Callable[..., Any]] = {}
    for impl in ordered(manager.hook.corral_register_tools):

        def register(func: Callable[..., Any], *, name: str | None = None, plugin: str = impl.plugin_name) -> None:
            tool = name or tool_name(func)
            if owners.get(tool) == plugin:
                functions.setdefault(tool, func)

        try:
            call_impl(impl, register=register)
        except Exception:  # the daemon reported it; a tool it refused is never exec'd here
            continue
    return functions
