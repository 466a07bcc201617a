"""The OpenAI Chat Completions dialect of the door: request to neutral args, answer to JSON or SSE.

What does not survive the trip through corral's neutral types is listed in docs/models.md
("What does not survive translation"): ``n`` other than 1 is refused, content parts other
than text are refused, and sampling knobs corral has no option for (``seed``,
``presence_penalty``, ``logprobs``, ``parallel_tool_calls``...) are dropped.
"""

from __future__ import annotations

import json
import time
from collections.abc import Callable, Iterator
from typing import Any

from corral.models.errors import InvalidRequest
from corral.models.types import (
    Message,
    Options,
    Request,
    ResponseFormat,
    ToolCall,
    ToolDefinition,
    parse_arguments,
)
from corral.sandbox.door.problems import (
    bad,
    choice,
    field,
    names,
    number,
    obj,
    positive,
    text,
)

NAME = "openai"
OVERLOADED = 503
_FINISH = {"stop": "stop", "tool_calls": "tool_calls", "length": "length", "content_filter": "content_filter"}
_PARTS = ("text", "refusal")


def checked(path: str, make: Callable[..., Any], *args: Any, **kwargs: Any) -> Any:
    """``make(*args, **kwargs)``, with corral's own request checks turned into a 400 at ``path``
    (for every dialect: they all build corral's neutral types)."""
    try:
        return make(*args, **kwargs)
    except InvalidRequest as exc:
        raise bad(path, exc.message) from None


class Asked:
    """A parsed request: the model named, the neutral args of its step, and how to answer."""

    def __init__(self, model: str, args: dict[str, Any], stream: bool, usage_in_stream: bool) -> None:
        self.model = model
        self.args = args
        self.stream = stream
        self.usage_in_stream = usage_in_stream


def _calls(value: list[Any], path: str) -> tuple[ToolCall, ...]:
    calls = []
    for index, item in enumerate(value):
        where = f"{path}[{index}]"
        call = obj(item, where)
        function = obj(field(call, "function", dict, where, required=True), f"{where}.function")
        raw = field(function, "arguments", str, f"{where}.function") or ""
        arguments, problem = parse_arguments(raw)
        name = field(function, "name", str, f"{where}.function", required=True)
        calls.append(ToolCall(field(call, "id", str, where, required=True), name, arguments, raw, problem))
    return tuple(calls)


def _message(item: Any, path: str) -> Message:
    message = obj(item, path)
    role = field(message, "role", str, path, required=True)
    content = message.get("content")
    if role in ("system", "developer"):
        return Message("system", text(content, f"{path}.content", _PARTS))
    if role == "user":
        return Message("user", text(content, f"{path}.content", _PARTS))
    if role == "assistant":
        if message.get("function_call") is not None:
            raise bad(f"{path}.function_call", "the legacy function_call is not supported; send tool_calls")
        calls = _calls(field(message, "tool_calls", list, path) or [], f"{path}.tool_calls")
        return Message("assistant", text(content, f"{path}.content", _PARTS), calls)
    if role == "tool":
        call_id = field(message, "tool_call_id", str, path, required=True)
        return Message("tool", text(content, f"{path}.content", _PARTS), tool_call_id=call_id)
    raise bad(f"{path}.role", f"must be system, developer, user, assistant or tool, got {role!r}")


def _tools(value: list[Any]) -> list[ToolDefinition]:
    tools = []
    for index, item in enumerate(value):
        where = f"tools[{index}]"
        tool = obj(item, where)
        if tool.get("type", "function") != "function":
            raise bad(f"{where}.type", f"only function tools pass corral's model door, not {tool.get('type')!r}")
        function = obj(field(tool, "function", dict, where, required=True), f"{where}.function")
        name = field(function, "name", str, f"{where}.function", required=True)
        description = field(function, "description", str, f"{where}.function") or ""
        parameters = field(function, "parameters", dict, f"{where}.function") or {"type": "object", "properties": {}}
        tools.append(checked(f"{where}.function", ToolDefinition, name, description, parameters))
    return tools


def _named(value: dict[str, Any]) -> tuple[str, str]:
    """The function a ``tool_choice`` object names: ``{"type": "function", "function": {"name": ...}}``."""
    function = obj(field(value, "function", dict, "tool_choice", required=True), "tool_choice.function")
    return field(function, "name", str, "tool_choice.function", required=True), "tool_choice.function.name"


def _format(value: Any) -> ResponseFormat | None:
    if value is None:
        return None
    wanted = obj(value, "response_format")
    kind = field(wanted, "type", str, "response_format", required=True)
    if kind == "text":
        return None
    if kind == "json_object":
        return ResponseFormat("json_object")
    if kind != "json_schema":
        raise bad("response_format.type", f"must be text, json_object or json_schema, got {kind!r}")
    spec = obj(field(wanted, "json_schema", dict, "response_format", required=True), "response_format.json_schema")
    where = "response_format.json_schema"
    name = field(spec, "name", str, where, required=True)
    schema = field(spec, "schema", dict, where) or {"type": "object"}
    return ResponseFormat("json_schema", name, schema, field(spec, "strict", bool, where))


