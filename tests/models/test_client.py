"""ModelClient against a real loopback server: round trips, retries, waits, and failures that must not be retried."""

from __future__ import annotations

import asyncio
import time
from email.utils import formatdate
from typing import Any

import pytest

from corral.models import Message, ModelError, Request, Timing, ToolCall, ToolDefinition, Try

from .fake_servers import (
    FakeServer,
    FakeTime,
    Reply,
    anthropic_body,
    closed_port_url,
    endpoint,
    model_client,
    openai_body,
)

pytestmark = pytest.mark.anyio

WEATHER = ToolDefinition(
    "get_weather",
    "Current weather for a city.",
    {"type": "object", "properties": {"city": {"type": "string"}}, "required": ["city"]},
)
ASK = Request((Message.system("Be brief."), Message.user("Weather in Paris?")), tools=(WEATHER,))


async def test_openai_tool_call_round_trip(server: FakeServer, api_key: str) -> None:
    server.enqueue(
        Reply(body=openai_body(None, [("call_1", "get_weather", '{"city": "Paris"}')], finish="tool_calls")),
        Reply(body=openai_body("It is sunny in Paris.", usage=(40, 7), cached=32), headers={"x-request-id": "req_9"}),
    )
    async with model_client(endpoint(server, provider="openai", key=api_key)) as client:
        first = await client.call(ASK)
        assert first.finish_reason == "tool_calls" and first.raw_finish_reason == "tool_calls"
        assert first.tool_calls == (ToolCall("call_1", "get_weather", {"city": "Paris"}, '{"city": "Paris"}'),)
        follow_up = Request(
            (*ASK.messages, first.message(), Message.tool_result("call_1", "sunny, 24 C")), tools=(WEATHER,)
        )
        second = await client.call(follow_up)
    assert second.text == "It is sunny in Paris." and second.finish_reason == "stop"
    assert (second.usage.input_tokens, second.usage.output_tokens, second.usage.cache_read_tokens) == (40, 7, 32)
    assert second.request_id == "req_9" and second.provider == "openai" and second.model == "fake-gpt"

    sent = server.requests[1]
    assert sent.path == "/v1/chat/completions"
    assert sent.headers["authorization"] == f"Bearer {api_key}"
    body = sent.json()
    assert body["model"] == "openai-model" and body["max_tokens"] == 4096
    assert body["tools"] == [
        {
            "type": "function",
            "function": {"name": "get_weather", "description": WEATHER.description, "parameters": WEATHER.parameters},
        }
    ]
    assert body["messages"] == [
        {"role": "system", "content": "Be brief."},
        {"role": "user", "content": "Weather in Paris?"},
        {
            "role": "assistant",
            "content": None,
            "tool_calls": [
                {
                    "id": "call_1",
                    "type": "function",
                    "function": {"name": "get_weather", "arguments": '{"city": "Paris"}'},
                }
            ],
        },
        {"role": "tool", "tool_call_id": "call_1", "content": "sunny, 24 C"},
    ]


async def test_anthropic_tool_call_round_trip(server: FakeServer, api_key: str) -> None:
    server.enqueue(
        Reply(body=anthropic_body("Let me check.", [("toolu_1", "get_weather", {"city": "Paris"})], stop="tool_use")),
        Reply(body=anthropic_body("Sunny.", usage=(5, 3), cache=(100, 20)), headers={"request-id": "req_a"}),
    )
    async with model_client(endpoint(server, provider="anthropic", key=api_key)) as client:
        first = await client.call(ASK)
        assert first.text == "Let me check." and first.finish_reason == "tool_calls"
        assert first.tool_calls[0].arguments == {"city": "Paris"}
        follow_up = Request(
            (*ASK.messages, first.message(), Message.tool_result("toolu_1", "no such city", is_error=True)),
            tools=(WEATHER,),
        )
        second = await client.call(follow_up)
    assert second.text == "Sunny." and second.finish_reason == "stop" and second.raw_finish_reason == "end_turn"
    assert second.usage.input_tokens == 125 and second.usage.cache_read_tokens == 100
    assert second.usage.cache_write_tokens == 20 and second.request_id == "req_a"

    sent = server.requests[1]
    assert sent.path == "/v1/messages"
    assert sent.headers["x-api-key"] == api_key and sent.headers["anthropic-version"] == "2023-06-01"
    assert "authorization" not in sent.headers
    body = sent.json()
    assert body["system"] == "Be brief." and body["max_tokens"] == 4096
    assert body["tools"] == [
        {"name": "get_weather", "description": WEATHER.description, "input_schema": WEATHER.parameters}
    ]
    assert body["messages"] == [
        {"role": "user", "content": [{"type": "text", "text": "Weather in Paris?"}]},
        {
            "role": "assistant",
            "content": [
                {"type": "text", "text": "Let me check."},
                {"type": "tool_use", "id": "toolu_1", "name": "get_weather", "input": {"city": "Paris"}},
            ],
        },
        {
            "role": "user",
            "content": [{"type": "tool_result", "tool_use_id": "toolu_1", "content": "no such city", "is_error": True}],
        },
    ]


