"""The wall clock stepped under a running daemon (NTP, an operator): triggers neither stall
nor fire twice, catch-ups follow the missed policy, budgets never open a day twice, and
resumable runs stay resumable.

The daemon runs under libfaketime (:mod:`tests.e2e.faketime`): its wall clock steps while
its monotonic and boot-time clocks run on, as in a real step. Periods are seconds long
so each test takes seconds; "within 5 s" is the promised time to notice a step.
"""

from __future__ import annotations

import json
import os
import signal
import time
from collections import Counter
from collections.abc import Callable, Iterator, Mapping
from pathlib import Path
from typing import Any, TypeVar

import pytest

from corral.testing import DaemonProcess
from tests.e2e.faketime import FakedProject, WallClock, forget_shared_memory, library, unavailable
from tests.e2e.support import assert_journal, log_events
from tests.models.fake_servers import FakeServer, Reply, openai_body

pytestmark = pytest.mark.skipif(bool(why := unavailable()), reason=why or "")

DAY, HOUR = 86400.0, 3600.0
NOTICE = 5.0
"""Seconds within which the daemon notices a step and acts on it."""
QUICK = "def run(ctx):\n    return ctx.input\n"
EVERY_2S = "* * * * * */2"
"""Six-field cron: croniter reads the sixth field as the seconds."""
HOURLY = "0 * * * * 0"
LATE = 60.0
"""A fire time less than this old when the daemon handles it may count as on time, not missed."""

T = TypeVar("T")


@pytest.fixture
def project(tmp_path: Path) -> Iterator[FakedProject]:
    shim = library()
    assert shim is not None
    faked = FakedProject(tmp_path, WallClock(tmp_path / "faketime", shim))
    try:
        yield faked
    finally:
        faked.close()


def wait_for(what: str, probe: Callable[[], T], timeout: float, enough: Callable[[T], bool] = bool) -> T:
    """Poll ``probe`` until its answer is ``enough``; fail naming ``what`` and the last answer."""
    deadline = time.monotonic() + timeout
    while not enough(found := probe()) and time.monotonic() < deadline:
        time.sleep(0.25)
    assert enough(found), f"{what}: not within {timeout:g}s; last seen: {brief(found)}"
    return found


def brief(found: Any) -> Any:
    """Runs by what the scheduler decided about them; anything else as it is."""
    if isinstance(found, dict):
        return {key: brief(value) for key, value in found.items()}
    if isinstance(found, list) and all(isinstance(r, dict) and "fire_time" in r for r in found):
        return [{k: r.get(k) for k in ("fire_time", "missed", "state")} for r in found[-10:]]
    return found


def runs_of(project: FakedProject, agent: str) -> list[dict[str, Any]]:
    """Every run of ``agent``, oldest first (runs created in one millisecond are listed in any order)."""
    return sorted(project.cli_json("runs", agent, "--limit", "10000"), key=lambda run: run["created"])


def start_scheduled(project: FakedProject) -> DaemonProcess:
    """Start the daemon and wait until every agent's next fire is planned: the socket opens
    before the schedules start, and a step before they read the clock is no step to them."""
    daemon = project.start_daemon()
    wait_for(
        "every schedule planned",
        lambda: all(agent["next_fire"] for agent in project.cli_json("status")["agents"].values()),
        10,
    )
    return daemon


def set_clock(project: FakedProject, offset: float, period: float, phase: float) -> None:
    """Put the daemon's clock about ``offset`` ahead of the real one, ``phase`` seconds into a ``period``."""
    project.clock.set(offset + phase - (time.time() + offset) % period)


def cron(expression: str, missed: str = "skip", missed_max: int = 10) -> dict[str, Any]:
    """An agent table with one cron trigger (in UTC, so an hour starts at a multiple of 3600) and a missed policy."""
    return {
        "triggers": [{"type": "cron", "cron": expression, "timezone": "UTC"}],
        "schedule": {"missed": missed, "missed_max": missed_max},
    }


