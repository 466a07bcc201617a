"""One collector for every config problem: each names the file, the table, the key, what is
wrong and the fix, and all of a file's problems come out at once."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Annotated

import pytest

from corral.config import parse_config
from corral.config.kinds import Key, Limit, PositiveInt, PositiveSeconds
from corral.config.problems import Problems
from corral.config.settings import Settings
from corral.errors import ConfigError
from corral.schedule.triggers import BuildContext


@dataclass(frozen=True)
class Pump:
    """A table declared the way every section declares its keys."""

    rate: Annotated[PositiveInt, Key("give litres per minute")] = 5
    ceiling: Annotated[Limit, Key('give the most litres, or "none"')] = 100
    every: Annotated[PositiveSeconds, Key('e.g. "5m"')] = 60.0


def test_a_declared_table_reads_into_its_typed_value() -> None:
    p = Problems("pumps.toml")
    pump = p.read("pump", {"rate": 7, "ceiling": "none", "every": "2m"}, Pump)
    assert pump == Pump(7, None, 120.0) and not p


def test_every_problem_names_file_table_key_what_and_fix() -> None:
    p = Problems("pumps.toml")
    pump = p.read("pump", {"rate": 0, "ceilng": 3, "every": "soon"}, Pump)
    assert pump == Pump(), "wrong values keep their defaults, so reading goes on"
    assert p.items == [
        "pumps.toml: [pump] ceilng: unknown key; did you mean 'ceiling'?",
        "pumps.toml: [pump] rate: 0 is not a positive integer; give litres per minute",
        'pumps.toml: [pump] every: \'soon\' is not a duration; write 30, "30s", "5m", "1h30m" or "2d"; e.g. "5m"',
    ]
    with pytest.raises(ConfigError) as caught:
        p.check()
    assert caught.value.problems == p.items


def test_a_table_that_is_not_one_and_a_key_nobody_knows() -> None:
    p = Problems("pumps.toml")
    assert p.read("pump", ["rate"], Pump, shape="a table, e.g. pump = { rate = 5 }") == Pump()
    p.unknown("pump", {"zzz": 1}, ["rate", "ceiling"])
    assert p.items == [
        "pumps.toml: [pump]: must be a table, e.g. pump = { rate = 5 }",
        "pumps.toml: [pump] zzz: unknown key; known keys: ceiling, rate",
    ]


def test_a_base_gives_the_keys_a_table_leaves_out() -> None:
    p = Problems("pumps.toml")
    assert p.read("pump.night", {"rate": 2}, Pump, base=Pump(9, 10, 1.0)) == Pump(2, 10, 1.0)


def test_a_plugins_table_is_read_by_the_same_collector_without_the_file() -> None:
    """corral.alerts.Settings (a sink's table) words its problems as the loader does; the
    loader's caller adds the file when it builds the sink."""
    settings = Settings("alerts.sinks.pager", {"port": 0, "timeout": 0, "levels": "x", "colour": "red"})
    settings.port("port", 443)
    settings.duration("timeout", 10.0)
    settings.choice("levels", ("low", "high"), "low")
    with pytest.raises(ConfigError) as caught:
        settings.finish()
    assert caught.value.problems == [
        "[alerts.sinks.pager] port: 0 is not a port number; give an integer from 1 to 65535",
        '[alerts.sinks.pager] timeout: must be more than zero; give seconds, e.g. 10 or "30s"',
        "[alerts.sinks.pager] levels: 'x' is not one of 'low', 'high'",
        "[alerts.sinks.pager] colour: unknown key; known keys: levels, port, timeout",
    ]
    assert not settings.ok("port") and settings.ok("colour")


def test_a_trigger_kinds_table_is_read_by_the_same_collector_naming_the_file(tmp_path: Path) -> None:
    context = BuildContext("a", "a:k", "unused", tmp_path, {}, table="agents.a.triggers.0", where="corral.toml")
    table = context.reader({"every": "0s", "colour": "red"})
    table.duration("every")
    with pytest.raises(ConfigError) as caught:
        table.finish()
    assert caught.value.problems == [
        'corral.toml: [agents.a.triggers.0] every: must be more than zero; give seconds, e.g. 10 or "30s"',
        "corral.toml: [agents.a.triggers.0] colour: unknown key; known keys: every",
    ]


def test_the_whole_file_reports_every_sections_problems_in_one_pass(tmp_path: Path) -> None:
    (tmp_path / "agents").mkdir()
    data = {
        "corral": {"log_backups": 0},
        "limits": {"memory_mb": -1},
        "agents": {
            "a": {"code": "agents", "entry": "a:run", "guardrails": {"max_refusals": 0}, "schedule": {"max_running": 0}}
        },
        "models": {"m": {"provider": "openai", "base_url": "https://x.example/v1", "model": "x", "retry_attempts": 0}},
        "budget": {"day_calls": 0},
        "alerts": {"crash_loop": -1, "sinks": {"s": {"type": "webhook", "retries": 0}}},
        "metrics": {"port": -1},
        "schedule": {"webhook_max_bytes": 0},
        "sandbox": {"degraded_ok": "yes"},
    }
    with pytest.raises(ConfigError) as caught:
        parse_config(data, tmp_path / "corral.toml", {})
    where = str(tmp_path / "corral.toml")
    assert all(problem.startswith(f"{where}: [") for problem in caught.value.problems)
    tables = [problem.removeprefix(f"{where}: ").split(":")[0] for problem in caught.value.problems]
    assert sorted(tables) == sorted(
        [
            "[corral] log_backups",
            "[limits] memory_mb",
            "[agents.a.guardrails] max_refusals",
            "[agents.a.schedule] max_running",
            "[models.m] retry_attempts",
            "[budget] day_calls",
            "[alerts] crash_loop",
            "[alerts.sinks.s] retries",
            "[metrics] port",
            "[schedule] webhook_max_bytes",
            "[sandbox] degraded_ok",
        ]
    )
