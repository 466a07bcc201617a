"""``[agents.NAME.tool_settings.TOOL]``: what the operator tells one agent's tool.

A tool that takes a ``settings`` parameter (see :mod:`corral.tools`) gets its table from
the agent's config: the hosts ``fetch_url`` may reach, say. The settings belong to the
operator, not the model: the model cannot see or change them, and they travel to the
agent's process with the welcome. The table's shape is checked here, at load (a table
per granted tool); its contents against the tool's ``TypedDict`` once plugins are loaded
(:func:`corral.config.check.settings_problems`, run by ``corral check`` and the daemon's
start-up), because only then is the tool known.
"""

from __future__ import annotations

import difflib
from collections.abc import Mapping
from typing import Any

from corral.config.problems import Problems


def read_tool_settings(p: Problems, agent: str, data: object, tools: tuple[str, ...]) -> dict[str, Mapping[str, Any]]:
    """One agent's ``tool_settings``: a table for each of its granted ``tools`` that takes settings."""
    section = f"agents.{agent}.tool_settings"
    shape = f"a table of tables, one per tool, e.g. [agents.{agent}.tool_settings.TOOL]"
    settings: dict[str, Mapping[str, Any]] = {}
    for tool, values in p.table(section, data, shape).items():
        if tool not in tools:
            near = difflib.get_close_matches(tool, tools, n=1)
            hint = f"did you mean {near[0]!r}?" if near else "add the tool to tools = [...] or remove the table"
            p.fail(section, tool, f"settings for a tool agent {agent!r} is not granted; {hint}")
        elif isinstance(values, Mapping):
            settings[tool] = values
        else:
            p.fail(section, tool, f"must be a table of settings, e.g. [agents.{agent}.tool_settings.{tool}]")
    return settings
