"""A model call the host slept through is retried without blaming the endpoint or using up its tries.

The server is real (loopback) and so are the read timeouts; only the host's sleep is moved
by hand, through :attr:`Timing.slept`, at the moment a request reaches the server, as a Mac
Mini idle-sleeping with a call in flight would.
"""

from __future__ import annotations

import sys
import time
from typing import Any

import pytest

from corral.breaker import BreakerChange
from corral.models import Message, ModelClient, ModelError, Request, Timing, Try
from corral.models.retry import time_asleep

from .fake_servers import FakeServer, Reply, endpoint, model_client, openai_body

pytestmark = pytest.mark.anyio

ASK = Request((Message.user("Still there?"),))
NAP = 600.0
LATE = Reply(body=openai_body("too late"), delay=1.0)  # past the 0.2 s read timeout below
DROPPED = Reply(body=openai_body("cut short"), drop_after=10)


class SleepingHost:
    """How long the host has slept: it naps as soon as chosen requests reach the server, or when told."""

    def __init__(self, server: FakeServer) -> None:
        self.server = server
        self.naps: dict[int, float] = {}
        self.asleep = 0.0

    def sleeps_during(self, *requests: int, seconds: float = NAP) -> None:
        """Nap ``seconds`` while each of these requests (1-based) is in flight."""
        self.naps.update(dict.fromkeys(requests, seconds))

    async def nap(self, seconds: float) -> None:
        """A wait between tries (:attr:`Timing.sleep`) that the host sleeps through, for NAP seconds."""
        self.asleep += NAP

    def slept(self) -> float:
        arrived = len(self.server.requests)
        return self.asleep + sum(seconds for number, seconds in self.naps.items() if number <= arrived)


def client(server: FakeServer, host: SleepingHost, changes: list[BreakerChange], **settings: Any) -> ModelClient:
    """A client whose breaker opens at the first failure it is told of, so blame cannot hide."""
    defaults: dict[str, Any] = {"read_timeout": 0.2, "breaker_failures": 1}
    return model_client(
        endpoint(server, **{**defaults, **settings}), timing=Timing(slept=host.slept), on_breaker_change=changes.append
    )


@pytest.mark.parametrize("cut", [LATE, DROPPED], ids=["read_timeout", "dropped_connection"])
async def test_a_try_the_host_slept_through_is_retried_without_blaming_the_endpoint(
    server: FakeServer, cut: Reply
) -> None:
    server.enqueue(cut, Reply(body=openai_body("back")))
    host = SleepingHost(server)
    host.sleeps_during(1)
    seen: list[Try] = []
    changes: list[BreakerChange] = []
    async with client(server, host, changes) as model:
        response = await model.call(ASK, on_attempt=seen.append)
        assert model.breaker.state == "closed" and model.breaker.consecutive_failures == 0
    assert response.text == "back" and len(server.requests) == 2 and changes == []
    first, second = seen
    assert first.kind in {"timeout", "connection"} and first.slept == NAP and first.wait is not None
    assert "The host slept 600 s during this try" in (first.message or "")
    assert Try.from_dict(first.to_dict()) == first
    assert second.ok and second.slept == 0


async def test_one_try_still_gets_another_when_the_host_slept_through_it(server: FakeServer) -> None:
    server.enqueue(LATE, Reply(body=openai_body("back")))
    host = SleepingHost(server)
    host.sleeps_during(1)
    changes: list[BreakerChange] = []
    async with client(server, host, changes, retry_attempts=1) as model:
        assert (await model.call(ASK)).text == "back"
    assert len(server.requests) == 2 and changes == []


async def test_a_timeout_while_awake_still_counts_against_tries_and_breaker(server: FakeServer) -> None:
    server.enqueue(LATE, Reply(body=openai_body("never asked")))
    host = SleepingHost(server)
    host.sleeps_during(1, seconds=1.0)  # shorter than a real suspend: clock noise, not sleep
    changes: list[BreakerChange] = []
    async with client(server, host, changes, retry_attempts=1) as model:
        with pytest.raises(ModelError) as caught:
            await model.call(ASK)
        assert model.breaker.state == "open"
    assert len(server.requests) == 1 and [change.new for change in changes] == ["open"]
    [attempt] = caught.value.attempts
    assert caught.value.kind == "timeout" and attempt.slept == 0 and "slept" not in caught.value.message


async def test_an_answer_given_while_the_host_slept_is_still_the_endpoints(server: FakeServer) -> None:
    server.enqueue(Reply(503, "down"), Reply(body=openai_body("never asked")))
    host = SleepingHost(server)
    host.sleeps_during(1)
    changes: list[BreakerChange] = []
    async with client(server, host, changes, retry_attempts=1) as model:
        with pytest.raises(ModelError) as caught:
            await model.call(ASK)
    assert (caught.value.kind, caught.value.status) == ("overloaded", 503) and caught.value.attempts[0].slept == 0
    assert [change.new for change in changes] == ["open"]


async def test_a_wait_the_host_slept_through_excuses_the_try_after_it(server: FakeServer) -> None:
    server.enqueue(Reply(502, "bad gateway"), DROPPED, Reply(body=openai_body("back")))
    host = SleepingHost(server)
    seen: list[Try] = []
    settings: dict[str, Any] = {"retry_attempts": 2, "breaker_failures": 2}
    model = model_client(
        endpoint(server, read_timeout=0.2, **settings), timing=Timing(sleep=host.nap, slept=host.slept)
    )
    async with model:
        assert (await model.call(ASK, on_attempt=seen.append)).text == "back"
        assert model.breaker.consecutive_failures == 0
    assert [(attempt.kind, attempt.slept) for attempt in seen] == [("server_error", 0), ("connection", NAP), (None, 0)]


async def test_a_host_that_sleeps_through_every_try_ends_the_call_clearly(server: FakeServer) -> None:
    server.enqueue(*[LATE] * 5)
    host = SleepingHost(server)
    host.sleeps_during(*range(1, 6))
    changes: list[BreakerChange] = []
    async with client(server, host, changes, retry_attempts=2) as model:
        with pytest.raises(ModelError) as caught:
            await model.call(ASK)
        assert model.breaker.state == "closed"
    error = caught.value
    assert len(server.requests) == 4 and [attempt.slept for attempt in error.attempts] == [NAP] * 4
    assert (error.kind, error.retryable) == ("timeout", True) and changes == []
    assert error.message.startswith("model endpoint 'test' failed 4 times")
    assert "the host slept through 4 of them, 2400 s in all" in error.message
    assert "at most retry_attempts (2) extra tries" in error.message and "keep_awake" in error.message


def test_the_default_sleep_clock_is_the_systems() -> None:
    assert Timing().slept is time_asleep
    if sys.platform.startswith("linux"):
        expected = time.clock_gettime(time.CLOCK_BOOTTIME) - time.clock_gettime(time.CLOCK_MONOTONIC)
        assert abs(time_asleep() - expected) < 0.05
    assert time_asleep() >= 0