def interval(every: str, missed: str = "skip", missed_max: int = 10) -> dict[str, Any]:
    """An agent table with an interval trigger (``every``) and a missed policy."""
    return {"every": every, "schedule": {"missed": missed, "missed_max": missed_max}}


def assert_invariants(project: FakedProject, daemon: DaemonProcess | None, agents: list[str]) -> None:
    """No fire time of any trigger ran twice, and the daemon (when given) still runs."""
    if daemon is not None:
        assert daemon.process.poll() is None, f"the daemon died: {project.daemon_stderr()[-2000:]}"
    for agent in agents:
        fired = Counter((r["schedule"], r["fire_time"]) for r in runs_of(project, agent) if r.get("fire_time"))
        twice = [key for key, count in fired.items() if count > 1]
        assert not twice, f"{agent}: fire times run more than once: {twice}"


def clock_steps(project: FakedProject) -> list[dict[str, Any]]:
    return [e for e in log_events(project, None) if e["event"] == "clock stepped"]


Runs = dict[str, list[dict[str, Any]]]


def runs_after(project: FakedProject, seen: Mapping[str, int]) -> Callable[[], Runs]:
    """A probe for :func:`wait_for`: each agent's runs after the first ``seen[agent]``."""
    return lambda: {agent: runs_of(project, agent)[skip:] for agent, skip in seen.items()}


def at_least(counts: Mapping[str, int]) -> Callable[[Runs], bool]:
    return lambda found: all(len(found[agent]) >= count for agent, count in counts.items())


def step_between_fires(project: FakedProject, jump: float) -> tuple[DaemonProcess, Runs]:
    """Start the daemon, wait for a run of every agent, step the clock by ``jump``, and wait
    for two more runs of each (a couple of periods); the daemon and those new runs."""
    daemon = project.start_daemon()
    agents = dict.fromkeys(project.agents, 0)
    found = wait_for("each fired", runs_after(project, agents), 15, at_least(dict.fromkeys(agents, 1)))
    seen = {agent: len(runs) for agent, runs in found.items()}
    project.clock.step(jump)
    what = f"each fired twice after the wall clock stepped {jump:+g}s"
    return daemon, wait_for(what, runs_after(project, seen), 2 * NOTICE + 4, at_least(dict.fromkeys(seen, 2)))


def test_interval_and_cron_triggers_keep_firing_after_the_wall_clock_steps_back_a_day(
    project: FakedProject,
) -> None:
    project.agent("ticker", QUICK, **interval("2s"))
    project.agent("crony", QUICK, **cron(EVERY_2S, missed="once"))
    daemon, found = step_between_fires(project, -DAY)
    for agent, new in found.items():
        assert not [r for r in new if r.get("missed")], f"{agent}: a step back skipped nothing: {brief(new)}"
    faked_now = project.clock.now()
    agents = project.cli_json("status")["agents"]
    away = {agent: round(info["next_fire"] - faked_now) for agent, info in agents.items() if info["next_fire"]}
    assert abs(away.get("crony", DAY)) < NOTICE and abs(away.get("ticker", DAY)) < HOUR, f"next fires from now: {away}"
    assert_invariants(project, daemon, ["ticker", "crony"])


def test_a_step_is_logged_and_shown_by_status_with_or_without_the_daemon(project: FakedProject) -> None:
    project.agent("hourly", QUICK, **cron(HOURLY))
    daemon = start_scheduled(project)
    assert project.cli_json("status")["clock"] is None, "no step seen yet"
    for jump in (-DAY, DAY):
        project.clock.step(jump)
        seen = wait_for(
            f"'clock stepped' logged for a step of {jump:+g}s",
            lambda jump=jump: [e for e in clock_steps(project) if abs(e["jump"] - jump) < NOTICE],
            NOTICE + 2,
        )
        assert seen[-1]["level"] == "warning", seen
        last = project.cli_json("status")["clock"]
        assert last["kind"] == "step" and abs(last["jump"] - jump) < NOTICE, last
        assert min(abs(last["at"] - time.time()), abs(last["at"] - project.clock.now())) < 60, last
    assert daemon.stop() == 0
    last = project.cli_json("status")["clock"]
    assert last is not None and last["kind"] == "step" and abs(last["jump"] - DAY) < NOTICE, last


