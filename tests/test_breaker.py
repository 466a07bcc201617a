"""The circuit breaker's state machine on a fake clock, its registry, and its use from two threads."""

from __future__ import annotations

import asyncio
import threading

import pytest

from corral.breaker import (
    BreakerChange,
    BreakerOpen,
    Breakers,
    BreakerState,
    CircuitBreaker,
    describe,
    downstream_label,
)

pytestmark = pytest.mark.anyio


@pytest.fixture
def anyio_backend() -> str:
    return "asyncio"


class FakeTime:
    """A clock that only moves when the code under test sleeps, or a test moves it."""

    def __init__(self) -> None:
        self.now = 0.0
        self.sleeps: list[float] = []

    async def sleep(self, seconds: float) -> None:
        self.sleeps.append(seconds)
        self.now += seconds
        await asyncio.sleep(0)


@pytest.fixture
def fake_time() -> FakeTime:
    return FakeTime()


def _breaker(fake_time: FakeTime, changes: list[BreakerChange], failures: int = 3) -> CircuitBreaker:
    return CircuitBreaker("ep", failures=failures, cool_down=30, clock=lambda: fake_time.now, on_change=changes.append)


async def test_consecutive_failures_open_and_a_success_resets_the_count(fake_time: FakeTime) -> None:
    changes: list[BreakerChange] = []
    breaker = _breaker(fake_time, changes)
    for _ in range(2):
        breaker.record_failure(await breaker.acquire(max_hold=60, sleep=fake_time.sleep), "HTTP 503")
    breaker.record_success(await breaker.acquire(max_hold=60, sleep=fake_time.sleep))
    assert breaker.consecutive_failures == 0 and breaker.state is BreakerState.CLOSED
    for _ in range(3):
        breaker.record_failure(await breaker.acquire(max_hold=60, sleep=fake_time.sleep), "HTTP 503")
    assert breaker.state is BreakerState.OPEN
    [opened] = changes
    assert (opened.old, opened.new, opened.retry_in) == (BreakerState.CLOSED, BreakerState.OPEN, 30)
    assert opened.downstream == "ep" and "3 consecutive failures, the last: HTTP 503" in opened.reason


async def test_open_fails_fast_then_one_trial_decides(fake_time: FakeTime) -> None:
    changes: list[BreakerChange] = []
    breaker = _breaker(fake_time, changes, failures=1)
    breaker.record_failure(await breaker.acquire(max_hold=60, sleep=fake_time.sleep), "timeout")
    fake_time.now += 10
    with pytest.raises(BreakerOpen) as caught:
        await breaker.acquire(max_hold=60, sleep=fake_time.sleep)
    assert caught.value.kind == "breaker_open" and caught.value.retry_after == 20
    assert "again in 20.0 s" in caught.value.message

    fake_time.now += 20
    trial = await breaker.acquire(max_hold=60, sleep=fake_time.sleep)
    assert trial.trial and breaker.state is BreakerState.HALF_OPEN
    with pytest.raises(BreakerOpen, match="one trial call is probing it now"):
        await breaker.acquire(max_hold=60, sleep=fake_time.sleep)
    breaker.record_failure(trial, "HTTP 500")
    assert breaker.state is BreakerState.OPEN

    fake_time.now += 30
    trial = await breaker.acquire(max_hold=60, sleep=fake_time.sleep)
    breaker.record_success(trial)
    assert breaker.state is BreakerState.CLOSED
    assert [(c.old.value, c.new.value) for c in changes] == [
        ("closed", "open"),
        ("open", "half_open"),
        ("half_open", "open"),
        ("open", "half_open"),
        ("half_open", "closed"),
    ]
    assert "trial call failed: HTTP 500" in changes[2].reason


async def test_a_trial_given_back_without_a_verdict_lets_the_next_caller_try(fake_time: FakeTime) -> None:
    breaker = _breaker(fake_time, [], failures=1)
    breaker.record_failure(await breaker.acquire(max_hold=60, sleep=fake_time.sleep), "timeout")
    fake_time.now += 30
    breaker.record_neutral(await breaker.acquire(max_hold=60, sleep=fake_time.sleep))
    assert (await breaker.acquire(max_hold=60, sleep=fake_time.sleep)).trial


