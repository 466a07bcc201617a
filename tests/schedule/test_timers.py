"""Timed triggers and the scheduling config: pure computations, no daemon."""

from __future__ import annotations

import datetime as dt
from pathlib import Path
from zoneinfo import ZoneInfo

import pytest

from corral.config import parse_config
from corral.errors import ConfigError
from corral.pluginmanager import load_plugins
from corral.plugins.triggers.timers import CronTrigger, IntervalTrigger, OnceTrigger
from corral.schedule.scheduler import trigger_problems

PARIS = ZoneInfo("Europe/Paris")


def test_cron_follows_its_time_zone_across_daylight_saving() -> None:
    cron = CronTrigger("0 7 * * *", PARIS)
    winter = dt.datetime(2027, 3, 27, 7, 0, tzinfo=PARIS).timestamp()
    nxt = cron.next_after(winter)
    assert nxt is not None
    assert dt.datetime.fromtimestamp(nxt, PARIS) == dt.datetime(2027, 3, 28, 7, 0, tzinfo=PARIS)
    assert nxt - winter == 23 * 3600, "the night the clocks go forward is an hour short"
    assert cron.last_until(winter) == winter and cron.last_until(winter - 1) == winter - 86400


def test_interval_grid_is_fixed_and_its_neighbours_are_consistent() -> None:
    every = IntervalTrigger(10.0, anchor=3.0)
    assert every.next_after(3.0) == 13.0 and every.next_after(12.9) == 13.0
    assert every.last_until(13.0) == 13.0 and every.last_until(12.9) == 3.0


def test_once_fires_once() -> None:
    once = OnceTrigger(100.0)
    assert once.next_after(50.0) == 100.0 and once.next_after(100.0) is None
    assert once.last_until(99.0) is None and once.last_until(150.0) == 100.0


def _config(tmp_path: Path, agent: dict[str, object], top: dict[str, object] | None = None) -> object:
    table = {"code": str(tmp_path), "entry": "a:run", **agent}
    return parse_config({"agents": {"a": table}, **(top or {})}, tmp_path / "corral.toml", environ={})


def test_every_is_an_interval_trigger_with_a_stable_key(tmp_path: Path) -> None:
    first = _config(tmp_path, {"every": "30s"}).agents["a"]  # type: ignore[attr-defined]
    again = _config(tmp_path, {"every": "30s", "input": {"changed": True}}).agents["a"]  # type: ignore[attr-defined]
    assert [t.kind for t in first.triggers] == ["interval"]
    assert first.triggers[0].key == again.triggers[0].key, "the input does not change a schedule's identity"
    other = _config(tmp_path, {"every": "31s"}).agents["a"]  # type: ignore[attr-defined]
    assert other.triggers[0].key != first.triggers[0].key
    named = _config(tmp_path, {"triggers": [{"type": "cron", "cron": "0 * * * *", "id": "hourly"}]})
    assert named.agents["a"].triggers[0].key == "a:hourly"  # type: ignore[attr-defined]


def test_bad_scheduling_config_names_each_key_and_fix(tmp_path: Path) -> None:
    with pytest.raises(ConfigError) as caught:
        _config(
            tmp_path,
            {
                "triggers": [{"type": "cron", "cron": "0 * * * *"}, {"type": "cron", "cron": "0 * * * *"}, {"no": 1}],
                "schedule": {"overlap": "sometimes", "max_queued": 0, "bogus": 1},
            },
        )
    text = str(caught.value)
    assert "triggers #2]: the same schedule" in text
    assert "triggers #3] type: is required" in text
    assert "overlap: 'sometimes' is not one of 'skip', 'queue', 'cancel'" in text
    assert "max_queued: 0 is not a positive integer" in text
    assert "bogus: unknown key" in text
    with pytest.raises(ConfigError, match=r"webhook trigger but \[schedule\] webhook_port is not set"):
        _config(tmp_path, {"triggers": [{"type": "webhook", "token_env": "T"}]})


def test_each_kind_checks_its_own_keys(tmp_path: Path) -> None:
    config = _config(
        tmp_path,
        {
            "triggers": [
                {"type": "cron", "cron": "61 * * * *", "timezone": "Mars/Olympus"},
                {"type": "interval", "every": "soon"},
                {"type": "file", "path": "missing-folder"},
                {"type": "webhook", "token_env": "HOOK_TOKEN", "colour": "red"},
                {"type": "sundial"},
            ]
        },
        {"schedule": {"webhook_port": 0}},
    )
    problems = "\n".join(trigger_problems(config, load_plugins().manager, {"HOOK_TOKEN": "s3cr3t-x"}))  # type: ignore[arg-type]
    assert "triggers #1] cron: '61 * * * *' is not a cron expression" in problems
    assert "triggers #1] timezone: 'Mars/Olympus' is not a time zone" in problems
    assert "triggers #2] every: 'soon' is not a duration" in problems
    assert "missing-folder does not exist" in problems
    assert "triggers #4] colour: unknown key" in problems
    assert "$HOOK_TOKEN holds fewer than 16 characters" in problems
    assert "s3cr3t-x" not in problems, "a token never appears in a message"
    assert "unknown trigger type 'sundial'; known: cron, file, interval, once, webhook" in problems