def parse(body: Any) -> Asked:
    """Check a Chat Completions request; a 400 names the first bad field."""
    body = obj(body, "")
    model = field(body, "model", str, "", required=True)
    messages = field(body, "messages", list, "", required=True)
    if not messages:
        raise bad("messages", "must hold at least one message")
    if (body.get("n") or 1) != 1:
        raise bad("n", "corral's model door answers with one choice; send n = 1")
    turns = tuple(_message(item, f"messages[{index}]") for index, item in enumerate(messages))
    tools = _tools(field(body, "tools", list, "") or [])
    chosen, tools = choice(body.get("tool_choice"), tools, _named)
    stop = field(body, "stop", (str, list), "")
    if isinstance(stop, list) and not all(isinstance(item, str) for item in stop):
        raise bad("stop", "must be a string or a list of strings")
    cap = positive(body, "max_completion_tokens", "") or positive(body, "max_tokens", "")
    options = checked(
        "",
        lambda: Options(
            max_tokens=cap,
            temperature=number(body, "temperature", "", 0, 2),
            top_p=number(body, "top_p", "", 0, 1),
            stop=tuple([stop] if isinstance(stop, str) else stop or ()),
            tool_choice=chosen,  # type: ignore[arg-type]
            response_format=_format(body.get("response_format")),
        ),
    )
    request = checked("messages", lambda: Request(turns, tuple(tools), options))
    stream = bool(field(body, "stream", bool, ""))
    stream_options = field(body, "stream_options", dict, "") or {}
    include = bool(field(stream_options, "include_usage", bool, "stream_options"))
    return Asked(model, {**request.to_dict(), "door": NAME}, stream, include)


def _message_out(value: dict[str, Any]) -> dict[str, Any]:
    message: dict[str, Any] = {"role": "assistant", "content": value["text"] or None, "refusal": None}
    if value["tool_calls"]:
        message["tool_calls"] = [
            {"id": call["id"], "type": "function", "function": {"name": call["name"], "arguments": _raw(call)}}
            for call in value["tool_calls"]
        ]
    return message


def _raw(call: dict[str, Any]) -> str:
    return call.get("raw_arguments") or json.dumps(call.get("arguments") or {}, ensure_ascii=False)


def _usage(value: dict[str, Any]) -> dict[str, Any]:
    usage = value["usage"]
    return {
        "prompt_tokens": usage["input_tokens"],
        "completion_tokens": usage["output_tokens"],
        "total_tokens": usage["input_tokens"] + usage["output_tokens"],
        "prompt_tokens_details": {"cached_tokens": usage.get("cache_read_tokens", 0)},
    }


def answer(value: dict[str, Any], asked: Asked, ident: str) -> dict[str, Any]:
    """A ``chat.completion`` from a neutral response."""
    return {
        "id": ident,
        "object": "chat.completion",
        "created": int(time.time()),
        "model": asked.model,
        "choices": [
            {
                "index": 0,
                "message": _message_out(value),
                "finish_reason": _FINISH.get(value["finish_reason"], "stop"),
                "logprobs": None,
            }
        ],
        "usage": _usage(value),
    }


def stream(value: dict[str, Any], asked: Asked, ident: str) -> Iterator[bytes]:
    """The same answer as ``chat.completion.chunk`` events: role, text, each tool call, the
    finish, the usage when ``stream_options.include_usage`` asked for it, then ``[DONE]``."""
    created = int(time.time())
    extra = {"usage": None} if asked.usage_in_stream else {}

    def chunk(delta: dict[str, Any], finish: str | None = None) -> bytes:
        data = {
            "id": ident,
            "object": "chat.completion.chunk",
            "created": created,
            "model": asked.model,
            "choices": [{"index": 0, "delta": delta, "finish_reason": finish, "logprobs": None}],
            **extra,
        }
        return _event(data)

    yield chunk({"role": "assistant", "content": ""})
    if value["text"]:
        yield chunk({"content": value["text"]})
    for index, call in enumerate(value["tool_calls"]):
        function = {"name": call["name"], "arguments": _raw(call)}
        yield chunk({"tool_calls": [{"index": index, "id": call["id"], "type": "function", "function": function}]})
    yield chunk({}, _FINISH.get(value["finish_reason"], "stop"))
    if asked.usage_in_stream:
        data = {
            "id": ident,
            "object": "chat.completion.chunk",
            "created": created,
            "model": asked.model,
            "choices": [],
            "usage": _usage(value),
        }
        yield _event(data)
    yield b"data: [DONE]\n\n"


def _event(data: dict[str, Any]) -> bytes:
    return b"data: " + json.dumps(data, ensure_ascii=False).encode() + b"\n\n"


def models(granted: list[dict[str, str]]) -> dict[str, Any]:
    """``GET /v1/models``: each granted model under its alias and its upstream name."""
    data = [
        {"id": name, "object": "model", "created": 0, "owned_by": f"corral:{alias}"} for name, alias in names(granted)
    ]
    return {"object": "list", "data": data}