async def test_a_hold_delays_every_caller_and_a_longer_one_wins(fake_time: FakeTime) -> None:
    breaker = _breaker(fake_time, [])
    breaker.hold(5, "HTTP 429")
    breaker.hold(2, "HTTP 429 again")
    permit = await breaker.acquire(max_hold=60, sleep=fake_time.sleep)
    assert permit.held == 5 and fake_time.sleeps == [5]
    breaker.hold(100, "HTTP 503 with Retry-After 100 s")
    with pytest.raises(BreakerOpen) as caught:
        await breaker.acquire(max_hold=60, sleep=fake_time.sleep)
    assert caught.value.kind == "retry_after_too_long" and "HTTP 503 with Retry-After 100 s" in caught.value.message


def test_a_breaker_refuses_nonsense_settings() -> None:
    with pytest.raises(ValueError, match="failures >= 1"):
        CircuitBreaker("ep", failures=0, cool_down=1, clock=lambda: 0.0)


def test_admit_never_waits_and_refuses_like_acquire(fake_time: FakeTime) -> None:
    breaker = CircuitBreaker("tool:api", failures=2, cool_down=10, clock=lambda: fake_time.now)
    breaker.hold(5, "HTTP 429")
    permit = breaker.admit()  # the step path never sleeps: a hold is not waited out
    assert permit == permit.__class__(trial=False, held=0.0)
    breaker.record_failure(permit, "HTTP 503")
    breaker.record_failure(breaker.admit(), "HTTP 503")
    with pytest.raises(BreakerOpen) as caught:
        breaker.admit()
    assert caught.value.kind == "breaker_open" and caught.value.downstream == "tool:api"
    assert "'tool:api' is failing (2 consecutive failures)" in caught.value.message
    fake_time.now += 10
    trial = breaker.admit()
    with pytest.raises(BreakerOpen, match="one trial call is probing it now"):
        breaker.admit()
    breaker.record_success(trial)
    assert breaker.state is BreakerState.CLOSED


def test_the_registry_shares_one_breaker_per_downstream_and_takes_new_settings(fake_time: FakeTime) -> None:
    changes: list[BreakerChange] = []
    breakers = Breakers(clock=lambda: fake_time.now, on_change=changes.append)
    first = breakers.get("tool:example.com", failures=1, cool_down=5)
    assert breakers.get("tool:example.com", failures=1, cool_down=5) is first
    assert breakers.get("tool:other.org") is not first
    first.record_failure(first.admit(), "HTTP 503")
    assert breakers.states() == {"tool:example.com": BreakerState.OPEN, "tool:other.org": BreakerState.CLOSED}
    assert [change.downstream for change in changes] == ["tool:example.com"]
    again = breakers.get("tool:example.com", failures=3, cool_down=60)  # a reloaded config
    assert again is first and (again.failures, again.cool_down) == (3, 60)
    assert again.state is BreakerState.OPEN  # the state is kept


def test_names_say_whose_breaker_it_is() -> None:
    assert describe("gpt") == ("model", "gpt")
    assert describe("tool:example.com") == ("tool", "example.com")
    assert describe("mcp:docs") == ("mcp", "docs")
    assert describe("odd:name") == ("model", "odd:name")  # a model may be called anything
    assert downstream_label("tool:corral.plugins.fetch") == "tool downstream 'corral.plugins.fetch'"
    assert downstream_label("mcp:docs") == "MCP server 'docs'"


def test_two_threads_failing_together_open_it_once() -> None:
    """The step path (writer thread) and the event loop may share a breaker."""
    changes: list[BreakerChange] = []
    breaker = CircuitBreaker("tool:x", failures=1000, cool_down=60, on_change=changes.append)
    start = threading.Barrier(2)

    def fail() -> None:
        start.wait()
        for _ in range(500):
            try:
                breaker.record_failure(breaker.admit(), "boom")
            except BreakerOpen:
                return

    threads = [threading.Thread(target=fail) for _ in range(2)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert breaker.consecutive_failures == 1000
    assert [(c.old, c.new) for c in changes] == [(BreakerState.CLOSED, BreakerState.OPEN)]
