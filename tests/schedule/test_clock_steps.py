"""Clock steps, sleeps and restarts as the scheduler meets them.

A real daemon in-process on a real store, driven by a :class:`ManualClock` whose wall,
awake and elapsed clocks the test moves separately (``step``: the wall clock is set;
``suspend``: the machine sleeps). The daemon runs the same code as under ``corral up``:
only the clock object is the test's (the daemon's clock seam). The same behaviour under a
real wall-clock shift of a `corral up` process is in tests/e2e/test_clock_steps.py.
"""

from __future__ import annotations

import asyncio
import json
import os
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

from corral.daemon.root import Daemon
from corral.schedule.clock import ManualClock

from .harness import GATED, T0, Rig, events, idle, runs, tick, until

SEVEN = T0 + 60
DAY = 86400.0
EVERY_TEN = {"type": "cron", "cron": "*/10 * * * *", "timezone": "UTC"}
HOURLY = {"type": "cron", "cron": "0 * * * *", "timezone": "UTC"}


def fire_times(daemon: Daemon, agent: str) -> list[float]:
    return [r["fire_time"] for r in runs(daemon, agent)]


def assert_each_time_once(daemon: Daemon, agent: str) -> None:
    times = fire_times(daemon, agent)
    assert len(times) == len(set(times)), f"a fire time ran twice: {times}"


def schedule_of(daemon: Daemon, agent: str) -> dict[str, Any]:
    """The record of the agent's one schedule."""
    [record] = [s.record for s in daemon.scheduler.schedules.values() if s.config.agent == agent]
    return record


def status(rig: Rig) -> dict[str, Any]:
    """``corral status --json`` run as the operator runs it, beside the daemon."""
    out = subprocess.run(
        [sys.executable, "-m", "corral", "status", "--json", "--config", str(rig.config_path)],
        capture_output=True,
        text=True,
        timeout=60,
        check=True,
        env={k: v for k, v in os.environ.items() if k != "CORRAL_HOME"},  # the rig's home is in its config
    )
    return json.loads(out.stdout)  # type: ignore[no-any-return]


def test_an_interval_keeps_its_period_when_the_clock_is_set_back_a_day(tmp_path: Path) -> None:
    rig = Rig(tmp_path)
    rig.agent("poll", every="60s")

    async def scenario(daemon: Daemon, clock: ManualClock) -> dict[str, Any]:
        await tick(daemon, clock, 60)
        clock.step(-DAY)
        await tick(daemon, clock, 0)
        for _ in range(2):
            await tick(daemon, clock, 60)
        times = fire_times(daemon, "poll")
        assert len(times) == 3 and [b - a for a, b in zip(times, times[1:], strict=False)] == [60.0, 60.0]
        [event] = events(rig, "clock stepped")
        assert event["level"] == "warning" and event["jump"] == -DAY and "back 1d" in event["what"]
        next_fire = schedule_of(daemon, "poll")["due"]
        assert 0 < next_fire - clock.now() <= 60, "the next fire is due within a period of the clock as it reads"
        return await asyncio.to_thread(status, rig)

    shown = rig.drive(scenario)
    assert shown["clock"]["kind"] == "step" and shown["clock"]["jump"] == -DAY
    assert status(rig)["clock"] == shown["clock"], "status shows the last jump with the daemon down too"


def test_cron_set_back_never_runs_a_handled_time_again_but_runs_times_it_never_had(tmp_path: Path) -> None:
    rig = Rig(tmp_path)
    rig.agent("report", triggers=[EVERY_TEN])

    async def scenario(daemon: Daemon, clock: ManualClock) -> None:
        await tick(daemon, clock, 61)  # 07:00:01
        await tick(daemon, clock, 600)  # 07:10:01
        assert fire_times(daemon, "report") == [SEVEN, SEVEN + 600]
        clock.step(-900)  # 06:55:01: 07:00 and 07:10 come again
        await tick(daemon, clock, 0)
        await tick(daemon, clock, 300)  # 07:00:01
        await tick(daemon, clock, 600)  # 07:10:01
        assert len(runs(daemon, "report")) == 2, "07:00 and 07:10 were handled: they do not run twice"
        await tick(daemon, clock, 600)  # 07:20:01
        assert fire_times(daemon, "report")[-1] == SEVEN + 1200
        clock.step(-DAY)  # yesterday 07:20:01: times the schedule never had
        await tick(daemon, clock, 0)
        await tick(daemon, clock, 600)
        assert fire_times(daemon, "report")[-1] == SEVEN - DAY + 1800, "yesterday's 07:30 was never handled"
        assert_each_time_once(daemon, "report")

    rig.drive(scenario)


