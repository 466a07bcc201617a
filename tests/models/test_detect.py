"""Finding a model for the examples: keys in the given environment, a (fake) Ollama on loopback, or nothing."""

from __future__ import annotations

import pytest

from corral.models import Endpoint, Message, Prices, Request, Undetected, detect

from .fake_servers import FakeServer, Reply, closed_port_url, model_client, openai_body

pytestmark = pytest.mark.anyio


async def test_an_anthropic_key_wins_over_an_openai_key() -> None:
    found = await detect({"ANTHROPIC_API_KEY": "sk-ant-1", "OPENAI_API_KEY": "sk-oa-1"}, ollama_url=closed_port_url())
    assert isinstance(found, Endpoint)
    assert (found.provider, found.base_url, found.name) == ("anthropic", "https://api.anthropic.com", "default")
    assert found.api_key is not None and found.api_key.reveal() == "sk-ant-1"
    assert "ANTHROPIC_API_KEY" in found.key_source and found.prices is not None
    assert "sk-ant-1" not in repr(found)


async def test_an_openai_key() -> None:
    found = await detect({"OPENAI_API_KEY": " sk-oa-1 ", "ANTHROPIC_API_KEY": ""}, name="main")
    assert isinstance(found, Endpoint)
    assert (found.provider, found.base_url, found.name) == ("openai", "https://api.openai.com/v1", "main")
    assert found.api_key is not None and found.api_key.reveal() == "sk-oa-1"


async def test_a_local_ollama_is_found_and_answers_through_v1(server: FakeServer) -> None:
    server.enqueue(Reply(body={"models": [{"name": "llama3.2:latest", "size": 1}, {"name": "qwen3:4b"}]}))
    found = await detect({}, ollama_url=server.url)
    assert isinstance(found, Endpoint)
    assert (found.provider, found.base_url, found.model) == ("openai", f"{server.url}/v1", "llama3.2:latest")
    assert found.api_key is None and found.prices == Prices.free()
    assert (server.requests[0].method, server.requests[0].path) == ("GET", "/api/tags")

    server.enqueue(Reply(body=openai_body("hello from ollama")))
    async with model_client(found) as client:
        assert (await client.call(Request((Message.user("hi"),)))).text == "hello from ollama"
    assert server.requests[1].path == "/v1/chat/completions"
    assert "authorization" not in server.requests[1].headers


@pytest.mark.parametrize(
    ("reply", "why"),
    [
        (Reply(body={"models": []}), "has no models; pull one with `ollama pull"),
        (Reply(404, "not found"), "answered HTTP 404, so it is not Ollama"),
        (Reply(body="<html>"), "did not answer like Ollama"),
        (Reply(body={"models": []}, delay=1.0), "nothing answered at"),
    ],
    ids=["no-models", "not-ollama", "garbage", "too-slow"],
)
async def test_something_that_is_not_a_usable_ollama(server: FakeServer, reply: Reply, why: str) -> None:
    server.enqueue(reply)
    found = await detect({}, ollama_url=server.url, timeout=0.2)
    assert isinstance(found, Undetected) and why in found.message


async def test_nothing_at_all_says_what_to_add() -> None:
    url = closed_port_url()
    found = await detect({"PATH": "/usr/bin"}, ollama_url=url)
    assert isinstance(found, Undetected)
    assert f"nothing answered at {url}/api/tags" in found.message
    for needed in ("ANTHROPIC_API_KEY", "OPENAI_API_KEY", "[models.default]", 'provider = "openai"', "api_key_env"):
        assert needed in found.message
