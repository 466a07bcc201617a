"""Neutral requests and responses: validation with clear messages, and msgpack round trips for the journal."""

from __future__ import annotations

import json
from typing import Any

import msgpack
import pytest

from corral.models import (
    InvalidRequest,
    Message,
    ModelError,
    Options,
    Request,
    Response,
    ToolCall,
    ToolDefinition,
    Try,
    Usage,
    parse_arguments,
)

REQUEST = Request(
    (
        Message.system("sys"),
        Message.user("hi"),
        Message.assistant("", (ToolCall("c1", "search", {"q": "x"}, '{"q": "x"}'),)),
        Message.tool_result("c1", "nothing found", is_error=True),
    ),
    tools=(ToolDefinition("search", "Search.", {"type": "object", "properties": {"q": {"type": "string"}}}),),
    options=Options(max_tokens=100, temperature=0.2, stop=("END",), tool_choice="auto"),
)
RESPONSE = Response(
    text="done",
    tool_calls=(ToolCall("c2", "search", {}, '{"q": ', "the arguments are not valid JSON"),),
    finish_reason="tool_calls",
    raw_finish_reason="tool_use",
    usage=Usage(10, 5, 2, 1),
    model="m",
    provider="anthropic",
    request_id="req_1",
)


def _through_msgpack(data: dict[str, Any]) -> Any:
    return msgpack.unpackb(msgpack.packb(data, use_bin_type=True), raw=False)


def test_request_and_response_survive_msgpack() -> None:
    assert Request.from_dict(_through_msgpack(REQUEST.to_dict())) == REQUEST
    assert Response.from_dict(_through_msgpack(RESPONSE.to_dict())) == RESPONSE


def test_a_model_error_survives_msgpack() -> None:
    attempt = Try("ep", 1, 503, "overloaded", "busy", 0.2, wait=1.5, retry_after=1.5)
    error = ModelError("busy", kind="overloaded", retryable=True, endpoint="ep", status=503, attempts=[attempt])
    again = ModelError.from_dict(_through_msgpack(error.to_dict()))
    assert (again.kind, again.retryable, again.status, again.attempts) == ("overloaded", True, 503, (attempt,))
    with pytest.raises(ValueError, match="unknown model error kind"):
        ModelError.from_dict({"kind": "nope"})


@pytest.mark.parametrize(
    ("data", "says"),
    [
        ({}, "missing required field `messages`"),
        ({"messages": []}, "at least one message"),
        ({"messages": [{"role": "robot", "text": "x"}]}, "`$.messages[0].role`"),
        ({"messages": [{"role": "user", "text": 5}]}, "Expected `str`, got `int` - at `$.messages[0].text`"),
        ({"messages": [{"role": "tool", "text": "x"}]}, "needs the tool_call_id"),
        ({"messages": [{"role": "user", "tool_calls": [{"id": "1", "name": "t"}]}]}, "only assistant messages"),
        ({"messages": [{"role": "user", "is_error": True}]}, "belong on tool messages"),
        ({"messages": [{"role": "user"}], "tools": [{"name": "t", "parameters": {"type": "array"}}]}, "type 'object'"),
        ({"messages": [{"role": "user"}], "tools": [{"name": "t"}, {"name": "t"}]}, "must be unique"),
        ({"messages": [{"role": "user"}], "options": {"temperature": 9}}, "between 0 and 2"),
        ({"messages": [{"role": "user"}], "options": {"tool_choice": "always"}}, "`$.options.tool_choice`"),
        ("not a map", "Expected `object`, got `str`"),
    ],
)
def test_a_bad_request_is_refused_naming_the_field(data: object, says: str) -> None:
    with pytest.raises(InvalidRequest) as caught:
        Request.from_dict(data)
    assert says in str(caught.value)
    assert caught.value.kind == "invalid_request" and not caught.value.retryable


def test_options_from_keyword_arguments() -> None:
    assert Options.from_kwargs({"stop": "END", "max_tokens": 5}) == Options(max_tokens=5, stop=("END",))
    with pytest.raises(InvalidRequest, match=r"unknown model option\(s\) \['temprature'\]; the options are"):
        Options.from_kwargs({"temprature": 0.1})
    with pytest.raises(InvalidRequest, match="`\\$.max_tokens`"):
        Options.from_kwargs({"max_tokens": "many"})
    with pytest.raises(InvalidRequest, match="at least 1"):
        Options(max_tokens=0)
    with pytest.raises(InvalidRequest, match="top_p"):
        Options(top_p=0)


AT_THE_LIMIT = '{"a": ' + "[" * 99 + "]" * 99 + "}"
"""Tool arguments nested 100 levels, the object's own included: what corral keeps."""


@pytest.mark.parametrize(
    ("raw", "arguments", "problem"),
    [
        ('{"a": 1}', {"a": 1}, None),
        ("", {}, None),
        ('{"a": ', {}, "not valid JSON"),
        ("[1, 2]", {}, "must be a JSON object, got list"),
        ("null", {}, "got NoneType"),
        (AT_THE_LIMIT, json.loads(AT_THE_LIMIT), None),
        ('{"a": ' + "[" * 100 + "]" * 100 + "}", {}, "nest deeper than 100 levels"),
        ('{"a": ' + "[" * 5000 + "]" * 5000 + "}", {}, "nest deeper than 100 levels"),  # past json's recursion
    ],
    ids=["object", "empty", "cut", "list", "null", "at_the_limit", "too_deep", "past_recursion"],
)
def test_tool_arguments_parse_or_explain(raw: str, arguments: dict[str, Any], problem: str | None) -> None:
    parsed, error = parse_arguments(raw)
    assert parsed == arguments
    assert error is None if problem is None else problem in (error or "")


def test_a_response_becomes_the_next_assistant_turn() -> None:
    message = RESPONSE.message()
    assert message == Message("assistant", "done", RESPONSE.tool_calls)
    assert RESPONSE.usage.total_tokens == 15
    assert ToolCall("c", "t", {"k": "é"}).arguments_json() == '{"k": "é"}'
