"""The model door without a daemon: its two dialects checked against the SDKs' own types, and
its HTTP server on a real loopback socket, answering through a scripted ``ask`` in place of the wire."""

from __future__ import annotations

import http.client
import json
from collections.abc import Iterator
from typing import Any

import pytest

from corral.models.types import Response, ToolCall, Usage
from corral.run.divergence import changed
from corral.sandbox.door import chat, messages
from corral.sandbox.door.problems import DoorError
from corral.sandbox.door.server import Door, listen

openai_types = pytest.importorskip("openai.types.chat")
anthropic_types = pytest.importorskip("anthropic.types")

TOKEN = "corral-test-token"
GRANTED = [{"name": "fake", "model": "fake-gpt"}, {"name": "claude", "model": "fake-claude"}]


def _value(text: str = "hi", calls: tuple[ToolCall, ...] = (), finish: str = "stop") -> dict[str, Any]:
    usage = Usage(input_tokens=40, output_tokens=6, cache_read_tokens=10)
    return Response(text, calls, finish, finish, usage, "fake-gpt", "openai").to_dict()  # type: ignore[arg-type]


CALL = ToolCall("call_1", "add", {"a": 2}, '{"a": 2}')


def test_a_chat_completions_request_becomes_neutral_args_with_every_field_it_carries() -> None:
    asked = chat.parse(
        {
            "model": "fake",
            "messages": [
                {"role": "developer", "content": [{"type": "text", "text": "be brief"}]},
                {"role": "user", "content": "2+2?"},
                {
                    "role": "assistant",
                    "content": None,
                    "tool_calls": [
                        {"id": "c1", "type": "function", "function": {"name": "add", "arguments": '{"a": 2}'}}
                    ],
                },
                {"role": "tool", "tool_call_id": "c1", "content": "4"},
            ],
            "tools": [
                {"type": "function", "function": {"name": "add", "parameters": {"type": "object"}}},
                {"type": "function", "function": {"name": "sub"}},
            ],
            "tool_choice": {"type": "function", "function": {"name": "add"}},
            "response_format": {"type": "json_schema", "json_schema": {"name": "n", "schema": {"type": "object"}}},
            "max_completion_tokens": 30,
            "temperature": 0.5,
            "stop": "END",
            "seed": 7,
            "stream": True,
            "stream_options": {"include_usage": True},
        }
    )
    args = asked.args
    assert args["door"] == "openai" and asked.stream and asked.usage_in_stream
    assert [m["role"] for m in args["messages"]] == ["system", "user", "assistant", "tool"]
    assert args["messages"][2]["tool_calls"][0]["arguments"] == {"a": 2}
    assert [t["name"] for t in args["tools"]] == ["add"], "a named tool_choice offers that tool alone"
    assert args["options"]["tool_choice"] == "required" and args["options"]["max_tokens"] == 30
    assert list(args["options"]["stop"]) == ["END"]
    assert args["options"]["response_format"]["schema"] == {"type": "object"}


def test_a_messages_request_becomes_neutral_args_with_tool_results_ahead_of_text() -> None:
    asked = messages.parse(
        {
            "model": "claude",
            "max_tokens": 20,
            "system": [{"type": "text", "text": "sys"}],
            "messages": [
                {"role": "user", "content": "add"},
                {
                    "role": "assistant",
                    "content": [
                        {"type": "thinking", "thinking": "hm", "signature": "x"},
                        {"type": "tool_use", "id": "t1", "name": "add", "input": {"a": 1}},
                    ],
                },
                {
                    "role": "user",
                    "content": [
                        {"type": "text", "text": "and?"},
                        {
                            "type": "tool_result",
                            "tool_use_id": "t1",
                            "content": [{"type": "text", "text": "1"}],
                            "is_error": True,
                        },
                    ],
                },
            ],
            "tools": [{"name": "add", "input_schema": {"type": "object"}}],
            "tool_choice": {"type": "any"},
            "stop_sequences": ["X"],
        }
    )
    turns = asked.args["messages"]
    assert [m["role"] for m in turns] == ["system", "user", "assistant", "tool", "user"]
    assert turns[3] == {**turns[3], "tool_call_id": "t1", "text": "1", "is_error": True}
    assert asked.args["options"]["tool_choice"] == "required" and asked.args["door"] == "anthropic"


