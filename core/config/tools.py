"""``[tools.NAME]`` and ``[agents.NAME.tool_settings.TOOL]``: what the operator tells a tool.

``[tools.NAME]`` holds how calls of tool NAME are retried and when its downstream's
circuit breaker opens, for every agent (:class:`ToolConfig`, read at load; a table for a
tool no plugin provides is reported once plugins are loaded, with the settings tables).

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
from dataclasses import dataclass
from typing import Annotated, Any

from msgspec import Meta

from corral.config.kinds import Key, PositiveInt, PositiveSeconds, Rule, Seconds
from corral.config.problems import Problems
from corral.retrypolicy import MAX_RETRIES, RetryPolicy, parse_backoff

Backoff = Annotated[tuple[float, float], Rule('must be "FIRST..LONGEST", e.g. "1s..30s"', parse=parse_backoff)]
"""The waits between tries: the first and the longest, ``"1s..30s"``."""
Retries = Annotated[int, Meta(ge=0, le=MAX_RETRIES), Rule(f"{{value!r}} is not a whole number from 0 to {MAX_RETRIES}")]
"""Tries after the first."""


@dataclass(frozen=True)
class ToolConfig:
    """``[tools.NAME]``: retries and breaker of one tool; a key not given keeps the tool's own
    policy (``@corral.tool(retry=...)``) or corral's default."""

    retries: Annotated[Retries, Key("give how many times a failed call is tried again (0: never)")] | None = None
    backoff: Annotated[Backoff, Key("give the first and the longest wait between tries")] | None = None
    max_retry_after: Annotated[Seconds, Key('give the longest Retry-After worth waiting for, e.g. "1m"')] | None = None
    breaker_failures: Annotated[PositiveInt, Key("give how many failures in a row open the breaker")] | None = None
    breaker_cool_down: (
        Annotated[PositiveSeconds, Key('give how long an open breaker stays open, e.g. "30s"')] | None
    ) = None

    def policy(self, declared: RetryPolicy | None) -> RetryPolicy | None:
        """The tool's retry policy: ``declared`` (the decorator's) with this table's keys over it.

        A table that sets a retry key gives a tool that declared none the default policy
        for the keys it leaves out."""
        given: dict[str, Any] = {
            key: value
            for key, value in (
                ("retries", self.retries),
                ("backoff", self.backoff),
                ("max_retry_after", self.max_retry_after),
            )
            if value is not None
        }
        if not given:
            return declared
        base = declared or RetryPolicy()
        return RetryPolicy(
            given.get("retries", base.retries),
            given.get("backoff", base.backoff),
            given.get("max_retry_after", base.max_retry_after),
        )


def read_tools(p: Problems, data: object) -> dict[str, ToolConfig]:
    """Every ``[tools.NAME]`` table."""
    tools: dict[str, ToolConfig] = {}
    for name, table in p.table("tools", data, "tables such as [tools.fetch_url]").items():
        tools[name] = p.read(f"tools.{name}", table, ToolConfig)
    return tools


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
