"""``[agents.NAME.tool_settings.TOOL]``: what the operator tells one agent's tool.

A tool that takes a ``settings`` parameter (see :mod:`corral.tools`) gets its table from
the agent's config: the hosts ``fetch_url`` may reach, say. The settings belong to the
operator, not the model: the model cannot see or change them, and they travel to the
agent's process with the welcome. The table's shape is checked at load (a table per
granted tool); its contents against the tool's ``TypedDict`` once plugins are loaded
(``corral check`` and the daemon's start-up), because only then is the tool known.
"""

from __future__ import annotations

import difflib
from collections.abc import Mapping
from dataclasses import replace
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from corral.config import CorralConfig
    from corral.tools import ToolSpec


def read_tool_settings(
    where: str, data: Mapping[str, Any], agents: Mapping[str, Any]
) -> tuple[dict[str, Any], list[str]]:
    """Each agent's ``tool_settings``, over parsed :class:`corral.config.AgentConfig` objects.

    Returns the agents with ``tool_settings`` filled in, and every problem found.
    """
    tables = data.get("agents")
    problems: list[str] = []
    out: dict[str, Any] = {}
    for name, agent in agents.items():
        table = tables.get(name, {}) if isinstance(tables, dict) else {}
        raw = table.get("tool_settings", {}) if isinstance(table, dict) else {}
        at = f"{where}: [agents.{name}.tool_settings]"
        if not isinstance(raw, dict):
            problems.append(f"{at}: must be a table of tables, one per tool, e.g. [agents.{name}.tool_settings.TOOL]")
            out[name] = agent
            continue
        settings: dict[str, dict[str, Any]] = {}
        for tool, values in raw.items():
            if tool not in agent.tools:
                near = difflib.get_close_matches(tool, agent.tools, n=1)
                hint = f"did you mean {near[0]!r}?" if near else "add the tool to tools = [...] or remove the table"
                problems.append(f"{at} {tool}: settings for a tool agent {name!r} is not granted; {hint}")
            elif not isinstance(values, dict):
                problems.append(f"{at} {tool}: must be a table of settings, e.g. [agents.{name}.tool_settings.{tool}]")
            else:
                settings[tool] = values
        out[name] = replace(agent, tool_settings=settings)
    return out, problems


def settings_problems(config: CorralConfig, tools: Mapping[str, ToolSpec]) -> list[str]:
    """Settings tables that the loaded tools would not accept, each with its fix."""
    import jsonschema_rs

    problems: list[str] = []
    for agent in config.agents.values():
        for name in agent.tools:
            at = f"{config.path}: [agents.{agent.name}.tool_settings.{name}]"
            spec = tools.get(name)
            if spec is None:
                continue  # `corral check` already says no plugin provides it
            if name not in agent.tool_settings:
                needed = (spec.settings_schema or {}).get("required")
                if needed:
                    problems.append(f"{at}: tool {name!r} needs settings {', '.join(needed)}; add the table")
                continue
            if spec.settings_schema is None:
                problems.append(f"{at}: tool {name!r} ({spec.plugin}) takes no settings; remove the table")
                continue
            validator = jsonschema_rs.Draft202012Validator(spec.settings_schema)
            for error in validator.iter_errors(agent.tool_settings[name]):
                key = "/".join(str(p) for p in error.instance_path) or "table"
                problems.append(f"{at} {key}: {error.message}; see the tool's documentation (docs/tools.md)")
    return problems


def welcome_entry(
    spec: ToolSpec, agent_settings: Mapping[str, Mapping[str, Any]], secrets: Mapping[str, str]
) -> dict[str, Any]:
    """What the agent's process learns about one granted tool (the welcome's ``tools`` map):
    whether it takes ``idempotency_key``, whose function to run, its ``settings`` when it
    takes them, and the values of the secrets it declares that the agent is granted."""
    entry: dict[str, Any] = {"takes_key": spec.takes_idempotency_key, "plugin": spec.plugin}
    if spec.settings_schema is not None:
        entry["settings"] = dict(agent_settings.get(spec.name, {}))
    if spec.secrets:
        entry["secrets"] = {name: secrets[name] for name in spec.secrets if name in secrets}
    return entry


def tool_secret_names(tools: Mapping[str, ToolSpec | None], granted: tuple[str, ...]) -> frozenset[str]:
    """The secrets some granted tool declares: those go to the tools only, never to the agent's environment."""
    return frozenset(name for tool in granted if (spec := tools.get(tool)) is not None for name in spec.secrets)