@pytest.mark.parametrize(
    ("dialect", "body", "where"),
    [
        (chat, [], "must be an object"),
        (chat, {"model": "m"}, "messages: is required"),
        (chat, {"model": 3, "messages": []}, "model: must be a string"),
        (chat, {"model": "m", "messages": [{"role": "user", "content": 5}]}, "messages[0].content"),
        (chat, {"model": "m", "messages": [{"role": "tool", "content": "x"}]}, "messages[0].tool_call_id"),
        (chat, {"model": "m", "messages": [{"role": "user"}], "n": 2}, "n:"),
        (chat, {"model": "m", "messages": [{"role": "user"}], "top_p": 0}, "top_p"),
        (chat, {"model": "m", "messages": [{"role": "user"}], "max_tokens": 0}, "max_tokens: must be at least 1"),
        (chat, {"model": "m", "messages": [{"role": "user"}], "tools": [{"type": "web"}]}, "tools[0].type"),
        (chat, {"model": "m", "messages": [{"role": "user"}], "stream": "yes"}, "stream: must be true or false"),
        (messages, {"model": "m", "max_tokens": 5, "messages": [{"role": "system", "content": "x"}]}, "role"),
        (
            messages,
            {
                "model": "m",
                "max_tokens": 5,
                "messages": [{"role": "user", "content": [{"type": "image", "source": {}}]}],
            },
            "messages[0].content[0].type",
        ),
        (
            messages,
            {
                "model": "m",
                "max_tokens": 5,
                "messages": [{"role": "user", "content": "x"}],
                "tools": [{"name": "t", "input_schema": {"type": "string"}}],
            },
            "tools[0]: tool 't'",
        ),
        (
            messages,
            {
                "model": "m",
                "max_tokens": 5,
                "messages": [{"role": "user", "content": "x"}],
                "tool_choice": {"type": "tool", "name": "nope"},
            },
            "tool_choice.name",
        ),
    ],
)
def test_a_bad_request_is_a_400_naming_the_field(dialect: Any, body: Any, where: str) -> None:
    with pytest.raises(DoorError) as caught:
        dialect.parse(body)
    assert caught.value.status == 400 and where in caught.value.message, caught.value.message


def test_answers_and_streams_are_what_the_openai_sdk_reads() -> None:
    asked = chat.parse(
        {"model": "fake", "messages": [{"role": "user", "content": "x"}], "stream_options": {"include_usage": True}}
    )
    completion = openai_types.ChatCompletion.model_validate(
        chat.answer(_value("", (CALL,), "tool_calls"), asked, "id1")
    )
    assert completion.choices[0].message.tool_calls[0].function.arguments == '{"a": 2}'
    assert completion.usage.prompt_tokens == 40 and completion.model == "fake"
    events = b"".join(chat.stream(_value("hello", (CALL,)), asked, "id1")).split(b"\n\n")
    assert events[-2] == b"data: [DONE]" and events[-1] == b""
    chunks = [openai_types.ChatCompletionChunk.model_validate_json(e.removeprefix(b"data: ")) for e in events[:-2]]
    assert "".join(c.choices[0].delta.content or "" for c in chunks if c.choices) == "hello"
    assert chunks[-1].usage.completion_tokens == 6 and not chunks[-1].choices


def test_answers_and_streams_are_what_the_anthropic_sdk_reads() -> None:
    from pydantic import TypeAdapter

    asked = messages.parse({"model": "claude", "max_tokens": 5, "messages": [{"role": "user", "content": "x"}]})
    message = anthropic_types.Message.model_validate(messages.answer(_value("hi", (CALL,)), asked, "msg1"))
    assert message.stop_reason == "tool_use" and message.content[1].input == {"a": 2}
    assert message.usage.input_tokens == 30 and message.usage.cache_read_input_tokens == 10
    adapter = TypeAdapter(anthropic_types.RawMessageStreamEvent)
    events = []
    for raw in b"".join(messages.stream(_value("hi", (CALL,)), asked, "msg1")).split(b"\n\n")[:-1]:
        name, data = raw.split(b"\n")
        event = adapter.validate_json(data.removeprefix(b"data: "))
        assert name == f"event: {event.type}".encode()
        events.append(event.type)
    assert events[0] == "message_start" and events[-2:] == ["message_delta", "message_stop"]
    assert events.count("content_block_start") == 2


