"""The OpenAI Responses dialect of the door, as far as the OpenAI Agents SDK uses it: input
items (messages, ``function_call``, ``function_call_output``), instructions, function tools,
``tool_choice``, ``text.format``, and the answer as a ``response`` or its stream events.

The door keeps no conversation of its own, so ``previous_response_id`` and ``conversation``
are refused: the SDK sends the whole input (its default). Reasoning items are dropped.
"""

from __future__ import annotations

import json
import time
from collections.abc import Iterator
from typing import Any

from corral.models.types import Message, Options, Request, ResponseFormat, ToolCall, ToolDefinition, parse_arguments
from corral.sandbox.door import chat
from corral.sandbox.door.chat import Asked, checked
from corral.sandbox.door.problems import bad, choice, field, number, obj, positive, text

NAME = "responses"
OVERLOADED = chat.OVERLOADED
_PARTS = ("input_text", "output_text", "text", "refusal")
_ROLES = {"user": "user", "assistant": "assistant", "system": "system", "developer": "system"}
_DROPPED = ("reasoning", "item_reference")


def _items(value: Any) -> list[Message]:
    """The input as corral's turns; consecutive function calls join the assistant turn before them."""
    if isinstance(value, str):
        return [Message("user", value)]
    if not isinstance(value, list):
        raise bad("input", "must be a string or a list of input items")
    turns: list[Message] = []
    for index, item in enumerate(value):
        where = f"input[{index}]"
        item = obj(item, where)
        kind = item.get("type", "message")
        if kind == "message":
            role = field(item, "role", str, where, required=True)
            if role not in _ROLES:
                raise bad(f"{where}.role", f"must be user, assistant, system or developer, got {role!r}")
            turns.append(Message(_ROLES[role], text(item.get("content"), f"{where}.content", _PARTS)))  # type: ignore[arg-type]
        elif kind == "function_call":
            raw = field(item, "arguments", str, where) or ""
            arguments, problem = parse_arguments(raw)
            name = field(item, "name", str, where, required=True)
            call = ToolCall(field(item, "call_id", str, where, required=True), name, arguments, raw, problem)
            last = turns[-1] if turns else None
            if last is not None and last.role == "assistant":
                turns[-1] = Message("assistant", last.text, (*last.tool_calls, call))
            else:
                turns.append(Message("assistant", "", (call,)))
        elif kind == "function_call_output":
            call_id = field(item, "call_id", str, where, required=True)
            turns.append(Message("tool", text(item.get("output"), f"{where}.output", _PARTS), tool_call_id=call_id))
        elif kind not in _DROPPED:
            raise bad(f"{where}.type", f"input items of type {kind!r} do not pass corral's model door")
    if not turns:
        raise bad("input", "must hold at least one message")
    return turns


def _tools(value: list[Any]) -> list[ToolDefinition]:
    tools = []
    for index, item in enumerate(value):
        where = f"tools[{index}]"
        tool = obj(item, where)
        if tool.get("type") != "function":
            raise bad(f"{where}.type", f"only function tools pass corral's model door, not {tool.get('type')!r}")
        name = field(tool, "name", str, where, required=True)
        description = field(tool, "description", str, where) or ""
        parameters = field(tool, "parameters", dict, where) or {"type": "object", "properties": {}}
        tools.append(checked(where, ToolDefinition, name, description, parameters))
    return tools


def _named(value: dict[str, Any]) -> tuple[str, str]:
    """The function a ``tool_choice`` object names: ``{"type": "function", "name": ...}``."""
    if value.get("type") != "function":
        raise bad("tool_choice.type", f"only a function may be chosen, not {value.get('type')!r}")
    return field(value, "name", str, "tool_choice", required=True), "tool_choice.name"


def _format(value: Any) -> ResponseFormat | None:
    if value is None:
        return None
    wanted = obj(field(obj(value, "text"), "format", dict, "text") or {"type": "text"}, "text.format")
    kind = field(wanted, "type", str, "text.format", required=True)
    if kind == "text":
        return None
    if kind == "json_object":
        return ResponseFormat("json_object")
    if kind != "json_schema":
        raise bad("text.format.type", f"must be text, json_object or json_schema, got {kind!r}")
    name = field(wanted, "name", str, "text.format") or "response"
    schema = field(wanted, "schema", dict, "text.format") or {"type": "object"}
    return ResponseFormat("json_schema", name, schema, field(wanted, "strict", bool, "text.format"))


