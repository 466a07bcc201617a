"""The circuit breaker through a ModelClient against a real server (its state machine: tests/test_breaker.py)."""

from __future__ import annotations

import asyncio
from typing import Any

import pytest

from corral.models import BreakerChange, BreakerState, Message, ModelError, Request

from .fake_servers import FakeServer, FakeTime, Reply, endpoint, model_client, openai_body

pytestmark = pytest.mark.anyio

ASK = Request((Message.user("hello"),))


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