def test_a_one_shot_trigger_does_not_fire_again_when_its_time_comes_back(tmp_path: Path) -> None:
    rig = Rig(tmp_path)
    rig.agent("once", triggers=[{"type": "once", "at": "2027-01-04T07:00:00+00:00"}])

    async def scenario(daemon: Daemon, clock: ManualClock) -> None:
        await tick(daemon, clock, 61)
        assert fire_times(daemon, "once") == [SEVEN]
        clock.step(-600)
        await tick(daemon, clock, 0)
        await tick(daemon, clock, 900)
        assert fire_times(daemon, "once") == [SEVEN]
        assert schedule_of(daemon, "once")["next"] is None

    rig.drive(scenario)


def test_a_one_shot_trigger_set_back_before_its_time_still_fires_once(tmp_path: Path) -> None:
    rig = Rig(tmp_path)
    rig.agent("once", triggers=[{"type": "once", "at": "2027-01-04T07:00:00+00:00"}])

    async def scenario(daemon: Daemon, clock: ManualClock) -> None:
        clock.step(-DAY)  # the day before: the time is a day away again, nothing handled yet
        await tick(daemon, clock, 0)
        await tick(daemon, clock, DAY + 61)
        assert fire_times(daemon, "once") == [SEVEN]

    rig.drive(scenario)


@pytest.mark.parametrize(
    ("policy", "caught_up"),
    [({"missed": "skip"}, []), ({"missed": "once"}, [11]), ({"missed": "all", "missed_max": 3}, [9, 10, 11])],
)
def test_a_step_forward_applies_the_missed_policy_to_the_times_it_skipped(
    tmp_path: Path, policy: dict[str, Any], caught_up: list[int]
) -> None:
    rig = Rig(tmp_path)
    rig.agent("hourly", triggers=[HOURLY], schedule=policy)
    rig.agent("poll", every="60s", schedule={"missed": "all", "missed_max": 5})

    async def scenario(daemon: Daemon, clock: ManualClock) -> None:
        await tick(daemon, clock, 61)  # 07:00:01
        polled = len(runs(daemon, "poll"))
        clock.step(5 * 3600)  # 12:00:01: 08:00 to 11:00 skipped by the step, 12:00 on time
        await tick(daemon, clock, 0)
        hourly = runs(daemon, "hourly")
        missed = sorted(r["fire_time"] for r in hourly if r.get("missed"))
        assert missed == [SEVEN + (hour - 7) * 3600 for hour in caught_up]
        on_time = [SEVEN] + ([SEVEN + 5 * 3600] if not caught_up else [])  # else overlap = skip: one runs
        assert [r["fire_time"] for r in hourly if not r.get("missed")] == on_time
        assert len(runs(daemon, "poll")) == polled, "no real time passed: an interval missed nothing"
        if not caught_up:
            assert events(rig, "missed fire times skipped")[0]["count"] == "4"

    rig.drive(scenario)


def test_a_sleep_is_a_wake_and_what_was_missed_asleep_follows_the_policy(tmp_path: Path) -> None:
    rig = Rig(tmp_path)
    rig.agent("hourly", triggers=[HOURLY], schedule={"missed": "once"})
    rig.agent("poll", every="600s", schedule={"missed": "all", "missed_max": 2})

    async def scenario(daemon: Daemon, clock: ManualClock) -> None:
        await tick(daemon, clock, 61)  # 07:00:01
        polled = len(runs(daemon, "poll"))
        clock.suspend(3 * 3600)  # asleep until 10:00:01
        await tick(daemon, clock, 0)
        [wake] = events(rig, "woke from sleep")
        assert wake["level"] == "warning" and wake["slept"] == 3 * 3600
        assert events(rig, "clock stepped") == [], "a sleep is not a step"
        hourly = runs(daemon, "hourly")
        assert [r["fire_time"] for r in hourly if r.get("missed")] == [SEVEN + 2 * 3600], "09:00, once"
        asleep = runs(daemon, "poll")[polled:]
        assert len([r for r in asleep if r.get("missed")]) == 2, "an interval missed its periods while asleep"
        assert_each_time_once(daemon, "poll")

    rig.drive(scenario)


