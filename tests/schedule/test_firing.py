"""Cron and interval firing, missed runs after downtime, overlap, pause, cancel, limits,
no-progress: a real daemon in-process on a real store, its clock moved by hand."""

from __future__ import annotations

import asyncio
import datetime as dt
from pathlib import Path

from corral.daemon.root import Daemon
from corral.schedule.clock import ManualClock

from .harness import GATED, T0, Rig, events, finished, idle, runs, tick, until

SEVEN = dt.datetime(2027, 1, 4, 7, 0, tzinfo=dt.UTC).timestamp()


def test_cron_fires_at_its_time_and_not_before(tmp_path: Path) -> None:
    rig = Rig(tmp_path)
    rig.agent("report", triggers=[{"type": "cron", "cron": "0 7 * * *", "timezone": "UTC"}])

    async def scenario(daemon: Daemon, clock: ManualClock) -> None:
        await tick(daemon, clock, 30)
        assert runs(daemon) == [], "06:59:30 is not 07:00"
        await tick(daemon, clock, 31)
        [run] = runs(daemon)
        assert run["trigger"] == "cron" and run["fire_time"] == SEVEN and run["state"] == "succeeded"
        await tick(daemon, clock, 3600)
        assert len(runs(daemon)) == 1
        clock.set(SEVEN + 86400 - 1)
        await tick(daemon, clock, 0)
        assert len(runs(daemon)) == 1, "06:59:59 the next day is not 07:00 yet"
        await tick(daemon, clock, 2)
        assert [r["fire_time"] for r in runs(daemon)] == [SEVEN, SEVEN + 86400]

    rig.drive(scenario)


def test_interval_fires_once_per_period_and_restart_keeps_the_grid(tmp_path: Path) -> None:
    rig = Rig(tmp_path)
    rig.agent("poll", every="60s")

    async def first(daemon: Daemon, clock: ManualClock) -> float:
        for _ in range(3):
            await tick(daemon, clock, 60)
        done = runs(daemon)
        assert len(done) == 3 and all(r["state"] == "succeeded" for r in done)
        times = [r["fire_time"] for r in done]
        assert [b - a for a, b in zip(times, times[1:], strict=False)] == [60.0] * 2
        return times[-1]

    last = rig.drive(first)

    async def second(daemon: Daemon, clock: ManualClock) -> None:
        await asyncio.sleep(0.2)
        assert len(runs(daemon)) == 3, "the restart does not fire the last time again"
        await tick(daemon, clock, 60)
        assert runs(daemon)[-1]["fire_time"] == last + 60

    rig.drive(second, start=T0 + 3 * 60 + 1)


def _downtime(tmp_path: Path, policy: dict[str, object]) -> list[dict[str, object]]:
    """Fire an hourly cron once, stop, come back five hours later under ``policy``."""
    rig = Rig(tmp_path)
    rig.agent("hourly", triggers=[{"type": "cron", "cron": "0 * * * *", "timezone": "UTC"}], schedule=policy)

    async def before(daemon: Daemon, clock: ManualClock) -> None:
        await tick(daemon, clock, 60)
        assert len(runs(daemon)) == 1

    rig.drive(before)

    async def after(daemon: Daemon, clock: ManualClock) -> list[dict[str, object]]:
        await asyncio.sleep(0.2)
        await idle(daemon)
        return runs(daemon)[1:]

    back = SEVEN + 5 * 3600 + 600  # 12:10: 08:00 to 12:00 were missed
    return rig.drive(after, start=back)


def test_missed_runs_skip(tmp_path: Path) -> None:
    assert _downtime(tmp_path, {"missed": "skip"}) == []


def test_missed_runs_once(tmp_path: Path) -> None:
    [run] = _downtime(tmp_path, {"missed": "once"})
    assert run["missed"] is True and run["fire_time"] == SEVEN + 5 * 3600 and run["state"] == "succeeded"


def test_missed_runs_all_within_the_bound(tmp_path: Path) -> None:
    caught_up = _downtime(tmp_path, {"missed": "all", "missed_max": 3})
    hours = sorted(r["fire_time"] for r in caught_up)  # type: ignore[type-var]
    assert hours == [SEVEN + h * 3600 for h in (3, 4, 5)], "the latest three of the five missed hours"
    assert all(r["missed"] for r in caught_up)


def test_overlap_skip_is_the_default(tmp_path: Path) -> None:
    rig = Rig(tmp_path)
    rig.agent("slow", GATED, every="60s")

    async def scenario(daemon: Daemon, clock: ManualClock) -> None:
        clock.advance(60)
        await until(lambda: len(runs(daemon)) == 1 and daemon.queue.active("slow") == 1)
        clock.advance(60)
        await until(lambda: any(e["reason"].startswith("the previous run") for e in events(rig, "trigger skipped")))
        rig.release("slow")
        await idle(daemon)
        assert [r["state"] for r in runs(daemon)] == ["succeeded"]

    rig.drive(scenario)


