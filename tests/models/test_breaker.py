"""The circuit breaker: its state machine on a fake clock, and through a ModelClient against a real server."""

from __future__ import annotations

import asyncio
from typing import Any

import pytest

from corral.models import BreakerChange, BreakerState, CircuitBreaker, Message, ModelError, Request

from .fake_servers import FakeServer, FakeTime, Reply, endpoint, model_client, openai_body

pytestmark = pytest.mark.anyio

ASK = Request((Message.user("hello"),))


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
    assert opened.endpoint == "ep" and "3 consecutive failures, the last: HTTP 503" in opened.reason


async def test_open_fails_fast_then_one_trial_decides(fake_time: FakeTime) -> None:
    changes: list[BreakerChange] = []
    breaker = _breaker(fake_time, changes, failures=1)
    breaker.record_failure(await breaker.acquire(max_hold=60, sleep=fake_time.sleep), "timeout")
    fake_time.now += 10
    with pytest.raises(ModelError) as caught:
        await breaker.acquire(max_hold=60, sleep=fake_time.sleep)
    assert caught.value.kind == "breaker_open" and caught.value.retry_after == 20
    assert "again in 20.0 s" in caught.value.message and caught.value.retryable

    fake_time.now += 20
    trial = await breaker.acquire(max_hold=60, sleep=fake_time.sleep)
    assert trial.trial and breaker.state is BreakerState.HALF_OPEN
    with pytest.raises(ModelError, match="one trial call is probing it now"):
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
    with pytest.raises(ModelError) as caught:
        await breaker.acquire(max_hold=60, sleep=fake_time.sleep)
    assert caught.value.kind == "retry_after_too_long" and "HTTP 503 with Retry-After 100 s" in caught.value.message


def test_a_breaker_refuses_nonsense_settings() -> None:
    with pytest.raises(ValueError, match="failures >= 1"):
        CircuitBreaker("ep", failures=0, cool_down=1, clock=lambda: 0.0)


async def test_breaker_through_the_client_opens_fails_fast_half_opens_and_closes(
    server: FakeServer, fake_time: FakeTime
) -> None:
    changes: list[BreakerChange] = []
    settings: dict[str, Any] = {"retry_attempts": 1, "breaker_failures": 3, "breaker_cool_down": 30}
    server.enqueue(Reply(503, "down"), Reply(500, "down"), Reply(body=b"garbage"))
    async with model_client(
        endpoint(server, **settings), timing=fake_time.timing(), on_breaker_change=changes.append
    ) as client:
        kinds = []
        for _ in range(3):
            with pytest.raises(ModelError) as caught:
                await client.call(ASK)
            kinds.append(caught.value.kind)
        assert kinds == ["overloaded", "server_error", "bad_response"]
        assert [c.new for c in changes] == [BreakerState.OPEN]

        for _ in range(5):
            with pytest.raises(ModelError) as caught:
                await client.call(ASK)
            assert caught.value.kind == "breaker_open" and caught.value.attempts[0].status is None
        assert len(server.requests) == 3, "an open breaker sends nothing"

        fake_time.now += 30
        server.enqueue(Reply(body=openai_body("back")))
        assert (await client.call(ASK)).text == "back"
    assert [(c.old, c.new) for c in changes] == [
        (BreakerState.CLOSED, BreakerState.OPEN),
        (BreakerState.OPEN, BreakerState.HALF_OPEN),
        (BreakerState.HALF_OPEN, BreakerState.CLOSED),
    ]


async def test_while_the_trial_call_runs_other_callers_fail_fast(server: FakeServer, fake_time: FakeTime) -> None:
    settings: dict[str, Any] = {"retry_attempts": 1, "breaker_failures": 1, "breaker_cool_down": 30}
    server.enqueue(Reply(503, "down"), Reply(body=openai_body("slow trial"), delay=0.3))
    async with model_client(endpoint(server, **settings), timing=fake_time.timing()) as client:
        with pytest.raises(ModelError):
            await client.call(ASK)
        fake_time.now += 30
        trial = asyncio.create_task(client.call(ASK))
        while len(server.requests) < 2:
            await asyncio.sleep(0.01)
        with pytest.raises(ModelError, match="one trial call is probing"):
            await client.call(ASK)
        assert (await trial).text == "slow trial"
        assert client.breaker.state is BreakerState.CLOSED
    assert len(server.requests) == 2


async def test_errors_that_are_the_callers_fault_do_not_open_the_breaker(
    server: FakeServer, fake_time: FakeTime
) -> None:
    server.enqueue(*[Reply(400, {"error": {"message": "bad"}})] * 3, *[Reply(429, "slow")] * 3)
    settings: dict[str, Any] = {"retry_attempts": 1, "breaker_failures": 2}
    async with model_client(endpoint(server, **settings), timing=fake_time.timing()) as client:
        for _ in range(6):
            with pytest.raises(ModelError):
                await client.call(ASK)
        assert client.breaker.state is BreakerState.CLOSED and client.breaker.consecutive_failures == 0


async def test_a_breaker_passed_in_is_shared_by_clients_of_one_endpoint(
    server: FakeServer, fake_time: FakeTime
) -> None:
    settings: dict[str, Any] = {"retry_attempts": 1, "breaker_failures": 1}
    server.enqueue(Reply(503, "down"))
    async with model_client(endpoint(server, **settings), timing=fake_time.timing()) as first:
        with pytest.raises(ModelError):
            await first.call(ASK)
        async with model_client(endpoint(server, **settings), breaker=first.breaker) as reloaded:
            with pytest.raises(ModelError) as caught:
                await reloaded.call(ASK)
    assert caught.value.kind == "breaker_open" and len(server.requests) == 1
