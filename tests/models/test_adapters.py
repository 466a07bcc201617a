"""Provider adapters on plain data: the request each API wants, and every shape of answer they give."""

from __future__ import annotations

import json
from typing import Any

import httpx
import pytest

from corral.models import Endpoint, Message, ModelError, Options, Request, Secret, ToolCall, ToolDefinition
from corral.pluginmanager import collect_providers, register_plugins
from corral.plugins.model_providers.anthropic import AnthropicAdapter
from corral.plugins.model_providers.openai import OpenAIAdapter

from .fake_servers import anthropic_body, openai_body

OPENAI = Endpoint("oa", "openai", "http://127.0.0.1:8000/v1", "llama", max_output_tokens=256)
ANTHROPIC = Endpoint("an", "anthropic", "https://api.anthropic.com", "claude", api_key=Secret("sk-ant-x"))
CALL = ToolCall("c1", "lookup", {"id": 1}, '{"id": 1}')


def _parse_openai(body: dict[str, Any], headers: dict[str, str] | None = None) -> Any:
    return OpenAIAdapter().parse(OPENAI, json.dumps(body).encode(), httpx.Headers(headers or {}))


def _parse_anthropic(body: dict[str, Any]) -> Any:
    return AnthropicAdapter().parse(ANTHROPIC, json.dumps(body).encode(), httpx.Headers({}))


def test_the_built_in_adapters_are_registered_by_their_plugin() -> None:
    plugins = register_plugins(entry_points=[])
    providers = collect_providers(plugins.manager, plugins.failures, plugins.failures.append)
    assert sorted(providers) == ["anthropic", "openai"] and not plugins.failures


def test_openai_request_options_and_no_key() -> None:
    request = Request(
        (Message.user("hi"),),
        options=Options(max_tokens=50, temperature=0, top_p=0.9, stop=("x", "y"), tool_choice="required"),
    )
    call = OpenAIAdapter().build(OPENAI, request)
    assert call.path == "/chat/completions" and "authorization" not in call.headers
    assert call.body == {
        "model": "llama",
        "messages": [{"role": "user", "content": "hi"}],
        "max_tokens": 50,
        "temperature": 0,
        "top_p": 0.9,
        "stop": ["x", "y"],
        "tool_choice": "required",
    }
    assert OpenAIAdapter().build(OPENAI, Request((Message.user("hi"),))).body["max_tokens"] == 256


def test_openai_itself_gets_max_completion_tokens() -> None:
    real = Endpoint("oa", "openai", "https://api.openai.com/v1", "gpt-4.1-mini", api_key=Secret("sk-x"))
    body = OpenAIAdapter().build(real, Request((Message.user("hi"),))).body
    assert body["max_completion_tokens"] == 4096 and "max_tokens" not in body


def test_openai_assistant_text_and_calls_and_a_parsed_only_call() -> None:
    parsed_only = ToolCall("c2", "lookup", {"id": 2})
    request = Request((Message.user("q"), Message.assistant("checking", (CALL, parsed_only))))
    [_, assistant] = OpenAIAdapter().build(OPENAI, request).body["messages"]
    assert assistant["content"] == "checking"
    assert [c["function"]["arguments"] for c in assistant["tool_calls"]] == ['{"id": 1}', '{"id": 2}']


@pytest.mark.parametrize(
    ("raw", "calls", "finish"),
    [
        ("stop", [], "stop"),
        ("length", [], "length"),
        ("content_filter", [], "content_filter"),
        ("tool_calls", [("a", "t", "{}")], "tool_calls"),
        ("function_call", [("a", "t", "{}")], "tool_calls"),
        ("stop", [("a", "t", "{}")], "tool_calls"),
        ("eos", [], "other"),
    ],
)
def test_openai_finish_reasons(raw: str, calls: list[tuple[str, str, str]], finish: str) -> None:
    response = _parse_openai(openai_body("x", calls, finish=raw))
    assert (response.finish_reason, response.raw_finish_reason) == (finish, raw)


