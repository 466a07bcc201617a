"""The Anthropic Messages dialect of the door: request to neutral args, answer to JSON or SSE events.

Content blocks become corral's turns: ``tool_use`` blocks the assistant's tool calls,
``tool_result`` blocks tool turns (ahead of any text in the same user turn). What does
not survive (images and documents are refused; ``thinking``, ``top_k``, ``metadata`` and
cache-control marks are dropped) is listed in docs/models.md.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from typing import Any

from corral.models.types import Message, Options, Request, ToolCall, ToolDefinition
from corral.sandbox.door.chat import Asked, checked
from corral.sandbox.door.problems import bad, field, names, number, obj, only, positive, text

NAME = "anthropic"
OVERLOADED = 529
_STOP = {"stop": "end_turn", "tool_calls": "tool_use", "length": "max_tokens", "content_filter": "refusal"}
_CHOICES = {"auto": "auto", "any": "required", "none": "none"}


def _turn(item: Any, path: str) -> list[Message]:
    turn = obj(item, path)
    role = field(turn, "role", str, path, required=True)
    if role not in ("user", "assistant"):
        raise bad(f"{path}.role", f"must be user or assistant, got {role!r}")
    content = turn.get("content")
    if isinstance(content, str):
        return [Message(role, content)]
    if not isinstance(content, list):
        raise bad(f"{path}.content", "must be a string or a list of content blocks")
    texts: list[str] = []
    calls: list[ToolCall] = []
    results: list[Message] = []
    for index, block in enumerate(content):
        where = f"{path}.content[{index}]"
        block = obj(block, where)
        kind = block.get("type")
        if kind == "text":
            texts.append(field(block, "text", str, where, required=True))
        elif kind == "tool_use" and role == "assistant":
            arguments = field(block, "input", dict, where) or {}
            raw = json.dumps(arguments, ensure_ascii=False)
            name = field(block, "name", str, where, required=True)
            calls.append(ToolCall(field(block, "id", str, where, required=True), name, arguments, raw))
        elif kind == "tool_result" and role == "user":
            call_id = field(block, "tool_use_id", str, where, required=True)
            said = text(block.get("content"), f"{where}.content")
            is_error = bool(field(block, "is_error", bool, where))
            results.append(Message("tool", said, tool_call_id=call_id, is_error=is_error))
        elif kind in ("thinking", "redacted_thinking") and role == "assistant":
            continue  # corral's turns carry no reasoning; the model is asked without it
        else:
            raise bad(f"{where}.type", f"{role} blocks of type {kind!r} do not pass corral's model door")
    if role == "assistant":
        return [Message("assistant", "".join(texts), tuple(calls))]
    joined = "".join(texts)
    return [*results, Message("user", joined)] if joined or not results else results


def _system(value: Any) -> list[Message]:
    if value is None:
        return []
    return [Message("system", text(value, "system"))]


def _tools(value: list[Any]) -> list[ToolDefinition]:
    tools = []
    for index, item in enumerate(value):
        where = f"tools[{index}]"
        tool = obj(item, where)
        if tool.get("type", "custom") != "custom":
            raise bad(f"{where}.type", f"Anthropic's own tools ({tool.get('type')!r}) do not pass corral's model door")
        name = field(tool, "name", str, where, required=True)
        description = field(tool, "description", str, where) or ""
        schema = field(tool, "input_schema", dict, where, required=True)
        tools.append(checked(where, ToolDefinition, name, description, schema))
    return tools


def _choice(value: Any, tools: list[ToolDefinition]) -> tuple[str | None, list[ToolDefinition]]:
    if value is None:
        return None, tools
    choice = obj(value, "tool_choice")
    kind = field(choice, "type", str, "tool_choice", required=True)
    if kind in _CHOICES:
        return _CHOICES[kind], tools
    if kind != "tool":
        raise bad("tool_choice.type", f"must be auto, any, none or tool, got {kind!r}")
    name = field(choice, "name", str, "tool_choice", required=True)
    return "required", only(tools, name, "tool_choice.name")


def parse(body: Any) -> Asked:
    """Check a Messages request; a 400 names the first bad field."""
    body = obj(body, "")
    model = field(body, "model", str, "", required=True)
    cap = positive(body, "max_tokens", "")
    if cap is None:
        raise bad("max_tokens", "is required")
    messages = field(body, "messages", list, "", required=True)
    if not messages:
        raise bad("messages", "must hold at least one message")
    turns = [*_system(body.get("system"))]
    for index, item in enumerate(messages):
        turns += _turn(item, f"messages[{index}]")
    tools = _tools(field(body, "tools", list, "") or [])
    choice, tools = _choice(body.get("tool_choice"), tools)
    stop = field(body, "stop_sequences", list, "") or []
    if not all(isinstance(item, str) for item in stop):
        raise bad("stop_sequences", "must be a list of strings")
    options = checked(
        "",
        lambda: Options(
            max_tokens=cap,
            temperature=number(body, "temperature", "", 0, 1),
            top_p=number(body, "top_p", "", 0, 1),
            stop=tuple(stop),
            tool_choice=choice,  # type: ignore[arg-type]
        ),
    )
    request = checked("messages", lambda: Request(tuple(turns), tuple(tools), options))
    return Asked(model, {**request.to_dict(), "door": NAME}, bool(field(body, "stream", bool, "")), True)


def _content(value: dict[str, Any]) -> list[dict[str, Any]]:
    blocks: list[dict[str, Any]] = [{"type": "text", "text": value["text"]}] if value["text"] else []
    blocks += [
        {"type": "tool_use", "id": call["id"], "name": call["name"], "input": call.get("arguments") or {}}
        for call in value["tool_calls"]
    ]
    return blocks


def _usage(value: dict[str, Any]) -> dict[str, Any]:
    """Anthropic counts cached input apart from ``input_tokens``; corral counts it in."""
    usage = value["usage"]
    read, written = usage.get("cache_read_tokens", 0), usage.get("cache_write_tokens", 0)
    return {
        "input_tokens": usage["input_tokens"] - read - written,
        "output_tokens": usage["output_tokens"],
        "cache_read_input_tokens": read,
        "cache_creation_input_tokens": written,
    }


def _stop(value: dict[str, Any]) -> str:
    if value["tool_calls"]:
        return "tool_use"
    return _STOP.get(value["finish_reason"], "end_turn")


def answer(value: dict[str, Any], asked: Asked, ident: str) -> dict[str, Any]:
    """A Messages ``message`` from a neutral response."""
    return {
        "id": ident,
        "type": "message",
        "role": "assistant",
        "model": asked.model,
        "content": _content(value),
        "stop_reason": _stop(value),
        "stop_sequence": None,
        "usage": _usage(value),
    }


def stream(value: dict[str, Any], asked: Asked, ident: str) -> Iterator[bytes]:
    """The same answer as Messages stream events: ``message_start``, a block per text and
    tool call (tool input as one ``input_json_delta``), ``message_delta``, ``message_stop``."""
    usage = _usage(value)
    start = {**answer(value, asked, ident), "content": [], "stop_reason": None, "usage": {**usage, "output_tokens": 0}}
    yield _event("message_start", {"type": "message_start", "message": start})
    for index, block in enumerate(_content(value)):
        if block["type"] == "text":
            opened: dict[str, Any] = {"type": "text", "text": ""}
            delta = {"type": "text_delta", "text": block["text"]}
        else:
            opened = {**block, "input": {}}
            delta = {"type": "input_json_delta", "partial_json": json.dumps(block["input"], ensure_ascii=False)}
        yield _event("content_block_start", {"type": "content_block_start", "index": index, "content_block": opened})
        yield _event("content_block_delta", {"type": "content_block_delta", "index": index, "delta": delta})
        yield _event("content_block_stop", {"type": "content_block_stop", "index": index})
    delta = {"type": "message_delta", "delta": {"stop_reason": _stop(value), "stop_sequence": None}, "usage": usage}
    yield _event("message_delta", delta)
    yield _event("message_stop", {"type": "message_stop"})


def _event(name: str, data: dict[str, Any]) -> bytes:
    return f"event: {name}\ndata: ".encode() + json.dumps(data, ensure_ascii=False).encode() + b"\n\n"


def models(granted: list[dict[str, str]]) -> dict[str, Any]:
    """``GET /v1/models`` as Anthropic's SDK reads it."""
    data = [
        {"type": "model", "id": name, "display_name": name, "created_at": "1970-01-01T00:00:00Z"}
        for name, _ in names(granted)
    ]
    return {"data": data, "has_more": False, "first_id": data[0]["id"] if data else None, "last_id": None}