def parse(body: Any) -> Asked:
    """Check a Responses request; a 400 names the first bad field."""
    body = obj(body, "")
    model = field(body, "model", str, "", required=True)
    for stateful in ("previous_response_id", "conversation"):
        if body.get(stateful) is not None:
            raise bad(stateful, "corral's model door keeps no conversation: send the whole input each time")
    instructions = field(body, "instructions", str, "")
    turns = [Message("system", instructions)] if instructions else []
    turns += _items(body.get("input"))
    tools = _tools(field(body, "tools", list, "") or [])
    chosen, tools = choice(body.get("tool_choice"), tools, _named)
    options = checked(
        "",
        Options,
        max_tokens=positive(body, "max_output_tokens", ""),
        temperature=number(body, "temperature", "", 0, 2),
        top_p=number(body, "top_p", "", 0, 1),
        tool_choice=chosen,
        response_format=_format(body.get("text")),
    )
    request = checked("input", Request, tuple(turns), tuple(tools), options)
    return Asked(model, {**request.to_dict(), "door": NAME}, bool(field(body, "stream", bool, "")), True)


def _output(value: dict[str, Any], ident: str) -> list[dict[str, Any]]:
    items: list[dict[str, Any]] = []
    if value["text"]:
        part = {"type": "output_text", "text": value["text"], "annotations": []}
        items.append(
            {"type": "message", "id": f"msg_{ident}", "status": "completed", "role": "assistant", "content": [part]}
        )
    for index, call in enumerate(value["tool_calls"]):
        arguments = call.get("raw_arguments") or json.dumps(call.get("arguments") or {}, ensure_ascii=False)
        items.append(
            {
                "type": "function_call",
                "id": f"fc_{ident}_{index}",
                "call_id": call["id"],
                "name": call["name"],
                "arguments": arguments,
                "status": "completed",
            }
        )
    return items


def _usage(value: dict[str, Any]) -> dict[str, Any]:
    usage = value["usage"]
    return {
        "input_tokens": usage["input_tokens"],
        "input_tokens_details": {"cached_tokens": usage.get("cache_read_tokens", 0), "cache_write_tokens": 0},
        "output_tokens": usage["output_tokens"],
        "output_tokens_details": {"reasoning_tokens": 0},
        "total_tokens": usage["input_tokens"] + usage["output_tokens"],
    }


def answer(value: dict[str, Any], asked: Asked, ident: str) -> dict[str, Any]:
    """A ``response`` from a neutral response; a reply cut at the output cap is ``incomplete``."""
    cut = value["finish_reason"] == "length"
    return {
        "id": ident,
        "object": "response",
        "created_at": int(time.time()),
        "status": "incomplete" if cut else "completed",
        "model": asked.model,
        "output": _output(value, ident),
        "parallel_tool_calls": True,
        "tool_choice": "auto",
        "tools": [],
        "usage": _usage(value),
        "error": None,
        "incomplete_details": {"reason": "max_output_tokens"} if cut else None,
        "instructions": None,
        "metadata": {},
        "temperature": None,
        "top_p": None,
        "text": {"format": {"type": "text"}},
    }


def stream(value: dict[str, Any], asked: Asked, ident: str) -> Iterator[bytes]:
    """The same answer as Responses stream events, each item whole: created, in progress, per
    output item its added / delta / done events, then completed (or incomplete)."""
    final = answer(value, asked, ident)
    numbers = iter(range(1_000_000))

    def event(kind: str, **data: Any) -> bytes:
        body = {"type": kind, "sequence_number": next(numbers), **data}
        return f"event: {kind}\ndata: ".encode() + json.dumps(body, ensure_ascii=False).encode() + b"\n\n"

    begun = {**final, "status": "in_progress", "output": [], "usage": None, "incomplete_details": None}
    yield event("response.created", response=begun)
    yield event("response.in_progress", response=begun)
    for index, item in enumerate(final["output"]):
        place = {"output_index": index}
        if item["type"] == "message":
            part = item["content"][0]
            yield event("response.output_item.added", item={**item, "status": "in_progress", "content": []}, **place)
            at = {"item_id": item["id"], "content_index": 0, **place}
            yield event("response.content_part.added", part={**part, "text": ""}, **at)
            yield event("response.output_text.delta", delta=part["text"], logprobs=[], **at)
            yield event("response.output_text.done", text=part["text"], logprobs=[], **at)
            yield event("response.content_part.done", part=part, **at)
        else:
            yield event("response.output_item.added", item={**item, "status": "in_progress", "arguments": ""}, **place)
            at = {"item_id": item["id"], **place}
            yield event("response.function_call_arguments.delta", delta=item["arguments"], **at)
            yield event("response.function_call_arguments.done", arguments=item["arguments"], name=item["name"], **at)
        yield event("response.output_item.done", item=item, **place)
    yield event("response.incomplete" if final["status"] == "incomplete" else "response.completed", response=final)


models = chat.models