def test_overlap_queue_is_bounded_and_runs_one_at_a_time(tmp_path: Path) -> None:
    rig = Rig(tmp_path)
    rig.agent("slow", GATED, every="60s", schedule={"overlap": "queue", "max_queued": 1})

    async def scenario(daemon: Daemon, clock: ManualClock) -> None:
        for expected in (1, 2, 2):
            clock.advance(60)
            await until(lambda n=expected: len(runs(daemon)) == n)  # type: ignore[misc]
            await asyncio.sleep(0.05)
        assert daemon.queue.active("slow") == 1 and daemon.queue.depth("slow") == 1
        assert any("max_queued = 1" in e["reason"] for e in events(rig, "trigger skipped"))
        rig.release("slow")
        await idle(daemon)
        done = runs(daemon)
        assert [r["state"] for r in done] == ["succeeded", "succeeded"]
        assert done[1]["started"] >= done[0]["ended"] - 0.01, "one run of the agent at a time"

    rig.drive(scenario)


def test_overlap_cancel_replaces_the_running_run(tmp_path: Path) -> None:
    rig = Rig(tmp_path)
    rig.agent("slow", GATED, every="60s", schedule={"overlap": "cancel"})

    async def scenario(daemon: Daemon, clock: ManualClock) -> None:
        clock.advance(60)
        await until(lambda: daemon.queue.active("slow") == 1)
        await until(lambda: (rig.workdir("slow") / "started").exists())
        clock.advance(60)
        await until(lambda: len(runs(daemon)) == 2 and finished(runs(daemon)[0]))
        first = runs(daemon)[0]
        assert first["state"] == "cancelled" and "overlap = cancel" in first["error"]["message"]
        rig.release("slow")
        await idle(daemon)
        assert runs(daemon)[1]["state"] == "succeeded"

    rig.drive(scenario)


def test_pause_skips_triggers_and_holds_the_queue_until_resume(tmp_path: Path) -> None:
    rig = Rig(tmp_path)
    rig.agent("poll", every="60s")

    async def scenario(daemon: Daemon, clock: ManualClock) -> None:
        await daemon.engine.pause_agent("poll", "budget spent", until=clock.now() + 150)
        assert daemon.engine.paused("poll")["reason"] == "budget spent"  # type: ignore[index]
        await tick(daemon, clock, 60)
        await tick(daemon, clock, 60)
        assert runs(daemon) == []
        skipped = [e for e in events(rig, "trigger skipped") if e["agent"] == "poll"]
        assert len(skipped) == 2 and "paused: budget spent" in skipped[0]["reason"]
        await tick(daemon, clock, 60)  # the pause's until has passed: it lifts by itself
        assert daemon.engine.paused("poll") is None and len(runs(daemon)) == 1
        await daemon.engine.pause_agent("poll", "by hand")
        manual = await daemon.engine.create_run("poll", None, trigger="cli")
        daemon.queue.add(manual)
        await asyncio.sleep(0.2)
        assert daemon.queue.depth("poll") == 1, "a paused agent's queued run waits"
        await daemon.engine.resume_agent("poll")
        await idle(daemon)
        assert runs(daemon)[-1]["state"] == "succeeded"

    rig.drive(scenario)


def test_a_pause_survives_a_restart(tmp_path: Path) -> None:
    rig = Rig(tmp_path)
    rig.agent("poll", every="60s")

    async def pause(daemon: Daemon, clock: ManualClock) -> None:
        await daemon.engine.pause_agent("poll", "crash loop")

    rig.drive(pause)

    async def check(daemon: Daemon, clock: ManualClock) -> None:
        pause = daemon.engine.paused("poll")
        assert pause is not None and pause["reason"] == "crash loop" and pause["until"] is None

    rig.drive(check)


def test_cancel_kills_the_running_child_and_keeps_the_journal(tmp_path: Path) -> None:
    rig = Rig(tmp_path)
    source = GATED.replace('open("started"', 'ctx.state["mark"] = 1\n    open("started"')
    rig.agent("slow", source)

    async def scenario(daemon: Daemon, clock: ManualClock) -> None:
        run = await daemon.engine.create_run("slow", None, trigger="cli")
        daemon.queue.add(run)
        await until(lambda: (rig.workdir("slow") / "started").exists())
        pid = daemon.engine.processes.live[run["id"]].pid
        await daemon.engine.cancel(run["id"])
        await idle(daemon)
        [ended] = runs(daemon)
        assert ended["state"] == "cancelled"
        with daemon.engine.store.read() as txn:
            steps = list(daemon.engine.records.steps(txn, run["id"]))
        assert [s["kind"] for s in steps] == ["state"], "the journal is kept"
        assert not Path(f"/proc/{pid}").exists() or "zombie" in Path(f"/proc/{pid}/status").read_text().lower()
        queued = await daemon.engine.create_run("slow", None, trigger="cli")
        assert (await daemon.engine.cancel(queued["id"]))["state"] == "cancelled", "a queued run ends at once"

    rig.drive(scenario)


