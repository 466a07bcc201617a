"""The daily budget ledger against a real LMDB store: reservations, settling, soft
thresholds, day boundaries (midnight, a clock stepped back or forward, time zones and
daylight saving), and `corral spend` reading what was recorded."""

from __future__ import annotations

import dataclasses
import datetime as dt
import json
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from decimal import Decimal
from pathlib import Path
from zoneinfo import ZoneInfo

import pytest

from corral.cli.spend import summarise
from corral.config import CorralConfig, parse_config
from corral.errors import ConfigError
from corral.run.budget import (
    CACHED_DAYS,
    DB,
    Crossing,
    Ledger,
    Refusal,
    Reservation,
    Tally,
    Worst,
    day_of,
    next_day,
    spent_today,
)
from corral.store import Store

NOON = time.mktime((2026, 11, 24, 12, 0, 0, 0, 0, -1))
DAY = 86400.0


class Clock:
    def __init__(self, now: float) -> None:
        self.now = now

    def __call__(self) -> float:
        return self.now


def _config(tmp_path: Path, agent_budget: str = "", global_budget: str = "", timezone: str = "") -> CorralConfig:
    (tmp_path / "agents").mkdir(exist_ok=True)
    corral = f'[corral]\ntimezone = "{timezone}"' if timezone else ""
    text = f"""
{corral}

[models.m]
provider = "openai"
base_url = "http://127.0.0.1:9/v1"
model = "x"
prices = {{ input = 1.0, output = 2.0 }}

[agents.a]
code = "agents"
entry = "a:run"
models = ["m"]
budget = {{ {agent_budget} }}

[agents.b]
code = "agents"
entry = "a:run"
models = ["m"]

[budget]
{global_budget}
"""
    import tomllib

    return parse_config(tomllib.loads(text), tmp_path / "corral.toml", environ={"CORRAL_HOME": str(tmp_path / "home")})


@pytest.fixture
def store(tmp_path: Path) -> Iterator[Store]:
    s = Store.open(tmp_path / "store")
    yield s
    s.env.close()


def _ledger(config: CorralConfig, store: Store, clock: Callable[[], float]) -> Ledger:
    """A ledger as a (re)started daemon has it: today's totals loaded from the store."""
    ledger = Ledger(config, store.dbs, clock)
    with store.read() as txn:
        ledger.load(txn)
    return ledger


def _reserve(ledger: Ledger, store: Store, agent: str, worst: Worst) -> Reservation | Refusal:
    """What a model call does: reserve, loading the clock's day from the store when the ledger asks."""
    while (held := ledger.reserve(agent, worst)) is None:
        with store.env.begin(write=True) as txn:
            ledger.load(txn)
    return held


def _settle(ledger: Ledger, store: Store, held: Reservation, agent: str, tally: Tally) -> list[Crossing]:
    with store.env.begin(write=True) as txn:
        crossings = ledger.record(txn, agent, "m", tally, held.day)
    ledger.release(held)
    return crossings


def _calls_by_day(store: Store) -> dict[str, int]:
    with store.read() as txn:
        return {
            day: tally.calls for day, tally in summarise(txn, store.dbs[DB], "day", 10_000, NOON + 400 * DAY).items()
        }


def _call(tokens: int = 10, micro: int = 100) -> Tally:
    return Tally(input_tokens=tokens, output_tokens=0, cost_micro_usd=micro, calls=1)


def test_calls_in_flight_together_cannot_overshoot_a_daily_cap(tmp_path: Path, store: Store) -> None:
    ledger = _ledger(_config(tmp_path, "day_calls = 2"), store, Clock(NOON))
    first = ledger.reserve("a", Worst(10, 100))
    second = ledger.reserve("a", Worst(10, 100))
    third = ledger.reserve("a", Worst(10, 100))
    assert isinstance(first, Reservation) and isinstance(second, Reservation)
    assert isinstance(third, Refusal) and "2 of 2 calls" in third.message and "day_calls" in third.message
    assert third.scope == "a" and third.until == next_day(NOON)
    assert isinstance(ledger.reserve("b", Worst(10, 100)), Reservation), "another agent has its own cap"
    ledger.release(first)
    ledger.release(first)  # twice is harmless
    assert isinstance(ledger.reserve("a", Worst(10, 100)), Reservation), "a call that was not made gives its hold back"


