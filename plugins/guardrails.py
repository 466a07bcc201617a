"""The built-in guardrails, registered like any plugin's.

- ``limits``: model turns, tool calls and wall time per run (``max_model_turns``,
  ``max_tool_calls``, ``max_run_seconds``): the call past a limit stops the run.
- ``repeats``: the same request (same tool and arguments, or the same model request)
  ``repeat_warn`` times within the last ``repeat_window`` actions is refused with a
  warning the model reads; at ``repeat_stop`` the run stops. It watches a run from its
  first model call on: a loop is a model's failure mode, while code that polls a tool
  with the same arguments means to.
- ``refusals``: ``max_refusals`` refused calls in a row (unknown tools, invalid
  arguments, denials) stop the run: a model that cannot correct itself is not left to try
  forever.
- ``approval``: a high-stakes tool, or one listed in ``approve``, waits for a human.

Each agent's settings are its ``[agents.NAME.guardrails]`` table (docs/guardrails.md).
"""

from __future__ import annotations

import time
from collections import Counter, deque
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

import corral
from corral.guardrails import Action, Decision, Verdict
from corral.schedule.clock import awake_since

if TYPE_CHECKING:
    from corral.config import AgentConfig
    from corral.config.guardrails import GuardrailConfig
    from corral.guardrails import RunGuard


class _Limits:
    def __init__(self, config: GuardrailConfig, ran: Callable[[], float]) -> None:
        self.config = config
        self.ran = ran
        self.turns = 0
        self.tools = 0

    def before(self, action: Action) -> Decision | None:
        config = self.config
        if config.max_run_seconds is not None and self.ran() > config.max_run_seconds:
            return _stop(f"the run has lasted longer than max_run_seconds ({config.max_run_seconds:g} s)", "limits")
        if action.kind == "model":
            self.turns += 1
            if config.max_model_turns is not None and self.turns > config.max_model_turns:
                return _stop(f"model turn {self.turns} is past max_model_turns ({config.max_model_turns})", "limits")
        elif action.kind == "tool":
            self.tools += 1
            if config.max_tool_calls is not None and self.tools > config.max_tool_calls:
                return _stop(f"tool call {self.tools} is past max_tool_calls ({config.max_tool_calls})", "limits")
        return None

    def after(self, step: dict[str, Any]) -> Decision | None:
        return None


class _Repeats:
    def __init__(self, config: GuardrailConfig) -> None:
        self.config = config
        self.recent: deque[str] = deque()
        self.counts: Counter[str] = Counter()
        self.watching = False

    def before(self, action: Action) -> Decision | None:
        self.watching = self.watching or action.kind == "model"
        if not self.watching or action.kind not in ("model", "tool"):
            return None
        config, fp = self.config, action.fp
        self.recent.append(fp)
        self.counts[fp] += 1
        if len(self.recent) > config.repeat_window:
            self.counts[self.recent.popleft()] -= 1
        seen = self.counts[fp]
        what = f"tool {action.name!r} with the same arguments" if action.kind == "tool" else "the same model request"
        if seen >= config.repeat_stop:
            return _stop(f"{what} {seen} times in the last {config.repeat_window} actions: a loop", "repeats")
        if seen >= config.repeat_warn:
            return Decision(
                Verdict.WARN,
                f"{what} {seen} times in the last {config.repeat_window} actions; it will not give a different "
                f"result. Change approach or finish; at {config.repeat_stop} the run is stopped.",
                "repeats",
            )
        return None

    def after(self, step: dict[str, Any]) -> Decision | None:
        return None


class _Refusals:
    def __init__(self, config: GuardrailConfig) -> None:
        self.limit = config.max_refusals
        self.in_a_row = 0

    def before(self, action: Action) -> Decision | None:
        return None

    def after(self, step: dict[str, Any]) -> Decision | None:
        if step.get("kind") not in ("model", "tool") or step.get("status") != "done":
            return None
        if (step.get("error") or {}).get("kind") != "refused":
            if step["kind"] == "tool":  # a call that ran ends the streak; a model answering is no progress
                self.in_a_row = 0
            return None
        self.in_a_row += 1
        if self.in_a_row >= self.limit:
            return _stop(f"{self.in_a_row} calls in a row were refused (max_refusals {self.limit})", "refusals")
        return None


class _Approval:
    def __init__(self, config: GuardrailConfig) -> None:
        self.listed = frozenset(config.approve)

    def before(self, action: Action) -> Decision | None:
        if action.kind != "tool" or not (action.high_stakes or action.name in self.listed):
            return None
        why = "is high-stakes" if action.high_stakes else "is listed in approve"
        return Decision(Verdict.APPROVE, f"tool {action.name!r} {why}: a human approves each call", "approval")

    def after(self, step: dict[str, Any]) -> Decision | None:
        return None


def _ran(run: dict[str, Any]) -> Callable[[], float]:
    """How long the run has run so far: ``max_run_seconds`` counts only the time it ran
    (its attempts, awake), not time on hold, queued, or with the machine asleep."""
    before, stamp = float(run.get("ran_seconds", 0.0)), run.get("running_awake")
    since = run.get("running_since") or run.get("started") or run["created"]
    return lambda: before + awake_since(stamp, since, time.time())


def _stop(reason: str, name: str) -> Decision:
    return Decision(Verdict.STOP, reason, name)


class Builtin:
    """One built-in guardrail: a name and how to make its guard for a run."""

    def __init__(self, name: str, make: Callable[[GuardrailConfig, dict[str, Any]], RunGuard]) -> None:
        self.name = name
        self._make = make

    def start(self, run: dict[str, Any], agent: AgentConfig) -> RunGuard | None:
        return self._make(agent.guardrails, run)


BUILTINS = (
    Builtin("limits", lambda config, run: _Limits(config, _ran(run))),
    Builtin("repeats", lambda config, run: _Repeats(config)),
    Builtin("refusals", lambda config, run: _Refusals(config)),
    Builtin("approval", lambda config, run: _Approval(config)),
)


@corral.hookimpl
def corral_register_guardrails(register: Callable[[Any], None]) -> None:
    for guardrail in BUILTINS:
        register(guardrail)