def test_many_triggers_at_once_hold_the_global_and_per_agent_limits(tmp_path: Path) -> None:
    rig = Rig(tmp_path)
    rig.corral["max_concurrent_runs"] = 3
    source = "import time\n\ndef run(ctx):\n    time.sleep(0.3)\n    return 'ok'\n"
    for index in range(8):
        rig.agent(f"a{index}", source, triggers=[{"type": "cron", "cron": "0 7 * * *", "timezone": "UTC"}])
    rig.agent("q", source, every="20s", schedule={"overlap": "queue", "max_queued": 5})

    async def scenario(daemon: Daemon, clock: ManualClock) -> None:
        peak, per_agent = 0, 0
        clock.advance(61)
        deadline = asyncio.get_running_loop().time() + 30
        while asyncio.get_running_loop().time() < deadline:
            peak = max(peak, len(daemon.queue.tasks()))
            per_agent = max(per_agent, daemon.queue.active("q"))
            if len([r for r in runs(daemon) if finished(r)]) >= 9:
                break
            if clock.now() < T0 + 121:
                clock.advance(20)
            await asyncio.sleep(0.02)
        await idle(daemon)
        done = runs(daemon)
        assert len(done) >= 9 and all(r["state"] == "succeeded" for r in done)
        assert peak == 3 and per_agent == 1
        spans = sorted((r["started"], r["ended"]) for r in done)
        for start, _ in spans:
            assert sum(1 for s, e in spans if s <= start < e) <= 3, "never more than max_concurrent_runs at once"

    rig.drive(scenario)


def test_no_progress_pauses_the_agent_and_alerts(tmp_path: Path) -> None:
    rig = Rig(tmp_path)
    rig.agent("idle", every="60s", schedule={"no_progress_runs": 3, "no_progress_action": "pause"})

    async def scenario(daemon: Daemon, clock: ManualClock) -> None:
        for _ in range(3):
            await tick(daemon, clock, 60)
        pause = daemon.engine.paused("idle")
        assert pause is not None and pause["reason"].startswith("no progress: its last 3 scheduled runs")
        await tick(daemon, clock, 60)
        assert len(runs(daemon)) == 3
        [event] = events(rig, "agent makes no progress")
        assert event["agent"] == "idle"
        await daemon.engine.resume_agent("idle")
        await tick(daemon, clock, 60)
        assert len(runs(daemon)) == 4 and daemon.engine.paused("idle") is None, "the count starts again on resume"

    rig.drive(scenario)


def test_no_progress_slows_the_schedule_until_a_run_does_something(tmp_path: Path) -> None:
    rig = Rig(tmp_path)
    rig.agent("idle", every="60s", schedule={"no_progress_runs": 2, "slow_factor": 3})

    async def scenario(daemon: Daemon, clock: ManualClock) -> None:
        for _ in range(2):
            await tick(daemon, clock, 60)
        for _ in range(6):
            await tick(daemon, clock, 60)
        assert len(runs(daemon)) == 4, "two runs, then one fire in three"
        assert await daemon.scheduler.unslow("idle")

    rig.drive(scenario)


def test_two_triggers_firing_together_start_one_run_under_overlap_skip(tmp_path: Path) -> None:
    rig = Rig(tmp_path)
    cron = {"type": "cron", "cron": "0 7 * * *", "timezone": "UTC"}
    rig.agent("twice", GATED, triggers=[{**cron, "id": "one"}, {**cron, "id": "two"}])

    async def scenario(daemon: Daemon, clock: ManualClock) -> None:
        clock.advance(61)
        await until(lambda: len(events(rig, "trigger skipped")) == 1)
        assert len(runs(daemon)) == 1
        rig.release("twice")
        await idle(daemon)

    rig.drive(scenario)


def test_a_run_queued_twice_runs_once(tmp_path: Path) -> None:
    """The control socket serves before start-up's recovery ends: a run queued then is also
    found queued in the store by the recovery, and must not execute twice."""
    rig = Rig(tmp_path)
    rig.agent("slow", GATED)

    async def scenario(daemon: Daemon, clock: ManualClock) -> None:
        run = await daemon.engine.create_run("slow", None, trigger="cli")
        daemon.queue.add(run)
        await until(lambda: daemon.queue.active("slow") == 1)
        daemon.queue.add(run)
        assert daemon.queue.depth("slow") == 0, "executing already"
        rig.release("slow")
        await idle(daemon)
        await until(lambda: any(e["new"] == "succeeded" for e in events(rig, "run state")))
        assert len([e for e in events(rig, "run state") if e["new"] == "running"]) == 1

    rig.drive(scenario)