def test_the_reservation_is_the_worst_case_and_settling_replaces_it_by_the_actual(tmp_path: Path, store: Store) -> None:
    ledger = _ledger(_config(tmp_path, "day_cost_usd = 0.001"), store, Clock(NOON))  # 1000 micro-dollars
    held = ledger.reserve("a", Worst(100, 900))
    assert isinstance(held, Reservation)
    refused = ledger.reserve("a", Worst(100, 200))
    assert isinstance(refused, Refusal) and "day_cost_usd" in refused.message
    _settle(ledger, store, held, "a", _call(micro=300))
    assert isinstance(ledger.reserve("a", Worst(100, 700)), Reservation), "300 spent + 700 worst fits 1000"


def test_a_global_cap_counts_every_agent(tmp_path: Path, store: Store) -> None:
    ledger = _ledger(_config(tmp_path, global_budget="day_tokens = 50"), store, Clock(NOON))
    held = ledger.reserve("a", Worst(30, 0))
    assert isinstance(held, Reservation)
    _settle(ledger, store, held, "a", _call(tokens=30))
    refused = ledger.reserve("b", Worst(30, 0))
    assert isinstance(refused, Refusal) and refused.scope == "" and "all agents together" in refused.message
    assert "[budget] day_tokens" in refused.message


def test_a_second_load_does_not_wipe_the_calls_in_flight(tmp_path: Path, store: Store) -> None:
    """Two runs' first calls both find the ledger unloaded and both queue a load; the
    second must not drop the reservation the first already holds (it would overshoot the
    cap, and releasing that reservation raised KeyError and crashed the run's attempt)."""
    ledger = _ledger(_config(tmp_path, "day_calls = 1"), store, Clock(NOON))
    held = ledger.reserve("a", Worst(10, 100))
    assert isinstance(held, Reservation)
    with store.read() as txn:
        ledger.load(txn)  # the second run's load, done by the writer after the first call reserved
    assert isinstance(ledger.reserve("a", Worst(10, 100)), Refusal), "the call in flight still counts"
    ledger.release(held)


def test_an_agent_removed_by_a_reload_can_finish_its_call(tmp_path: Path, store: Store) -> None:
    """A running run keeps its config across a reload; the ledger must not look its agent
    up in the new config (KeyError on the event loop, and inside the journal's commit)."""
    config = _config(tmp_path, global_budget="day_calls = 5")
    ledger = _ledger(config, store, Clock(NOON))
    held = ledger.reserve("a", Worst(10, 100))
    assert isinstance(held, Reservation)
    ledger.config = dataclasses.replace(config, agents={"b": config.agents["b"]})  # Engine.reconfigure
    assert isinstance(ledger.reserve("a", Worst(10, 100)), Reservation), "the global cap still applies"
    _settle(ledger, store, held, "a", Tally(input_tokens=10, cost_micro_usd=100, calls=1))


def test_soft_thresholds_cross_once_each_even_across_restarts(tmp_path: Path, store: Store) -> None:
    config = _config(tmp_path, "day_calls = 4, soft_alerts = [0.5, 0.75]")
    seen: list[tuple[str, float]] = []
    for _ in range(4):
        ledger = _ledger(config, store, Clock(NOON))  # a new ledger each call: what a restart sees
        held = ledger.reserve("a", Worst(1, 1))
        assert isinstance(held, Reservation)
        seen += [(c.measure, c.fraction) for c in _settle(ledger, store, held, "a", _call())]
    assert seen == [("calls", 0.5), ("calls", 0.75)]
    assert isinstance(_ledger(config, store, Clock(NOON)).reserve("a", Worst(1, 1)), Refusal), "the store remembers"


def test_a_new_day_starts_from_what_the_store_holds_for_it(tmp_path: Path, store: Store) -> None:
    clock = Clock(NOON)
    config = _config(tmp_path, "day_calls = 1")
    ledger = _ledger(config, store, clock)
    held = _reserve(ledger, store, "a", Worst(1, 1))
    assert isinstance(held, Reservation)
    _settle(ledger, store, held, "a", _call())
    assert isinstance(_reserve(ledger, store, "a", Worst(1, 1)), Refusal)
    clock.now = next_day(NOON) + 1
    assert day_of(clock.now) != day_of(NOON)
    assert ledger.reserve("a", Worst(1, 1)) is None, "a day not read from the store is never counted from zero"
    assert isinstance(_reserve(ledger, store, "a", Worst(1, 1)), Reservation), "nothing recorded: a whole allowance"
    # the day after that already has spend (a daemon that ran while the clock was ahead):
    ahead = _ledger(config, store, Clock(NOON + 2 * DAY))
    early = ahead.reserve("a", Worst(1, 1))
    assert isinstance(early, Reservation)
    _settle(ahead, store, early, "a", _call())
    clock.now = NOON + 2 * DAY
    assert isinstance(_reserve(ledger, store, "a", Worst(1, 1)), Refusal), (
        "the running ledger reads it when it gets there"
    )