async def test_broken_tool_arguments_are_a_value_to_hand_back_not_a_crash(server: FakeServer) -> None:
    server.enqueue(Reply(body=openai_body(None, [("c1", "get_weather", '{"city": "Par')], finish="tool_calls")))
    async with model_client(endpoint(server)) as client:
        response = await client.call(ASK)
    [call] = response.tool_calls
    assert call.arguments == {} and call.raw_arguments == '{"city": "Par'
    assert call.arguments_error is not None and "not valid JSON" in call.arguments_error


async def test_tool_arguments_nested_too_deep_are_handed_back_not_journaled(server: FakeServer) -> None:
    # The journal, the wire to the agent and the daemon's walks over both keep 100 levels.
    deep = '{"city": ' + "[" * 900 + "]" * 900 + "}"
    server.enqueue(Reply(body=openai_body(None, [("c1", "get_weather", deep)], finish="tool_calls")))
    async with model_client(endpoint(server)) as client:
        response = await client.call(ASK)
    [call] = response.tool_calls
    assert call.arguments == {} and call.raw_arguments == deep
    assert call.arguments_error == "the arguments nest deeper than 100 levels; send a flatter JSON object"


@pytest.mark.parametrize(
    ("headers", "expected"),
    [
        ({"retry-after": "7"}, 7.0),
        ({"retry-after": formatdate(FakeTime.WALL_START + 8, usegmt=True)}, 8.0),
        ({"retry-after-ms": "1500", "retry-after": "9"}, 1.5),
    ],
    ids=["delta-seconds", "http-date", "retry-after-ms"],
)
async def test_429_waits_as_long_as_the_server_asks(
    server: FakeServer, fake_time: FakeTime, headers: dict[str, str], expected: float
) -> None:
    server.enqueue(Reply(429, {"error": {"message": "slow down"}}, headers), Reply(body=openai_body("ok")))
    seen: list[Try] = []
    async with model_client(endpoint(server), timing=fake_time.timing()) as client:
        response = await client.call(ASK, on_attempt=seen.append)
    assert response.text == "ok" and len(server.requests) == 2
    assert fake_time.sleeps == [pytest.approx(expected)]
    assert [(a.number, a.status, a.kind) for a in seen] == [(1, 429, "rate_limited"), (2, 200, None)]
    assert seen[0].retry_after == pytest.approx(expected) and seen[0].wait == pytest.approx(expected)
    assert seen[1].wait is None and seen[1].held == 0


async def test_backoff_is_full_jitter_exponential_and_capped(server: FakeServer, fake_time: FakeTime) -> None:
    server.enqueue(*[Reply(503, "busy")] * 4, Reply(body=openai_body("at last")))
    fake_time.draw = 0.75
    settings: dict[str, Any] = {"retry_attempts": 5, "retry_initial_wait": 1.0, "retry_max_wait": 3.0}
    async with model_client(endpoint(server, **settings), timing=fake_time.timing()) as client:
        response = await client.call(ASK)
    assert response.text == "at last" and len(server.requests) == 5
    # ceilings 1, 2, 4 -> capped 3, 8 -> capped 3; each wait is the draw (0.75) times its ceiling
    assert fake_time.sleeps == pytest.approx([0.75, 1.5, 2.25, 2.25])


async def test_a_burst_of_503_is_retried_until_success(server: FakeServer) -> None:
    server.enqueue(*[Reply(503, {"error": {"message": "overloaded"}})] * 3, Reply(body=openai_body("fine")))
    seen: list[Try] = []
    async with model_client(endpoint(server, retry_attempts=4)) as client:
        response = await client.call(ASK, on_attempt=seen.append)
    assert response.text == "fine"
    assert [a.status for a in seen] == [503, 503, 503, 200]
    assert all(a.wait is not None and 0 <= a.wait <= 0.05 for a in seen[:3])


async def test_every_listed_transient_status_is_retried(server: FakeServer, fake_time: FakeTime) -> None:
    statuses = [408, 409, 429, 500, 502, 503, 504, 529]
    server.enqueue(*[Reply(status, "try again") for status in statuses], Reply(body=openai_body("done")))
    settings: dict[str, Any] = {"retry_attempts": len(statuses) + 1, "breaker_failures": 100}
    async with model_client(endpoint(server, **settings), timing=fake_time.timing()) as client:
        assert (await client.call(ASK)).text == "done"
    assert len(server.requests) == len(statuses) + 1