def test_catch_ups_are_counted_across_a_burst_of_restarts(tmp_path: Path) -> None:
    rig = Rig(tmp_path)
    rig.agent("ten", triggers=[EVERY_TEN], schedule={"missed": "all", "missed_max": 3})

    async def first(daemon: Daemon, clock: ManualClock) -> None:
        await tick(daemon, clock, 61)

    async def restarted(daemon: Daemon, clock: ManualClock) -> int:
        await asyncio.sleep(0.2)
        await idle(daemon)
        return len([r for r in runs(daemon, "ten") if r.get("missed")])

    rig.drive(first)
    assert rig.drive(restarted, start=SEVEN + 3900) == 3, "08:05: the latest three of six missed times"
    assert rig.drive(restarted, start=SEVEN + 7500) == 3, "09:05: the bound was used since the last fire on time"

    async def on_time(daemon: Daemon, clock: ManualClock) -> int:
        await tick(daemon, clock, 0)
        return len(runs(daemon, "ten"))

    assert rig.drive(on_time, start=SEVEN + 7830) == 5, "09:10:30 is on time, and ends the catching up"
    assert rig.drive(restarted, start=SEVEN + 9900) == 6, "a later downtime may catch up again"


def test_max_resume_age_counts_the_time_the_daemon_was_really_gone(tmp_path: Path) -> None:
    rig = Rig(tmp_path)
    rig.corral.update(max_resume_age="1h", grace_seconds=0.2)
    rig.agent("slow", GATED)

    def interrupted(holder: list[str]) -> Any:
        async def scenario(daemon: Daemon, clock: ManualClock) -> None:
            run = await daemon.engine.create_run("slow", None, trigger="cli")
            holder.append(run["id"])
            daemon.queue.add(run)
            await until(lambda: (rig.workdir("slow") / "started").exists())
            (rig.workdir("slow") / "started").unlink()

        return scenario

    async def outcome(daemon: Daemon, clock: ManualClock) -> dict[str, Any]:
        rig.release("slow")
        await asyncio.sleep(0.2)
        await idle(daemon)
        (rig.workdir("slow") / "go").unlink(missing_ok=True)
        return runs(daemon, "slow")[-1]

    first: list[str] = []
    rig.drive(interrupted(first))
    resumed = rig.drive(outcome, start=T0 + 4, stepped=2 * 3600)
    assert resumed["id"] == first[0] and resumed["state"] == "succeeded", "4 s gone, though the wall clock says 2 h"
    second: list[str] = []
    rig.drive(interrupted(second), start=T0 + 10)
    abandoned = rig.drive(outcome, start=T0 + 10 + 2 * 3600)
    assert abandoned["id"] == second[0] and abandoned["state"] == "abandoned"
    assert "the daemon was gone for 72" in abandoned["error"]["message"]


def test_jitter_delays_a_fire_within_its_bound_and_never_makes_one_missed(tmp_path: Path) -> None:
    rig = Rig(tmp_path)
    rig.agent("jittery", triggers=[{"type": "cron", "cron": "* * * * *", "timezone": "UTC", "jitter": "50s"}])

    async def scenario(daemon: Daemon, clock: ManualClock) -> None:
        [schedule] = daemon.scheduler.schedules.values()
        seen = 0
        for _ in range(6 * 5):  # five minutes, ten seconds at a time
            await tick(daemon, clock, 10)
            for run in runs(daemon, "jittery")[seen:]:
                assert clock.now() - 10 < schedule.due(run["fire_time"]) <= clock.now(), "in the tick it came due"
            seen = len(runs(daemon, "jittery"))
        assert fire_times(daemon, "jittery") == [SEVEN + 60 * k for k in range(len(runs(daemon, "jittery")))]
        assert len(runs(daemon, "jittery")) >= 4
        assert events(rig, "missed fire times skipped") == []

    rig.drive(scenario)