def test_a_step_forward_catches_up_cron_fire_times_per_policy_within_seconds(project: FakedProject) -> None:
    # hourly triggers, so the scheduler is in a long wait when the clock steps
    project.agent("skipper", QUICK, **cron(HOURLY, missed="skip"))
    project.agent("once", QUICK, **cron(HOURLY, missed="once"))
    project.agent("every", QUICK, **cron(HOURLY, missed="all", missed_max=4))
    set_clock(project, 0, HOUR, HOUR / 2)  # half past: no hourly fire is near
    daemon = start_scheduled(project)
    project.clock.step(DAY)
    stepped = project.clock.now()
    latest = stepped - stepped % HOUR
    expected = {"once": [latest], "every": [latest - k * HOUR for k in (3, 2, 1, 0)]}
    found = wait_for(
        "the catch-up runs after a step forward of a day",
        runs_after(project, dict.fromkeys(expected, 0)),
        3 * NOTICE,
        at_least({agent: len(times) for agent, times in expected.items()}),
    )
    for agent, times in expected.items():
        runs = found[agent]
        assert sorted(r["fire_time"] for r in runs) == times and all(r.get("missed") for r in runs), brief(runs)
        late = [round(r["created"] - stepped, 1) for r in runs if r["created"] - stepped > NOTICE]
        assert not late, f"{agent}: catch-ups created {late}s after the step"
    skipped = [e for e in log_events(project, None) if e["event"] == "missed fire times skipped"]
    assert [e["agent"] for e in skipped] == ["skipper"], skipped
    assert runs_of(project, "skipper") == []
    assert_invariants(project, daemon, ["skipper", "once", "every"])


def test_a_step_forward_does_not_make_interval_fires_missed(project: FakedProject) -> None:
    project.agent("skipper", QUICK, **interval("2s", missed="skip"))
    project.agent("every", QUICK, **interval("2s", missed="all", missed_max=4))
    daemon, found = step_between_fires(project, DAY)
    for agent, new in found.items():
        missed = [r["fire_time"] for r in new if r.get("missed")]
        assert not missed, f"{agent}: {len(missed)} fires counted missed though no real time passed"
    skipped = [e for e in log_events(project, None) if e["event"] == "missed fire times skipped"]
    assert not skipped, f"no interval fire was missed: {skipped}"
    assert_invariants(project, daemon, ["skipper", "every"])


def test_a_small_step_back_neither_repeats_nor_stalls_a_cron_trigger(project: FakedProject) -> None:
    project.agent("crony", QUICK, **cron("* * * * * */3"))
    daemon = project.start_daemon()
    wait_for("crony fired", runs_after(project, {"crony": 0}), 10, at_least({"crony": 1}))
    handled = max(r["fire_time"] for r in runs_of(project, "crony"))
    project.clock.step(-10)
    resumed = wait_for(
        "crony fired past the last time it had handled",
        lambda: [r for r in runs_of(project, "crony") if r["fire_time"] > handled],
        10 + 3 + NOTICE,
    )
    assert resumed[0]["fire_time"] - handled < 3 + 1, resumed
    assert_invariants(project, daemon, ["crony"])


MODEL_KEY_VAR, MODEL_KEY = "FAKE_MODEL_KEY", "sk-test-clock-0123456789"
ASK = """
def run(ctx):
    return ctx.model([{"role": "user", "text": "hello"}], max_tokens=20).text
"""


