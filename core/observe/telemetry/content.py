"""What ``capture_content = true`` exports: prompts, answers, tool arguments and results, as
the GenAI conventions shape them, redacted and cut to size.

Journal entries already hold every granted secret as ``[redacted:NAME]`` (they are
redacted before they are written); the daemon's redactor runs again here, so a value
granted after the entry was written is hidden too. Each attribute is a JSON string (span
attributes cannot nest) cut at :data:`CONTENT_CHARS`, which with ``max_queue`` bounds the
memory spans waiting for export can hold.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Mapping
from typing import Any

from opentelemetry.semconv._incubating.attributes import gen_ai_attributes as gen_ai

CONTENT_CHARS = 16_384
"""The longest content attribute exported, in characters; longer ones are cut, with a marker."""

Redact = Callable[[Any], Any]


def text(value: Any, redact: Redact) -> str:
    """``value`` redacted, as JSON, cut at :data:`CONTENT_CHARS`."""
    written, whole = _json(value, redact)
    shown = redact(written)
    if len(shown) > CONTENT_CHARS or not whole:
        shown = shown[:CONTENT_CHARS] + f"...[cut at {CONTENT_CHARS} characters]"
    return shown


def _json(value: Any, redact: Redact) -> tuple[str, bool]:
    """``value`` redacted as JSON, and whether it is all there: a list only as far as the cut
    needs (twice over, for what redaction takes out), so the 20,000 messages of a long
    conversation's request are not each written out to keep the first 16 KiB."""
    if not isinstance(value, list):
        return json.dumps(redact(value), ensure_ascii=False, default=str), True
    items: list[str] = []
    size = 2
    for item in value:
        if size > 2 * CONTENT_CHARS:
            return "[" + ", ".join(items), False
        items.append(json.dumps(redact(item), ensure_ascii=False, default=str))
        size += len(items[-1]) + 2
    return "[" + ", ".join(items) + "]", True


def _parts(message: Mapping[str, Any]) -> list[dict[str, Any]]:
    """One message of a model request or answer as the conventions' parts."""
    if message.get("role") == "tool":
        return [{"type": "tool_call_response", "id": message.get("tool_call_id"), "response": message.get("text", "")}]
    parts: list[dict[str, Any]] = []
    if message.get("text"):
        parts.append({"type": "text", "content": message["text"]})
    for call in message.get("tool_calls") or ():
        parts.append(
            {"type": "tool_call", "id": call.get("id"), "name": call.get("name"), "arguments": call.get("arguments")}
        )
    return parts


def chat(args: Mapping[str, Any], value: Any, redact: Redact) -> dict[str, str]:
    """``gen_ai.system_instructions``, ``gen_ai.input.messages``, ``gen_ai.tool.definitions``
    and ``gen_ai.output.messages`` of a model step (its request ``args``, its answer ``value``)."""
    messages = [m for m in args.get("messages") or () if isinstance(m, Mapping)]
    found: dict[str, Any] = {}
    system = [{"type": "text", "content": m.get("text", "")} for m in messages if m.get("role") == "system"]
    if system:
        found[gen_ai.GEN_AI_SYSTEM_INSTRUCTIONS] = system
    found[gen_ai.GEN_AI_INPUT_MESSAGES] = [
        {"role": m.get("role"), "parts": _parts(m)} for m in messages if m.get("role") != "system"
    ]
    tools = [
        {"type": "function", "name": tool}
        if isinstance(tool, str)
        else {"type": "function", **{k: tool.get(k) for k in ("name", "description", "parameters")}}
        for tool in args.get("tools") or ()
        if isinstance(tool, str | Mapping)
    ]
    if tools:
        found[gen_ai.GEN_AI_TOOL_DEFINITIONS] = tools
    if isinstance(value, Mapping):
        answer = {"role": "assistant", "parts": _parts(value), "finish_reason": value.get("finish_reason")}
        found[gen_ai.GEN_AI_OUTPUT_MESSAGES] = [answer]
    return {key: text(item, redact) for key, item in found.items()}