def test_a_jitter_as_long_as_the_time_between_fires_is_a_config_problem(tmp_path: Path) -> None:
    from corral.config import load_config
    from corral.pluginmanager import load_plugins
    from corral.schedule.scheduler import trigger_problems

    rig = Rig(tmp_path)
    rig.agent("jittery", triggers=[{"type": "cron", "cron": "* * * * *", "timezone": "UTC", "jitter": "60s"}])
    rig.write()
    [problem] = trigger_problems(load_config(rig.config_path, {}), load_plugins().manager, {})
    assert "jitter: 60s is not shorter than the 60s between its fire times" in problem


def test_fires_a_little_late_are_run_not_counted_missed(tmp_path: Path) -> None:
    rig = Rig(tmp_path)
    rig.agent("poll", every="20s", schedule={"overlap": "queue", "max_queued": 5})

    async def scenario(daemon: Daemon, clock: ManualClock) -> None:
        await tick(daemon, clock, 45)  # the daemon was busy: two fire times passed, both under a minute ago
        assert len(runs(daemon, "poll")) == 2 and not any(r.get("missed") for r in runs(daemon, "poll"))
        assert events(rig, "missed fire times skipped") == []

    rig.drive(scenario)


def test_a_step_back_and_forth_owes_nothing_from_before_the_schedule_existed(tmp_path: Path) -> None:
    rig = Rig(tmp_path)
    rig.agent("ten", triggers=[EVERY_TEN], schedule={"missed": "all", "missed_max": 3})
    rig.agent("past", triggers=[{"type": "once", "at": "2027-01-04T06:00:00+00:00"}])

    async def scenario(daemon: Daemon, clock: ManualClock) -> None:
        await tick(daemon, clock, 61)  # 07:00:01: one fire
        clock.step(-DAY)  # a glitch, corrected a moment later
        await tick(daemon, clock, 1)
        clock.step(DAY)
        await tick(daemon, clock, 0)
        assert fire_times(daemon, "ten") == [SEVEN], "nothing from the day before the daemon started is owed"
        assert runs(daemon, "past") == [], "a one-shot time that had passed at start never fires"
        await tick(daemon, clock, 600)
        assert fire_times(daemon, "ten") == [SEVEN, SEVEN + 600]

    rig.drive(scenario)


def test_runs_created_after_a_step_back_still_sort_after_older_ones(tmp_path: Path) -> None:
    rig = Rig(tmp_path)
    rig.agent("manual")

    async def scenario(daemon: Daemon, clock: ManualClock) -> None:
        before = await daemon.engine.create_run("manual", None, trigger="cli")
        clock.step(-DAY)
        after = await daemon.engine.create_run("manual", None, trigger="cli")
        assert after["id"] > before["id"], "the queue starts the oldest first, by id"
        daemon.queue.add(before)
        daemon.queue.add(after)
        await idle(daemon)

    rig.drive(scenario)


def test_the_daemon_holds_the_awake_assertion_exactly_while_a_run_is_active(tmp_path: Path) -> None:
    from corral.daemon.power import KeepAwake

    rig = Rig(tmp_path)
    rig.agent("slow", GATED)
    holders: list[subprocess.Popen[bytes]] = []

    def spawn(argv: list[str]) -> subprocess.Popen[bytes]:
        assert argv[1:3] == ["-i", "-w"]
        holders.append(subprocess.Popen(["sleep", "60"]))  # a real process standing in for caffeinate
        return holders[-1]

    async def scenario(daemon: Daemon, clock: ManualClock) -> None:
        awake = KeepAwake(True, daemon.log, platform="darwin", which=lambda name: f"/usr/bin/{name}", spawn=spawn)
        daemon.awake, daemon.queue.on_active = awake, awake.busy
        run = await daemon.engine.create_run("slow", None, trigger="cli")
        daemon.queue.add(run)
        await until(lambda: (rig.workdir("slow") / "started").exists())
        assert len(holders) == 1 and holders[0].poll() is None, "held while the run is active"
        rig.release("slow")
        await idle(daemon)
        assert holders[0].wait(5) is not None and len(holders) == 1, "released when nothing runs"

    rig.drive(scenario)
