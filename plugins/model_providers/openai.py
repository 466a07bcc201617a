"""The Chat Completions dialect: OpenAI and the servers that copy it (Ollama, vLLM, llama.cpp, LM Studio, OpenRouter).

``base_url`` ends where the SDKs' does (``https://api.openai.com/v1``,
``http://127.0.0.1:11434/v1``); the adapter posts to ``{base_url}/chat/completions``.
The output cap is sent as ``max_completion_tokens`` to api.openai.com (its reasoning
models refuse ``max_tokens``) and as ``max_tokens`` everywhere else, which every
compatible server understands.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import httpx
import msgspec

from corral.models.endpoint import Endpoint
from corral.models.provider import HttpCall, decode_body, max_output_tokens, unreadable
from corral.models.types import (
    FinishReason,
    Message,
    Request,
    Response,
    ToolCall,
    Usage,
    arguments_problem,
    as_text,
    parse_arguments,
)

_FINISH: dict[str, FinishReason] = {
    "stop": "stop",
    "tool_calls": "tool_calls",
    "function_call": "tool_calls",
    "length": "length",
    "content_filter": "content_filter",
}


class _Function(msgspec.Struct):
    name: str
    arguments: str | dict[str, Any] = ""


class _ToolCall(msgspec.Struct):
    function: _Function
    id: str | None = None


class _Message(msgspec.Struct):
    content: str | list[dict[str, Any]] | None = None
    tool_calls: list[_ToolCall] | None = None
    refusal: str | None = None


class _Choice(msgspec.Struct):
    message: _Message
    finish_reason: str | None = None


class _PromptDetails(msgspec.Struct):
    cached_tokens: int | None = None


class _Usage(msgspec.Struct):
    prompt_tokens: int | None = 0
    completion_tokens: int | None = 0
    prompt_tokens_details: _PromptDetails | None = None


class _Completion(msgspec.Struct):
    choices: list[_Choice]
    model: str | None = None
    id: str | None = None
    usage: _Usage | None = None


def _message(message: Message) -> dict[str, Any]:
    if message.role == "tool":
        return {"role": "tool", "tool_call_id": message.tool_call_id, "content": message.text}
    if message.role == "assistant" and message.tool_calls:
        return {
            "role": "assistant",
            "content": message.text or None,
            "tool_calls": [
                {"id": call.id, "type": "function", "function": {"name": call.name, "arguments": call.arguments_json()}}
                for call in message.tool_calls
            ],
        }
    return {"role": message.role, "content": message.text}


def _text(content: str | list[dict[str, Any]] | None) -> str:
    if isinstance(content, list):  # some servers answer with content parts
        return "".join(str(part.get("text", "")) for part in content if part.get("type") == "text")
    return content or ""


def _tool_call(index: int, call: _ToolCall) -> ToolCall:
    raw = call.function.arguments
    if isinstance(raw, dict):  # older Ollama sends the object itself
        problem = arguments_problem(raw)
        return ToolCall(call.id or f"call_{index}", call.function.name, {} if problem else raw, as_text(raw), problem)
    arguments, problem = parse_arguments(raw)
    return ToolCall(call.id or f"call_{index}", call.function.name, arguments, raw, problem)


class OpenAIAdapter:
    """Chat Completions request building and response parsing."""

    name = "openai"

    def build(self, endpoint: Endpoint, request: Request) -> HttpCall:
        """POST /chat/completions with tools as ``{"type": "function", ...}`` and results as ``role: tool``."""
        cap = "max_completion_tokens" if httpx.URL(endpoint.base_url).host == "api.openai.com" else "max_tokens"
        options = request.options
        body: dict[str, Any] = {
            "model": endpoint.model,
            "messages": [_message(message) for message in request.messages],
            cap: max_output_tokens(endpoint, request),
        }
        if options.temperature is not None:
            body["temperature"] = options.temperature
        if options.top_p is not None:
            body["top_p"] = options.top_p
        if options.stop:
            body["stop"] = list(options.stop)
        if request.tools:
            body["tools"] = [
                {
                    "type": "function",
                    "function": {"name": tool.name, "description": tool.description, "parameters": tool.parameters},
                }
                for tool in request.tools
            ]
        if options.tool_choice is not None:
            body["tool_choice"] = options.tool_choice
        wanted = options.response_format
        if wanted is not None and wanted.type == "json_object":
            body["response_format"] = {"type": "json_object"}
        elif wanted is not None:
            schema: dict[str, Any] = {"name": wanted.name, "schema": wanted.schema}
            if wanted.strict is not None:
                schema["strict"] = wanted.strict
            body["response_format"] = {"type": "json_schema", "json_schema": schema}
        headers = {"content-type": "application/json"}
        if endpoint.api_key is not None:
            headers["authorization"] = f"Bearer {endpoint.api_key.reveal()}"
        return HttpCall("/chat/completions", headers, body)

    def parse(self, endpoint: Endpoint, body: bytes, headers: Mapping[str, str]) -> Response:
        """The first choice's text and tool calls, ``finish_reason`` normalised, usage from ``usage``."""
        completion = decode_body(endpoint, body, _Completion, "Chat Completions")
        if not completion.choices:
            raise unreadable(endpoint, "it has no choices", "Chat Completions")
        choice = completion.choices[0]
        calls = tuple(_tool_call(index, call) for index, call in enumerate(choice.message.tool_calls or ()))
        raw = choice.finish_reason
        finish = _FINISH.get(raw or "", "other")
        if calls and finish == "stop":  # Ollama and llama.cpp say "stop" after a tool call
            finish = "tool_calls"
        usage = completion.usage or _Usage()
        details = usage.prompt_tokens_details or _PromptDetails()
        text = _text(choice.message.content) or (choice.message.refusal or "")
        return Response(
            text=text,
            tool_calls=calls,
            finish_reason=finish,
            raw_finish_reason=raw,
            usage=Usage(
                input_tokens=usage.prompt_tokens or 0,
                output_tokens=usage.completion_tokens or 0,
                cache_read_tokens=details.cached_tokens or 0,
            ),
            model=completion.model or endpoint.model,
            provider=self.name,
            request_id=headers.get("x-request-id") or completion.id,
        )