def test_openai_variants_from_compatible_servers() -> None:
    body = openai_body(None, finish="tool_calls")
    body["choices"][0]["message"] = {
        "content": [{"type": "text", "text": "a"}, {"type": "image"}, {"type": "text", "text": "b"}],
        "tool_calls": [{"function": {"name": "t", "arguments": {"already": "parsed"}}}],
    }
    del body["usage"], body["model"], body["id"]
    response = _parse_openai(body, {"x-request-id": "req_h"})
    assert response.text == "ab" and response.model == "llama" and response.request_id == "req_h"
    assert response.tool_calls == (ToolCall("call_0", "t", {"already": "parsed"}, '{"already": "parsed"}'),)
    assert (response.usage.input_tokens, response.usage.output_tokens) == (0, 0)


def test_openai_refusal_is_the_text() -> None:
    body = openai_body(None)
    body["choices"][0]["message"]["refusal"] = "I can't help with that."
    assert _parse_openai(body).text == "I can't help with that."


def test_anthropic_request_shape() -> None:
    request = Request(
        (
            Message.system("one"),
            Message.user("q"),
            Message.assistant("", (CALL, ToolCall("c2", "lookup", {"id": 2}))),
            Message.tool_result("c1", "r1"),
            Message.tool_result("c2", "r2", is_error=True),
            Message.user("and now?"),
            Message.system("two"),
            Message.user(""),
        ),
        tools=(ToolDefinition("lookup", "Find.", {"type": "object", "properties": {}}),),
        options=Options(stop=("END",), tool_choice="required", temperature=1),
    )
    call = AnthropicAdapter().build(ANTHROPIC, request)
    assert call.headers["x-api-key"] == "sk-ant-x" and call.path == "/v1/messages"
    body = call.body
    assert body["system"] == "one\n\ntwo" and body["max_tokens"] == 4096
    assert body["stop_sequences"] == ["END"] and body["tool_choice"] == {"type": "any"} and body["temperature"] == 1
    assert [turn["role"] for turn in body["messages"]] == ["user", "assistant", "user"]
    assert body["messages"][1]["content"] == [
        {"type": "tool_use", "id": "c1", "name": "lookup", "input": {"id": 1}},
        {"type": "tool_use", "id": "c2", "name": "lookup", "input": {"id": 2}},
    ]
    assert body["messages"][2]["content"] == [
        {"type": "tool_result", "tool_use_id": "c1", "content": "r1"},
        {"type": "tool_result", "tool_use_id": "c2", "content": "r2", "is_error": True},
        {"type": "text", "text": "and now?"},
    ]


@pytest.mark.parametrize(
    ("raw", "finish"),
    [
        ("end_turn", "stop"),
        ("stop_sequence", "stop"),
        ("tool_use", "tool_calls"),
        ("max_tokens", "length"),
        ("refusal", "content_filter"),
        ("pause_turn", "other"),
    ],
)
def test_anthropic_stop_reasons(raw: str, finish: str) -> None:
    assert _parse_anthropic(anthropic_body("x", stop=raw)).finish_reason == finish


def test_anthropic_blocks_it_does_not_know_are_skipped_and_bad_input_is_a_value() -> None:
    body = anthropic_body("", [("t1", "lookup", ["not", "an", "object"])], stop="tool_use")
    body["content"].insert(0, {"type": "thinking", "thinking": "hmm", "signature": "x"})
    response = _parse_anthropic(body)
    [call] = response.tool_calls
    assert response.text == "" and call.arguments == {} and call.raw_arguments == '["not", "an", "object"]'
    assert call.arguments_error == "the arguments must be a JSON object, got list"


@pytest.mark.parametrize(
    "body",
    [
        {"content": [{"type": "tool_use", "name": "x", "input": {}}]},
        {"content": "text"},
        {"type": "message"},
    ],
    ids=["tool-use-without-id", "content-not-a-list", "no-content"],
)
def test_anthropic_unreadable_answers(body: dict[str, Any]) -> None:
    with pytest.raises(ModelError) as caught:
        _parse_anthropic(body)
    assert caught.value.kind == "bad_response" and "Anthropic Messages" in caught.value.message