def test_a_call_settled_just_after_midnight_counts_for_the_new_day(tmp_path: Path, store: Store) -> None:
    clock = Clock(next_day(NOON) - 1)  # 23:59:59
    ledger = _ledger(_config(tmp_path, "day_calls = 1"), store, clock)
    held = ledger.reserve("a", Worst(10, 100))
    assert isinstance(held, Reservation)
    clock.now = next_day(NOON) + 1  # the answer comes after midnight: its spend is the new day's
    _settle(ledger, store, held, "a", _call())
    assert isinstance(_ledger(ledger.config, store, clock).reserve("a", Worst(1, 1)), Refusal), "the store says spent"
    assert isinstance(ledger.reserve("a", Worst(1, 1)), Refusal), "and so does the running daemon"


def test_spend_summarises_by_agent_model_and_day(tmp_path: Path, store: Store) -> None:
    clock = Clock(NOON - 86400)
    ledger = _ledger(_config(tmp_path), store, clock)
    for agent, when in (("a", NOON - 86400), ("a", NOON), ("b", NOON)):
        clock.now = when
        held = _reserve(ledger, store, agent, Worst(1, 1))
        assert isinstance(held, Reservation)
        _settle(ledger, store, held, agent, _call(tokens=10, micro=1500))
    with store.read() as txn:
        by_agent = summarise(txn, store.dbs[DB], "agent", 7, NOON)
        by_day = summarise(txn, store.dbs[DB], "day", 1, NOON)
    assert {k: v.calls for k, v in by_agent.items()} == {"a": 2, "b": 1}
    assert by_agent["a"].cost_usd == Decimal("0.003")
    assert list(by_day) == [day_of(NOON)] and by_day[day_of(NOON)].calls == 2


def test_budget_config_errors_name_the_key_and_the_fix(tmp_path: Path) -> None:
    with pytest.raises(ConfigError) as bad:
        _config(tmp_path, 'day_calls = 0, day_cost_usd = "lots", soft_alerts = [2], run_bogus = 1')
    text = str(bad.value)
    assert "[agents.a.budget] day_calls: 0 is not a positive integer" in text
    assert "day_cost_usd: 'lots' is not a positive amount of dollars" in text
    assert "soft_alerts: [2] must be a list of fractions between 0 and 1" in text
    assert "run_bogus: unknown key" in text
    with pytest.raises(ConfigError) as global_run:
        _config(tmp_path, global_budget="run_calls = 3")
    assert "[budget] run_calls: unknown key" in str(global_run.value)


def test_a_cost_cap_on_a_model_without_prices_is_refused_at_load(tmp_path: Path) -> None:
    import tomllib

    (tmp_path / "agents").mkdir()
    text = """
[models.local]
provider = "openai"
base_url = "http://127.0.0.1:11434/v1"
model = "llama"

[agents.a]
code = "agents"
entry = "a:run"
models = ["local"]
budget = { day_cost_usd = 1.0 }
"""
    with pytest.raises(ConfigError) as bad:
        parse_config(tomllib.loads(text), tmp_path / "corral.toml", environ={})
    assert "[models.local] has no prices" in str(bad.value) and "prices = {" in str(bad.value)