@pytest.fixture
def door() -> Iterator[tuple[Door, list[tuple[str, dict[str, Any]]], list[dict[str, Any]]]]:
    """A door on a real loopback socket; its ``ask`` records each step and answers from a script."""
    asked: list[tuple[str, dict[str, Any]]] = []
    script: list[dict[str, Any]] = []

    def ask(name: str, args: dict[str, Any]) -> tuple[int, dict[str, Any]]:
        asked.append((name, args))
        return len(asked), script.pop(0)

    served = Door(listen(), TOKEN, GRANTED, ask, 4096, "r1")
    served.start(poll_interval=0.02)
    yield served, asked, script
    served.stop()


def _post(door: Door, path: str, body: Any, token: str = TOKEN, **headers: str) -> tuple[int, Any, Any]:
    connection = http.client.HTTPConnection("127.0.0.1", door.port, timeout=5)
    payload = body if isinstance(body, bytes) else json.dumps(body).encode()
    connection.request("POST", path, payload, {"authorization": f"Bearer {token}", **headers})
    response = connection.getresponse()
    data = response.read()
    connection.close()
    return response.status, json.loads(data) if data.startswith(b"{") else data, response.headers


USER = [{"role": "user", "content": "hi"}]


def test_the_door_checks_token_path_size_body_and_model_before_asking(door: Any) -> None:
    served, asked, _ = door
    assert _post(served, "/v1/chat/completions", {}, token="guess")[0] == 401
    status, body, _ = _post(served, "/v1/messages", {}, token="", **{"x-api-key": "guess"})
    assert status == 401 and body["error"]["type"] == "authentication_error"
    assert _post(served, "/v1/completions", {})[0] == 404
    status, body, _ = _post(served, "/v1/chat/completions", b"x" * 5000)
    assert status == 413 and "4096" in body["error"]["message"]
    assert _post(served, "/v1/chat/completions", b"{")[0] == 400
    status, body, _ = _post(served, "/v1/chat/completions", {"model": "gpt-9", "messages": USER})
    assert status == 404 and "fake (fake-gpt)" in body["error"]["message"] and body["error"]["param"] == "model"
    assert asked == [], "nothing unvalidated reaches the daemon"
    assert served.env()["OPENAI_BASE_URL"] == f"http://127.0.0.1:{served.port}/v1"


@pytest.mark.parametrize(
    ("error", "path", "status", "headers"),
    [
        ({"kind": "budget", "message": "run_calls reached"}, "/v1/chat/completions", 429, {"x-should-retry": "false"}),
        ({"kind": "model", "message": "down", "retry_after": 2.4}, "/v1/chat/completions", 503, {"retry-after": "2"}),
        ({"kind": "model", "message": "down"}, "/v1/messages", 529, {"x-should-retry": "true"}),
        ({"kind": "refused", "message": "guardrail 'x' refused"}, "/v1/messages", 403, {}),
    ],
)
def test_a_step_answered_with_an_error_is_the_apis_own_error(
    door: Any, error: dict[str, Any], path: str, status: int, headers: dict[str, str]
) -> None:
    served, asked, script = door
    script.append({"t": "result", "seq": 1, "ok": False, "replayed": False, "error": error})
    body = {"model": "fake-claude", "messages": USER, "max_tokens": 5}
    got, answer, sent = _post(served, path, body)
    assert got == status and error["message"] in json.dumps(answer)
    assert asked[0][0] == "claude", "a model named by its upstream id is asked by its alias"
    for name, value in headers.items():
        assert sent[name] == value


def test_a_replayed_answer_says_so_and_models_are_listed_by_alias_and_upstream_name(door: Any) -> None:
    served, _, script = door
    script.append({"t": "result", "seq": 1, "ok": True, "replayed": True, "value": _value("again")})
    status, body, headers = _post(served, "/v1/chat/completions", {"model": "default", "messages": USER})
    assert status == 200 and body["choices"][0]["message"]["content"] == "again"
    assert headers["x-corral-replayed"] == "true" and headers["x-corral-step"] == "1"
    connection = http.client.HTTPConnection("127.0.0.1", served.port, timeout=5)
    connection.request("GET", "/v1/models", headers={"authorization": f"Bearer {TOKEN}"})
    listed = json.loads(connection.getresponse().read())
    assert [m["id"] for m in listed["data"]] == ["fake", "fake-gpt", "claude", "fake-claude"]


