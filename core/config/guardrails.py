"""``[agents.NAME.guardrails]``: the limits the built-in guardrails enforce for one agent.

Every agent has them, with defaults meant to stop a runaway loop long before it costs
much, not to get in the way of a normal run; set a key to ``"none"`` to lift a limit.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Annotated

from corral.config.kinds import Key, Limit, PositiveInt, Rule, Seconds, SecondsLimit, Texts
from corral.config.problems import Problems

_LIFT = ', or "none" for no limit'
ToolNames = Annotated[Texts, Rule("must be a list of tool names")]


@dataclass(frozen=True)
class GuardrailConfig:
    """One agent's guardrail settings; None lifts a limit."""

    max_model_turns: Annotated[Limit, Key(f"give the most model calls one run may make{_LIFT}")] = 100
    max_tool_calls: Annotated[Limit, Key(f"give the most tool calls one run may make{_LIFT}")] = None
    max_run_seconds: Annotated[SecondsLimit, Key(f'give a duration such as "30m"{_LIFT}')] = None
    repeat_window: Annotated[PositiveInt, Key("give how many recent actions are compared")] = 20
    repeat_warn: Annotated[PositiveInt, Key("give after how many identical actions the model is warned")] = 3
    repeat_stop: Annotated[PositiveInt, Key("give after how many identical actions the run stops")] = 5
    max_refusals: Annotated[PositiveInt, Key("give how many refused calls in a row end the run")] = 5
    approve: Annotated[ToolNames, Key('e.g. approve = ["write_file"]')] = ()
    approval_timeout: Annotated[Seconds, Key('give a duration such as "30m" or "24h"')] = 86400.0


def read_guardrails(p: Problems, section: str, data: object) -> GuardrailConfig:
    """One ``[agents.NAME.guardrails]`` table (defaults when there is none)."""
    config = p.read(section, data, GuardrailConfig, shape="a table, e.g. guardrails = { max_model_turns = 20 }")
    if config.repeat_warn >= config.repeat_stop:
        p.fail(section, "repeat_warn", f"must be below repeat_stop ({config.repeat_stop}) so a warning comes first")
    if config.repeat_stop > config.repeat_window:
        p.fail(section, "repeat_stop", f"cannot exceed repeat_window ({config.repeat_window})")
    return config
