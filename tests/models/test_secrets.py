"""The API key reaches the provider's header and nowhere else: not errors, reprs, tracebacks, attempts or logs."""

from __future__ import annotations

import logging
import traceback

import msgpack
import pytest

from corral.models import Message, ModelError, Request, Try

from .fake_servers import FakeServer, FakeTime, Reply, closed_port_url, endpoint, model_client

pytestmark = pytest.mark.anyio

ASK = Request((Message.user("hello"),))


def _everything_said_about(error: ModelError, attempts: list[Try]) -> str:
    return "\n".join(
        [
            str(error),
            repr(error),
            "".join(traceback.format_exception(error)),
            repr(msgpack.packb(error.to_dict())),
            *(repr(attempt) for attempt in attempts),
        ]
    )


@pytest.mark.parametrize("provider", ["openai", "anthropic"])
@pytest.mark.parametrize(
    "reply",
    [
        Reply(401, {"error": {"message": "Incorrect API key provided: {key}"}}),
        Reply(400, "your request with key {key} is invalid"),
        Reply(body="not json, but it echoes {key}"),
        Reply(body={"error": {"message": "quota for {key} exhausted"}}),
        Reply(503, {"error": {"message": "overloaded, key={key}"}}),
        Reply(body=b"", delay=1.0),
    ],
    ids=["401-echo", "400-echo", "garbage-echo", "error-in-200", "503-echo", "timeout"],
)
async def test_the_key_never_leaks(
    server: FakeServer,
    fake_time: FakeTime,
    api_key: str,
    provider: str,
    reply: Reply,
    caplog: pytest.LogCaptureFixture,
    capsys: pytest.CaptureFixture[str],
) -> None:
    caplog.set_level(logging.DEBUG)  # httpx and httpcore log every request at DEBUG
    body = reply.body.replace("{key}", api_key) if isinstance(reply.body, str) else reply.body
    if isinstance(body, dict):
        body = {"error": {"message": body["error"]["message"].replace("{key}", api_key)}}
    server.enqueue(*[Reply(reply.status, body, reply.headers, reply.delay)] * 2)
    target = endpoint(server, provider=provider, key=api_key, retry_attempts=2, read_timeout=0.2)
    attempts: list[Try] = []
    async with model_client(target, timing=fake_time.timing()) as client:
        with pytest.raises(ModelError) as caught:
            await client.call(ASK, on_attempt=attempts.append)
        said = _everything_said_about(caught.value, attempts) + repr(client.endpoint) + str(vars(client))
    header = server.requests[0].headers.get("x-api-key") or server.requests[0].headers.get("authorization")
    assert header is not None and api_key in header, "the key must reach the server, or this test proves nothing"
    logs = caplog.text + "".join(record.getMessage() for record in caplog.records)
    out = capsys.readouterr()
    for text in (said, logs, out.out, out.err):
        assert api_key not in text
        assert api_key[8:20] not in text


async def test_a_connection_error_does_not_lead_to_the_key(fake_time: FakeTime, api_key: str) -> None:
    async with model_client(
        endpoint(closed_port_url(), provider="anthropic", key=api_key), timing=fake_time.timing()
    ) as client:
        with pytest.raises(ModelError) as caught:
            await client.call(ASK)
    error = caught.value
    assert error.__cause__ is None and error.__suppress_context__
    assert api_key not in _everything_said_about(error, list(error.attempts))