def test_spend_command_reads_the_store_with_the_daemon_down(tmp_path: Path) -> None:
    config_path = tmp_path / "corral.toml"
    home = tmp_path / "home"
    config = _config(tmp_path)
    config_path.write_text(f'[corral]\nhome = "{home}"\n')
    store = Store.open(home / "store")
    ledger = _ledger(config, store, time.time)
    held = ledger.reserve("a", Worst(1, 1))
    assert isinstance(held, Reservation)
    _settle(ledger, store, held, "a", Tally(input_tokens=7, output_tokens=3, cost_micro_usd=2500, calls=1))
    store.env.close()
    env = {"PATH": "/usr/bin:/bin", "HOME": str(tmp_path)}
    result = subprocess.run(
        [sys.executable, "-m", "corral", "--config", str(config_path), "spend", "--by", "model", "--json"],
        capture_output=True,
        text=True,
        env=env,
        timeout=60,
    )
    assert result.returncode == 0, result.stderr
    report = json.loads(result.stdout)
    assert report["groups"]["m"]["calls"] == 1 and report["total"]["tokens"] == 10
    assert report["total"]["cost_usd"] == "0.0025"
    text = subprocess.run(
        [sys.executable, "-m", "corral", "--config", str(config_path), "spend"],
        capture_output=True,
        text=True,
        env=env,
        timeout=60,
    )
    assert text.returncode == 0 and "< $0.01" in text.stdout and "AGENT" in text.stdout, text.stdout
    bad = subprocess.run(
        [sys.executable, "-m", "corral", "--config", str(config_path), "spend", "--days", "0"],
        capture_output=True,
        text=True,
        env=env,
        timeout=60,
    )
    assert bad.returncode == 2 and "at least 1" in bad.stderr


def test_a_clock_stepped_back_to_a_spent_day_finds_it_still_spent(tmp_path: Path, store: Store) -> None:
    clock = Clock(NOON)
    ledger = _ledger(_config(tmp_path, "day_calls = 1"), store, clock)
    held = _reserve(ledger, store, "a", Worst(1, 1))
    assert isinstance(held, Reservation)
    _settle(ledger, store, held, "a", _call())
    clock.now = NOON + DAY  # forward a day: a new allowance
    held = _reserve(ledger, store, "a", Worst(1, 1))
    assert isinstance(held, Reservation)
    _settle(ledger, store, held, "a", _call())
    clock.now = NOON + 3600  # back a day: its call is still made
    refused = _reserve(ledger, store, "a", Worst(1, 1))
    assert isinstance(refused, Refusal) and "1 of 1 calls" in refused.message
    assert refused.until == next_day(NOON)


def test_a_daemon_started_after_the_clock_went_back_finds_the_day_spent(tmp_path: Path, store: Store) -> None:
    config = _config(tmp_path, "day_calls = 1")
    first = _ledger(config, store, Clock(NOON))
    held = first.reserve("a", Worst(1, 1))
    assert isinstance(held, Reservation)
    _settle(first, store, held, "a", _call())
    clock = Clock(NOON + DAY)
    ledger = _ledger(config, store, clock)  # started on the next day, which has no spend
    clock.now = NOON + 7200  # then the clock goes back to the spent day
    assert isinstance(_reserve(ledger, store, "a", Worst(1, 1)), Refusal)
    assert isinstance(_ledger(config, store, clock).reserve("a", Worst(1, 1)), Refusal), "and after a restart"


def test_a_call_in_flight_when_the_clock_steps_back_stays_on_the_day_that_let_it_start(
    tmp_path: Path, store: Store
) -> None:
    clock = Clock(NOON)
    ledger = _ledger(_config(tmp_path, "day_calls = 1"), store, clock)
    first = _reserve(ledger, store, "a", Worst(1, 1))
    assert isinstance(first, Reservation)
    _settle(ledger, store, first, "a", _call())
    clock.now = NOON + DAY
    in_flight = _reserve(ledger, store, "a", Worst(1, 1))
    assert isinstance(in_flight, Reservation) and in_flight.day == day_of(NOON + DAY)
    clock.now = NOON + 600  # back a day while the call is out
    refused = _reserve(ledger, store, "a", Worst(1, 1))
    assert isinstance(refused, Refusal) and refused.day == day_of(NOON) and "1 of 1 calls" in refused.message
    _settle(ledger, store, in_flight, "a", _call())  # answered, and released, while the clock is back
    assert _calls_by_day(store) == {day_of(NOON): 1, day_of(NOON + DAY): 1}, "no day over its cap of 1"
    refused = _reserve(ledger, store, "a", Worst(1, 1))
    assert isinstance(refused, Refusal) and "1 of 1 calls" in refused.message, "the release left this day alone"
    clock.now = NOON + DAY + 600
    refused = _reserve(ledger, store, "a", Worst(1, 1))
    assert isinstance(refused, Refusal) and "1 of 1 calls" in refused.message, "held once, settled once"


