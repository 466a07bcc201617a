"""The built-in guardrails' rules, one by one, and their config."""

from __future__ import annotations

import time
import tomllib
from pathlib import Path
from typing import Any

import pytest

from corral.config import AgentConfig, parse_config
from corral.config.guardrails import GuardrailConfig
from corral.errors import ConfigError
from corral.guardrails import Action, Verdict
from corral.plugins.guardrails import BUILTINS
from corral.schedule.clock import awake_stamp

RUN = {"id": "r1", "agent": "a", "created": 1000.0, "started": 1000.0}


def _guard(name: str, run: dict[str, Any] | None = None, **settings: Any) -> Any:
    """The guard of ``run`` (default: one that started running just now)."""
    agent = AgentConfig(name="a", code=Path("."), entry="a:run", guardrails=GuardrailConfig(**settings))
    [builtin] = [b for b in BUILTINS if b.name == name]
    return builtin.start(run or {**RUN, "running_awake": awake_stamp()}, agent)


def _action(seq: int, kind: str = "tool", name: str = "t", fp: str = "", now: float = 1001.0, **kw: Any) -> Action:
    """An action whose arguments make it identical to others with the same ``fp`` label."""
    return Action(seq=seq, kind=kind, name=name, args={"same_as": fp or f"fp{seq}"}, now=now, **kw)


def test_limits_stop_the_call_past_each_limit() -> None:
    guard = _guard("limits", max_model_turns=2, max_tool_calls=1, max_run_seconds=60.0)
    assert guard.before(_action(1, "model")) is None and guard.before(_action(2, "model")) is None
    third = guard.before(_action(3, "model"))
    assert third is not None and third.verdict is Verdict.STOP and "max_model_turns (2)" in third.reason
    assert guard.before(_action(4, "tool")) is None
    assert "max_tool_calls (1)" in guard.before(_action(5, "tool")).reason
    ran_long = {**RUN, "ran_seconds": 59.0, "running_since": time.time(), "running_awake": awake_stamp()}
    ran_long["running_awake"][1] -= 2.0
    late = _guard("limits", ran_long, max_run_seconds=60.0).before(_action(6, "state"))
    assert late is not None and late.guardrail == "limits" and "max_run_seconds" in late.reason


def test_max_run_seconds_counts_awake_time_not_a_sleep_or_a_clock_step() -> None:
    slept = {**RUN, "running_since": time.time() - 8 * 3600, "running_awake": awake_stamp()}
    assert _guard("limits", slept, max_run_seconds=60.0).before(_action(1, "state")) is None
    other_boot = {**slept, "running_awake": ["another boot", 0.0]}
    stopped = _guard("limits", other_boot, max_run_seconds=60.0).before(_action(1, "state"))
    assert stopped is not None, "across a reboot the wall clock is all there is"


def test_repeats_warn_first_then_stop_and_forget_outside_the_window() -> None:
    guard = _guard("repeats", repeat_window=4, repeat_warn=2, repeat_stop=3)
    for seq in range(1, 4):
        assert guard.before(_action(seq, fp="polled")) is None, "code that polls before any model call is left alone"
    assert guard.before(_action(0, kind="model", fp="m")) is None
    assert guard.before(_action(1, fp="same")) is None
    warned = guard.before(_action(2, fp="same"))
    assert warned is not None and warned.verdict is Verdict.WARN and "Change approach" in warned.reason
    stopped = guard.before(_action(3, fp="same"))
    assert stopped is not None and stopped.verdict is Verdict.STOP and "a loop" in stopped.reason
    fresh = _guard("repeats", repeat_window=2, repeat_warn=2, repeat_stop=3)
    fresh.before(_action(0, kind="model", fp="m"))
    assert fresh.before(_action(1, fp="x")) is None
    assert fresh.before(_action(2, fp="y")) is None
    assert fresh.before(_action(3, fp="z")) is None
    assert fresh.before(_action(4, fp="x")) is None, "x left the window of 2"


def test_consecutive_refusals_stop_the_run_and_a_success_resets_the_count() -> None:
    guard = _guard("refusals", max_refusals=2)
    refused = {"kind": "tool", "status": "done", "ok": False, "error": {"kind": "refused"}}
    assert guard.after(refused) is None
    assert guard.after({"kind": "tool", "status": "done", "ok": True}) is None
    assert guard.after(refused) is None
    stop = guard.after(refused)
    assert stop is not None and stop.verdict is Verdict.STOP and "2 calls in a row" in stop.reason
    assert guard.after({**refused, "error": {"kind": "failed"}}) is None, "a tool's own failure is not a refusal"
    model_between = _guard("refusals", max_refusals=2)
    assert model_between.after(refused) is None
    assert model_between.after({"kind": "model", "status": "done", "ok": True}) is None
    assert model_between.after(refused) is not None, "the model answering again is no progress"


def test_high_stakes_and_listed_tools_need_approval() -> None:
    guard = _guard("approval", approve=("write_file",))
    assert guard.before(_action(1, name="read_file")) is None
    assert guard.before(_action(2, name="write_file")).verdict is Verdict.APPROVE
    assert "high-stakes" in guard.before(_action(3, name="run_command", high_stakes=True)).reason
    assert guard.before(_action(4, kind="model", name="write_file")) is None


def test_guardrail_config_errors_name_the_key(tmp_path: Path) -> None:
    (tmp_path / "agents").mkdir()
    text = """
[agents.a]
code = "agents"
entry = "a:run"
guardrails = { max_model_turns = 0, repeat_warn = 6, approve = "x", bogus = 1, max_run_seconds = "soon" }
"""
    with pytest.raises(ConfigError) as bad:
        parse_config(tomllib.loads(text), tmp_path / "corral.toml", environ={})
    message = str(bad.value)
    assert "[agents.a.guardrails] max_model_turns: 0 is not a positive integer" in message
    assert "approve: must be a list of tool names" in message
    assert "bogus: unknown key" in message
    assert "max_run_seconds:" in message
    assert "repeat_warn: must be below repeat_stop" in message