def test_a_day_already_at_its_call_cap_stays_capped_after_the_clock_steps_back(
    project: FakedProject, server: FakeServer, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv(MODEL_KEY_VAR, MODEL_KEY)
    project.models["fake"] = {
        "provider": "openai",
        "base_url": f"{server.url}/v1",
        "model": "fake-gpt",
        "api_key_env": MODEL_KEY_VAR,
        "retry_attempts": 1,
    }
    project.agent("chat", ASK, models=["fake"], budget={"day_calls": 1})
    server.enqueue(*(Reply(body=openai_body(f"answer {i}")) for i in range(3)))
    daemon = project.start_daemon()

    def ask() -> dict[str, Any]:
        run_id = project.cli_json("run", "chat")["id"]
        return project.wait_for_run(run_id, timeout=30)

    assert ask()["state"] == "succeeded"  # today's one call
    project.clock.step(DAY)
    assert ask()["state"] == "succeeded"  # tomorrow's one call
    project.clock.step(-DAY)
    refused = ask()
    assert refused["state"] != "succeeded", f"a second call today, capped at 1 a day: {refused['result']!r}"
    assert "day_calls" in json.dumps(refused), refused
    assert len(server.requests) == 2, "the call over today's cap reached the provider"
    by_day = project.cli_json("spend", "--by", "day")["groups"]
    assert {day: tally["calls"] for day, tally in by_day.items() if tally["calls"] > 1} == {}, by_day
    assert daemon.process.poll() is None


SLEEPY = """
import os, time

def run(ctx):
    open("napping", "w").close()
    while not os.path.exists("wake"):
        time.sleep(0.05)
    return "woke"
"""


def _kill(daemon: DaemonProcess) -> None:
    os.kill(daemon.pid, signal.SIGKILL)
    daemon.process.wait(10)
    forget_shared_memory(daemon.pid)


def test_a_run_killed_seconds_ago_is_resumed_though_the_clock_moved_two_hours(project: FakedProject) -> None:
    project.corral["max_resume_age"] = "1h"
    project.agent("sleepy", SLEEPY)
    workdir = project.home / "agents" / "sleepy"
    daemon = project.start_daemon()
    run_id = project.cli_json("run", "sleepy")["id"]
    wait_for("the run started", (workdir / "napping").exists, 20)
    _kill(daemon)
    killed = time.monotonic()
    (workdir / "wake").touch()
    time.sleep(max(0.0, 4 - (time.monotonic() - killed)))
    project.clock.set(2 * HOUR)
    daemon = project.start_daemon()
    run = project.wait_for_run(run_id, timeout=30)
    assert run["state"] == "succeeded", f"4 s of real time is not 2 h: {run['state']}: {run.get('error')}"
    assert_journal(project, run_id)
    assert daemon.process.poll() is None


def test_catch_ups_across_restarts_count_against_missed_max(project: FakedProject) -> None:
    # every 2 minutes, and each start 90 s past a fire time: every fire time that passed while
    # the daemon was down is more than LATE old, so none counts as on time, and the next
    # comes 30 s later, after the test
    period = 120.0
    project.agent("crony", QUICK, **cron("*/2 * * * * 0", missed="all", missed_max=3))
    set_clock(project, 0, period, LATE + 30)
    assert start_scheduled(project).stop() == 0  # the schedule starts here
    set_clock(project, HOUR, period, LATE + 30)
    daemon = start_scheduled(project)
    wait_for("3 catch-ups after an hour away", runs_after(project, {"crony": 0}), NOTICE, at_least({"crony": 3}))
    _kill(daemon)  # at once: the next start must know these 3 were run
    set_clock(project, 2 * HOUR, period, LATE + 30)
    daemon = start_scheduled(project)
    time.sleep(2)  # catch-ups come at start
    caught_up = [r["fire_time"] for r in runs_of(project, "crony") if r.get("missed")]
    assert len(caught_up) <= 3, f"{len(caught_up)} catch-ups across two restarts with missed_max = 3: {caught_up}"
    assert_invariants(project, daemon, ["crony"])
