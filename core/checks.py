"""``corral check``: what a valid TOML file can still get wrong, found before ``up``."""

from __future__ import annotations

import importlib.util
import os

from corral.alerts.service import configured_sinks
from corral.config import CorralConfig
from corral.pluginmanager import Plugins, load_plugins
from corral.schedule.scheduler import trigger_problems
from corral.toolsettings import settings_problems


def check_config(config: CorralConfig, plugins: Plugins | None = None) -> list[str]:
    """Problems that would make an agent fail at run time, each with its fix."""
    where = str(config.path)
    problems: list[str] = []
    if plugins is None:
        plugins = load_plugins(config.plugins, config.home / "plugins")
    problems += [f"{where}: [corral] plugins: {failure}" for failure in plugins.failures]
    for agent in config.agents.values():
        module = agent.entry.split(":", 1)[0]
        relative = module.replace(".", "/")
        in_code = (agent.code / f"{relative}.py").is_file() or (agent.code / relative / "__init__.py").is_file()
        if not in_code and not _installed(module):
            problems.append(
                f"{where}: [agents.{agent.name}] entry: module {module!r} not found in {agent.code}; "
                f"create {relative}.py there or fix entry"
            )
        for model in agent.models:
            endpoint = config.models[model].endpoint if model in config.models else None
            if endpoint is not None and endpoint.provider not in plugins.providers:
                installed = ", ".join(sorted(plugins.providers)) or "none"
                problems.append(
                    f"{where}: [models.{model}] provider: no installed plugin provides {endpoint.provider!r}; "
                    f"installed: {installed}"
                )
            missing = config.models[model].missing_key if model in config.models else None
            if missing:
                problems.append(
                    f"{where}: [models.{model}] api_key_env: {missing} is not set in this environment, so agent "
                    f"{agent.name!r} cannot call it; set {missing} where corral runs"
                )
        for tool in agent.tools:
            if tool not in plugins.tools:
                known = ", ".join(sorted(plugins.tools)) or "none"
                problems.append(
                    f"{where}: [agents.{agent.name}] tools: no plugin provides tool {tool!r}; available: {known}"
                )
                continue
            for secret in plugins.tools[tool].secrets:
                if secret not in agent.secrets:
                    problems.append(
                        f"{where}: [agents.{agent.name}] secrets: tool {tool!r} needs secret {secret!r}; add it to "
                        f"secrets (and store it with `corral secrets set {secret}`)"
                    )
    problems += configured_sinks(config, plugins.manager)[1]
    problems += trigger_problems(config, plugins.manager, os.environ)
    problems += settings_problems(config, plugins.tools)
    return problems


def _installed(module: str) -> bool:
    """Whether ``module`` is importable from the installation (``corral.assistant``, a package)."""
    try:
        return importlib.util.find_spec(module) is not None
    except (ImportError, ValueError):
        return False