def test_a_body_nested_too_deep_is_refused_before_anything_else(door: Any) -> None:
    served, asked, _ = door
    nested: Any = "x"
    for _ in range(70):
        nested = [nested]
    status, body, _ = _post(served, "/v1/chat/completions", {"model": "fake", "messages": nested})
    assert status == 400 and "nests deeper than 64" in body["error"]["message"] and not asked


def test_a_divergence_shows_the_first_part_that_changed() -> None:
    old = {"messages": [{"role": "user", "text": "it is 12:00 now, " + "x" * 100}], "options": {"max_tokens": 5}}
    new = {"messages": [{"role": "user", "text": "it is 12:05 now, " + "x" * 100}], "options": {"max_tokens": 5}}
    assert changed(old, new).startswith("messages[0].text: journal 'it is 12:00 now, ")
    assert changed({"a": [1, 2]}, {"a": [1]}) == "a (length): journal 2, now 1"
    assert changed({"a": 1}, {"a": 1, "b": 2}) == "b: journal absent, now 2"
    assert changed({"a": 1}, {"a": 1}) == ""


def test_a_responses_request_becomes_neutral_args_and_its_answer_is_what_the_sdk_reads() -> None:
    from pydantic import TypeAdapter

    responses_types = pytest.importorskip("openai.types.responses")
    from corral.sandbox.door import responses

    asked = responses.parse(
        {
            "model": "fake",
            "instructions": "be brief",
            "input": [
                {"role": "user", "content": "add"},
                {"type": "reasoning", "id": "r1", "summary": []},
                {"type": "function_call", "call_id": "c1", "name": "add", "arguments": '{"a": 1}'},
                {"type": "function_call", "call_id": "c2", "name": "add", "arguments": '{"a": 2}'},
                {"type": "function_call_output", "call_id": "c1", "output": "1"},
                {"type": "message", "role": "user", "content": [{"type": "input_text", "text": "go on"}]},
            ],
            "tools": [{"type": "function", "name": "add", "parameters": {"type": "object"}, "strict": True}],
            "tool_choice": "auto",
            "text": {"format": {"type": "json_schema", "name": "out", "schema": {"type": "object"}}},
            "max_output_tokens": 50,
            "include": [],
            "store": False,
        }
    )
    turns = asked.args["messages"]
    assert [m["role"] for m in turns] == ["system", "user", "assistant", "tool", "user"]
    assert [c["id"] for c in turns[2]["tool_calls"]] == ["c1", "c2"]
    assert asked.args["door"] == "responses" and asked.args["options"]["response_format"]["name"] == "out"
    with pytest.raises(DoorError, match="previous_response_id"):
        responses.parse({"model": "m", "input": "x", "previous_response_id": "resp_1"})
    with pytest.raises(DoorError, match=r"tools\[0\].type"):
        responses.parse({"model": "m", "input": "x", "tools": [{"type": "web_search"}]})
    value = _value("done", (CALL,))
    parsed = responses_types.Response.model_validate(responses.answer(value, asked, "resp_1"))
    assert parsed.output_text == "done" and parsed.output[1].call_id == "call_1"
    adapter = TypeAdapter(responses_types.ResponseStreamEvent)
    events = [
        adapter.validate_json(raw.split(b"\n")[1].removeprefix(b"data: "))
        for raw in b"".join(responses.stream(value, asked, "resp_1")).split(b"\n\n")[:-1]
    ]
    assert events[0].type == "response.created" and events[-1].type == "response.completed"
    assert [e.sequence_number for e in events] == list(range(len(events)))
    assert events[-1].response.output[1].arguments == '{"a": 2}'


def test_a_door_request_while_a_tool_runs_is_refused_rather_than_waiting_for_ever() -> None:
    """A tool's ``done`` must precede the next step; a tool that itself called the door would
    wait on the lock its own step holds."""
    import os

    from corral.sandbox import runtime
    from corral.wire import BlockingChannel

    read, write = os.pipe()
    try:
        session = runtime._Session(BlockingChannel(read, write), {})
        session.running = "summarise"
        with pytest.raises(runtime.ToolRunning, match="summarise"):
            session.model_step("fake", {"messages": []})
        assert session.seq == 0 and not session.lock.locked()
    finally:
        os.close(read)
        os.close(write)
