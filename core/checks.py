"""``corral check``: what a valid TOML file can still get wrong, found before ``up``."""

from __future__ import annotations

from corral.config import CorralConfig
from corral.pluginmanager import Plugins, load_plugins


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
        if not ((agent.code / f"{relative}.py").is_file() or (agent.code / relative / "__init__.py").is_file()):
            problems.append(
                f"{where}: [agents.{agent.name}] entry: module {module!r} not found in {agent.code}; "
                f"create {relative}.py there or fix entry"
            )
        for tool in agent.tools:
            if tool not in plugins.tools:
                known = ", ".join(sorted(plugins.tools)) or "none"
                problems.append(
                    f"{where}: [agents.{agent.name}] tools: no plugin provides tool {tool!r}; available: {known}"
                )
    return problems
