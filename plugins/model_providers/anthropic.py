"""The Anthropic Messages dialect: ``POST {base_url}/v1/messages``, ``base_url`` as in the SDK (``https://api.anthropic.com``).

The API differs from Chat Completions in ways the adapter hides: the system prompt is
a top-level field, tool calls and results are content blocks (``tool_use``,
``tool_result``), all the results answering one assistant turn travel in one user turn,
``max_tokens`` is required, and cached input tokens are reported beside
``input_tokens`` rather than inside it.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from typing import Any

import msgspec

from corral.models.endpoint import Endpoint
from corral.models.provider import HttpCall, decode_body, max_output_tokens, unreadable
from corral.models.types import (
    FinishReason,
    Message,
    Request,
    Response,
    ResponseFormat,
    ToolCall,
    Usage,
    arguments_problem,
    as_text,
)

API_VERSION = "2023-06-01"

_FINISH: dict[str, FinishReason] = {
    "end_turn": "stop",
    "stop_sequence": "stop",
    "tool_use": "tool_calls",
    "max_tokens": "length",
    "model_context_window_exceeded": "length",
    "refusal": "content_filter",
}
_TOOL_CHOICE = {"auto": {"type": "auto"}, "required": {"type": "any"}, "none": {"type": "none"}}


class _Block(msgspec.Struct):
    type: str
    text: str | None = None
    id: str | None = None
    name: str | None = None
    input: Any = None


class _Usage(msgspec.Struct):
    input_tokens: int | None = 0
    output_tokens: int | None = 0
    cache_creation_input_tokens: int | None = None
    cache_read_input_tokens: int | None = None


class _Message(msgspec.Struct):
    content: list[_Block]
    id: str | None = None
    model: str | None = None
    stop_reason: str | None = None
    usage: _Usage | None = None


def _blocks(message: Message) -> list[dict[str, Any]]:
    if message.role == "tool":
        block: dict[str, Any] = {"type": "tool_result", "tool_use_id": message.tool_call_id, "content": message.text}
        if message.is_error:
            block["is_error"] = True
        return [block]
    blocks: list[dict[str, Any]] = [{"type": "text", "text": message.text}] if message.text else []
    blocks += [{"type": "tool_use", "id": c.id, "name": c.name, "input": c.arguments} for c in message.tool_calls]
    return blocks


def _turns(messages: tuple[Message, ...]) -> list[dict[str, Any]]:
    """Alternating user/assistant turns; tool results ride in the user turn that follows the call."""
    turns: list[dict[str, Any]] = []
    for message in messages:
        if message.role == "system":
            continue
        role = "assistant" if message.role == "assistant" else "user"
        blocks = _blocks(message)
        if not blocks:
            continue
        if turns and turns[-1]["role"] == role:
            turns[-1]["content"].extend(blocks)
        else:
            turns.append({"role": role, "content": blocks})
    return turns


def _json_instruction(wanted: ResponseFormat) -> str:
    """The Messages API has no response format of its own: JSON is asked for in words, not enforced."""
    if wanted.type == "json_object" or wanted.schema is None:
        return "Answer with one JSON object and nothing else."
    schema = json.dumps(wanted.schema, ensure_ascii=False, sort_keys=True)
    return f"Answer with one JSON object and nothing else, matching this JSON schema ({wanted.name}): {schema}"


class AnthropicAdapter:
    """Messages API request building and response parsing."""

    name = "anthropic"

    def build(self, endpoint: Endpoint, request: Request) -> HttpCall:
        """POST /v1/messages with ``x-api-key`` and ``anthropic-version``, system hoisted to the top level."""
        options = request.options
        body: dict[str, Any] = {
            "model": endpoint.model,
            "max_tokens": max_output_tokens(endpoint, request),
            "messages": _turns(request.messages),
        }
        system = "\n\n".join(message.text for message in request.messages if message.role == "system")
        if options.response_format is not None:
            system = "\n\n".join(part for part in (system, _json_instruction(options.response_format)) if part)
        if system:
            body["system"] = system
        if options.temperature is not None:
            body["temperature"] = options.temperature
        if options.top_p is not None:
            body["top_p"] = options.top_p
        if options.stop:
            body["stop_sequences"] = list(options.stop)
        if request.tools:
            body["tools"] = [
                {"name": tool.name, "description": tool.description, "input_schema": tool.parameters}
                for tool in request.tools
            ]
        if options.tool_choice is not None:
            body["tool_choice"] = _TOOL_CHOICE[options.tool_choice]
        headers = {"content-type": "application/json", "anthropic-version": API_VERSION}
        if endpoint.api_key is not None:
            headers["x-api-key"] = endpoint.api_key.reveal()
        return HttpCall("/v1/messages", headers, body)

    def parse(self, endpoint: Endpoint, body: bytes, headers: Mapping[str, str]) -> Response:
        """Text blocks joined, ``tool_use`` blocks as tool calls, ``stop_reason`` normalised."""
        message = decode_body(endpoint, body, _Message, "Anthropic Messages")
        texts: list[str] = []
        calls: list[ToolCall] = []
        for block in message.content:
            if block.type == "text":
                texts.append(block.text or "")
            elif block.type == "tool_use":
                if not block.id or not block.name:
                    raise unreadable(endpoint, "a tool_use block lacks its id or name", "Anthropic Messages")
                problem = arguments_problem(block.input)
                arguments = {} if problem else block.input
                calls.append(ToolCall(block.id, block.name, arguments, as_text(block.input), problem))
        usage = message.usage or _Usage()
        cache_read = usage.cache_read_input_tokens or 0
        cache_write = usage.cache_creation_input_tokens or 0
        return Response(
            text="".join(texts),
            tool_calls=tuple(calls),
            finish_reason=_FINISH.get(message.stop_reason or "", "other"),
            raw_finish_reason=message.stop_reason,
            usage=Usage(
                input_tokens=(usage.input_tokens or 0) + cache_read + cache_write,
                output_tokens=usage.output_tokens or 0,
                cache_read_tokens=cache_read,
                cache_write_tokens=cache_write,
            ),
            model=message.model or endpoint.model,
            provider=self.name,
            request_id=headers.get("request-id") or message.id,
        )