async def test_a_response_slower_than_the_read_timeout_is_retried(server: FakeServer) -> None:
    server.enqueue(Reply(body=openai_body("late"), delay=1.5), Reply(body=openai_body("quick")))
    seen: list[Try] = []
    async with model_client(endpoint(server, read_timeout=0.2)) as client:
        started = time.monotonic()
        response = await client.call(ASK, on_attempt=seen.append)
        elapsed = time.monotonic() - started
    assert response.text == "quick" and len(server.requests) == 2
    assert seen[0].kind == "timeout" and "read_timeout (0.2 s)" in (seen[0].message or "")
    assert 0.2 <= elapsed < 1.0


async def test_401_is_not_retried_and_says_which_key_to_fix(server: FakeServer, api_key: str) -> None:
    server.enqueue(Reply(401, {"error": {"message": "Invalid API key", "type": "authentication_error"}}))
    async with model_client(endpoint(server, provider="anthropic", key=api_key)) as client:
        with pytest.raises(ModelError) as caught:
            await client.call(ASK)
    assert len(server.requests) == 1
    error = caught.value
    assert (error.kind, error.status, error.retryable) == ("auth", 401, False)
    assert '[models.test] api_key_env = "TEST_KEY"' in error.message and "Invalid API key" in error.message
    assert "anthropic-model" in error.message and len(error.attempts) == 1


@pytest.mark.parametrize(
    ("status", "kind", "fix"),
    [
        (400, "bad_request", "fix the request"),
        (422, "bad_request", "fix the request"),
        (403, "auth", "lacks access"),
        (404, "not_found", "base_url and model"),
        (413, "bad_request", "fix the request"),
    ],
)
async def test_client_errors_fail_at_once_quoting_the_provider(
    server: FakeServer, api_key: str, status: int, kind: str, fix: str
) -> None:
    server.enqueue(Reply(status, {"error": {"message": "messages.0.content: field required"}}))
    async with model_client(endpoint(server, provider="openai", key=api_key)) as client:
        with pytest.raises(ModelError) as caught:
            await client.call(ASK)
    assert len(server.requests) == 1
    assert (caught.value.kind, caught.value.retryable) == (kind, False)
    assert fix in caught.value.message and "messages.0.content: field required" in caught.value.message


async def test_retries_end_with_one_error_listing_every_attempt(server: FakeServer, fake_time: FakeTime) -> None:
    server.enqueue(*[Reply(502, "<html>bad gateway</html>")] * 3)
    async with model_client(endpoint(server), timing=fake_time.timing()) as client:
        with pytest.raises(ModelError) as caught:
            await client.call(ASK)
    error = caught.value
    assert (error.kind, error.status, error.retryable) == ("server_error", 502, True)
    assert [a.number for a in error.attempts] == [1, 2, 3] and error.attempts[-1].wait is None
    assert error.message.startswith("model endpoint 'test' failed 3 times") and "bad gateway" in error.message


async def test_garbage_json_is_a_typed_error(server: FakeServer) -> None:
    server.enqueue(Reply(body=b"<html>this is not an API</html>"))
    async with model_client(endpoint(server)) as client:
        with pytest.raises(ModelError) as caught:
            await client.call(ASK)
    assert caught.value.kind == "bad_response" and not caught.value.retryable
    assert "not valid JSON" in caught.value.message and "base_url" in caught.value.message
    assert len(server.requests) == 1


@pytest.mark.parametrize(
    "body",
    [{"choices": []}, {"choices": [{"finish_reason": "stop"}]}, {"object": "list"}, [1, 2], {"choices": "x"}],
    ids=["no-choices", "no-message", "no-choices-key", "array", "wrong-type"],
)
async def test_json_missing_fields_is_a_typed_error(server: FakeServer, body: object) -> None:
    server.enqueue(Reply(body=body))
    async with model_client(endpoint(server)) as client:
        with pytest.raises(ModelError) as caught:
            await client.call(ASK)
    assert caught.value.kind == "bad_response" and "Chat Completions" in caught.value.message


async def test_an_error_inside_a_200_reply_is_quoted(server: FakeServer) -> None:
    server.enqueue(Reply(body={"error": {"message": "upstream provider unavailable", "code": 502}}))
    async with model_client(endpoint(server)) as client:
        with pytest.raises(ModelError) as caught:
            await client.call(ASK)
    assert "upstream provider unavailable" in caught.value.message


