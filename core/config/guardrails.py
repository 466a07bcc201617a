"""``[agents.NAME.guardrails]``: the limits the built-in guardrails enforce for one agent.

Every agent has them, with defaults meant to stop a runaway loop long before it costs
much, not to get in the way of a normal run; set a key to ``"none"`` to lift a limit.
"""

from __future__ import annotations

from dataclasses import dataclass, fields
from typing import Any


def _positive_int(value: object) -> int:
    if isinstance(value, bool) or not isinstance(value, int) or value <= 0:
        raise ValueError(f"{value!r} is not a positive integer")
    return value


@dataclass(frozen=True)
class GuardrailConfig:
    """One agent's guardrail settings; None lifts a limit."""

    max_model_turns: int | None = 100
    max_tool_calls: int | None = None
    max_run_seconds: float | None = None
    repeat_window: int = 20
    repeat_warn: int = 3
    repeat_stop: int = 5
    max_refusals: int = 5
    approve: tuple[str, ...] = ()
    approval_timeout: float = 86400.0


_LIMITS = ("max_model_turns", "max_tool_calls", "max_refusals", "repeat_window", "repeat_warn", "repeat_stop")


def read_guardrails(at: str, data: object) -> tuple[GuardrailConfig, list[str]]:
    """Parse one table; returns the config and the problems found (each naming its key)."""
    from corral.config import parse_duration

    if data is None:
        return GuardrailConfig(), []
    if not isinstance(data, dict):
        return GuardrailConfig(), [f"{at}: must be a table, e.g. guardrails = {{ max_model_turns = 20 }}"]
    known = [f.name for f in fields(GuardrailConfig)]
    problems = [f"{at} {key}: unknown key; known keys: {', '.join(known)}" for key in sorted(set(data) - set(known))]
    values: dict[str, Any] = {}
    for key in _LIMITS:
        if key not in data:
            continue
        value = data[key]
        if value == "none" and key in ("max_model_turns", "max_tool_calls"):
            values[key] = None
            continue
        try:
            values[key] = _positive_int(value)
        except ValueError as exc:
            lift = ' (or "none" for no limit)' if key in ("max_model_turns", "max_tool_calls") else ""
            problems.append(f"{at} {key}: {exc}; give a positive integer{lift}")
    for key in ("max_run_seconds", "approval_timeout"):
        if key not in data:
            continue
        if data[key] == "none" and key == "max_run_seconds":
            values[key] = None
            continue
        try:
            values[key] = parse_duration(data[key])
        except ValueError as exc:
            problems.append(f'{at} {key}: {exc}; give a duration such as "30m" or "24h"')
    approve = data.get("approve", [])
    if not isinstance(approve, list) or not all(isinstance(t, str) and t for t in approve):
        problems.append(f'{at} approve: must be a list of tool names, e.g. approve = ["write_file"]')
    else:
        values["approve"] = tuple(approve)
    config = GuardrailConfig(**values)
    if config.repeat_warn >= config.repeat_stop:
        problems.append(f"{at} repeat_warn: must be below repeat_stop ({config.repeat_stop}) so a warning comes first")
    if config.repeat_stop > config.repeat_window:
        problems.append(f"{at} repeat_stop: cannot exceed repeat_window ({config.repeat_window})")
    return config, problems