def test_a_day_with_calls_in_flight_is_kept_while_older_days_are_forgotten(tmp_path: Path, store: Store) -> None:
    clock = Clock(NOON)
    ledger = _ledger(_config(tmp_path, "day_calls = 2"), store, clock)
    held = _reserve(ledger, store, "a", Worst(1, 1))
    assert isinstance(held, Reservation)
    for day in range(1, CACHED_DAYS + 3):
        clock.now = NOON + day * DAY
        call = _reserve(ledger, store, "a", Worst(1, 1))
        assert isinstance(call, Reservation)
        _settle(ledger, store, call, "a", _call())
    assert len(ledger._days) <= CACHED_DAYS, "the days this ledger holds stay few"
    clock.now = NOON
    second = _reserve(ledger, store, "a", Worst(1, 1))
    assert isinstance(second, Reservation), "one call in flight on a cap of two"
    assert isinstance(_reserve(ledger, store, "a", Worst(1, 1)), Refusal), "the first is still held"
    ledger.release(held)
    ledger.release(second)
    assert isinstance(_reserve(ledger, store, "a", Worst(1, 1)), Reservation)


def test_days_are_calendar_days_of_the_configured_zone(tmp_path: Path, store: Store) -> None:
    instant = 1795521600.0  # 2026-11-24 12:00 UTC: already 02:00 on the 25th on Kiritimati (UTC+14)
    kiritimati, utc = ZoneInfo("Pacific/Kiritimati"), ZoneInfo("UTC")
    assert (day_of(instant, utc), day_of(instant, kiritimati)) == ("2026-11-24", "2026-11-25")
    assert next_day(instant, utc) == instant + 12 * 3600 and next_day(instant, kiritimati) == instant + 22 * 3600
    ledger = _ledger(_config(tmp_path, "day_calls = 1", timezone="Pacific/Kiritimati"), store, Clock(instant))
    held = _reserve(ledger, store, "a", Worst(1, 1))
    assert isinstance(held, Reservation) and held.day == "2026-11-25"
    _settle(ledger, store, held, "a", _call())
    assert _calls_by_day(store) == {"2026-11-25": 1}
    with store.read() as txn:
        assert spent_today(txn, store.dbs[DB], instant, kiritimati)["a"]["calls"] == 1
        assert spent_today(txn, store.dbs[DB], instant, utc) == {}
    refused = _reserve(ledger, store, "a", Worst(1, 1))
    assert isinstance(refused, Refusal) and refused.until == instant + 22 * 3600
    assert "for 2026-11-25 is spent" in refused.message
    assert "it renews at 2026-11-26 00:00 Pacific/Kiritimati" in refused.message


def _day_lengths(first: str, count: int, zone: ZoneInfo | None) -> list[float]:
    """How many hours each of ``count`` days from ``first`` lasts in ``zone`` (None: local)."""
    ends = [dt.datetime.combine(dt.date.fromisoformat(first), dt.time(), tzinfo=zone).timestamp()]
    for _ in range(count):
        ends.append(next_day(ends[-1], zone))
    return [(end - begin) / 3600 for begin, end in zip(ends, ends[1:], strict=False)]


def test_a_day_across_a_daylight_saving_change_is_23_or_25_hours(monkeypatch: pytest.MonkeyPatch) -> None:
    paris = ZoneInfo("Europe/Paris")
    assert _day_lengths("2026-03-28", 3, paris) == [24, 23, 24]  # 29 March: 02:00 becomes 03:00
    assert _day_lengths("2026-10-24", 3, paris) == [24, 25, 24]  # 25 October: 03:00 becomes 02:00
    one_am = 1774742400.0  # 2026-03-29 01:00 in Paris (00:00 UTC)
    assert day_of(one_am, paris) == "2026-03-29" and next_day(one_am, paris) == one_am + 22 * 3600
    try:  # without [corral] timezone: the machine's zone, with its own changes
        with monkeypatch.context() as patch:
            patch.setenv("TZ", "Europe/Paris")
            time.tzset()
            assert _day_lengths("2026-03-28", 3, None) == [24, 23, 24]
            assert day_of(one_am) == "2026-03-29" and next_day(one_am) == one_am + 22 * 3600
    finally:
        time.tzset()