async def test_a_connection_dropped_mid_body_is_retried_then_a_typed_error(
    server: FakeServer, fake_time: FakeTime
) -> None:
    whole = openai_body("this answer is cut short")
    server.enqueue(*[Reply(body=whole, drop_after=20)] * 3)
    async with model_client(endpoint(server), timing=fake_time.timing()) as client:
        with pytest.raises(ModelError) as caught:
            await client.call(ASK)
    assert (caught.value.kind, caught.value.retryable) == ("connection", True)
    assert "RemoteProtocolError" in caught.value.message and len(server.requests) == 3


async def test_a_dropped_body_then_a_whole_one_succeeds(server: FakeServer, fake_time: FakeTime) -> None:
    server.enqueue(Reply(body=openai_body("x" * 200), drop_after=50), Reply(body=openai_body("whole")))
    async with model_client(endpoint(server), timing=fake_time.timing()) as client:
        assert (await client.call(ASK)).text == "whole"


async def test_nothing_listening_is_a_connection_error(fake_time: FakeTime) -> None:
    target = endpoint(closed_port_url(), retry_attempts=2)
    async with model_client(target, timing=fake_time.timing()) as client:
        with pytest.raises(ModelError) as caught:
            await client.call(ASK)
    assert caught.value.kind == "connection" and "ConnectError" in caught.value.message
    assert len(caught.value.attempts) == 2


async def test_a_retry_after_beyond_the_maximum_fails_at_once(server: FakeServer, fake_time: FakeTime) -> None:
    server.enqueue(Reply(429, "quota", {"retry-after": "3600"}))
    async with model_client(endpoint(server, max_retry_after=60), timing=fake_time.timing()) as client:
        with pytest.raises(ModelError) as caught:
            await client.call(ASK)
        assert fake_time.sleeps == [] and len(server.requests) == 1
        error = caught.value
        assert (error.kind, error.retryable, error.retry_after) == ("retry_after_too_long", True, 3600)
        assert "3600 s" in error.message and "max_retry_after (60 s)" in error.message
        # the server's wish holds back the next caller too, without a request
        with pytest.raises(ModelError) as again:
            await client.call(ASK)
    assert again.value.kind == "retry_after_too_long" and len(server.requests) == 1


async def test_retry_after_really_waits(server: FakeServer) -> None:
    server.enqueue(Reply(429, "wait", {"retry-after": "1"}), Reply(body=openai_body("after the wait")))
    async with model_client(endpoint(server, retry_initial_wait=0.0, retry_max_wait=0.0)) as client:
        started = time.monotonic()
        response = await client.call(ASK)
        elapsed = time.monotonic() - started
    gap = server.requests[1].at - server.requests[0].at
    assert response.text == "after the wait"
    assert 1.0 <= gap < 1.5 and 1.0 <= elapsed < 1.5


async def test_a_retry_after_seen_by_one_caller_holds_back_another(server: FakeServer) -> None:
    server.enqueue(Reply(429, "wait", {"retry-after": "1"}), Reply(body=openai_body("a")), Reply(body=openai_body("b")))
    first_failed = asyncio.Event()
    seen_b: list[Try] = []

    def on_attempt_a(attempt: Try) -> None:
        if attempt.status == 429:
            first_failed.set()

    async with model_client(endpoint(server, retry_initial_wait=0.0, retry_max_wait=0.0)) as client:

        async def caller_a() -> str:
            return (await client.call(ASK, on_attempt=on_attempt_a)).text

        async def caller_b() -> str:
            await first_failed.wait()
            return (await client.call(ASK, on_attempt=seen_b.append)).text

        texts = await asyncio.gather(caller_a(), caller_b())
    assert sorted(texts) == ["a", "b"]
    assert len(server.requests) == 3
    assert all(later.at - server.requests[0].at >= 0.95 for later in server.requests[1:])
    [attempt] = seen_b
    assert attempt.ok and 0.9 <= attempt.held <= 1.1


async def test_cancelling_a_call_leaves_the_client_usable(server: FakeServer) -> None:
    server.enqueue(Reply(body=openai_body("never seen"), delay=2), Reply(body=openai_body("next")))
    async with model_client(endpoint(server, breaker_failures=1)) as client:
        task = asyncio.create_task(client.call(ASK))
        while not server.requests:
            await asyncio.sleep(0.01)
        task.cancel()
        with pytest.raises(asyncio.CancelledError):
            await task
        assert (await client.call(ASK)).text == "next"
        assert client.breaker.state == "closed"


async def test_default_timing_is_real(server: FakeServer) -> None:
    server.enqueue(Reply(body=openai_body("ok")))
    async with model_client(endpoint(server)) as client:
        assert client.timing == Timing()
        assert (await client.call(ASK)).text == "ok"
