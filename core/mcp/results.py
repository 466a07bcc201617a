"""An MCP tool result as corral's tool outcome: a value, or an error the model can read.

``structuredContent`` is the value when the server gives one (it is the tool's typed
answer); otherwise text blocks are joined into one string; a result with images, audio
or resources is the list of its content blocks. ``isError`` makes the call fail with the
server's text as the message. A result over ``[mcp.NAME] max_result_kb`` fails the call
instead of filling the journal, and so does one nested past what corral keeps
(:data:`corral.packing.MAX_DEPTH`), which the wire to the agent would refuse. The same
mapping serves stdio calls (made in the agent's process) and HTTP calls (made by the daemon).
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from typing import Any

from corral.packing import MAX_DEPTH, nesting

MESSAGE_CHARS = 4000
"""Characters of a failed call's text kept in its error message (the rest is in no log either)."""


def error(kind: str, message: str) -> dict[str, Any]:
    """A failed call's error, in the shape the agent's process reports a tool's errors."""
    return {"kind": kind, "type": "ToolCallError", "message": message[:MESSAGE_CHARS]}


def outcome(
    result: Mapping[str, Any], name: str, server: str, max_bytes: int
) -> tuple[bool, Any, dict[str, Any] | None]:
    """``(ok, value, error)`` of one ``tools/call`` result (its JSON form, camelCase keys)."""
    if nesting(result, MAX_DEPTH + 1) > MAX_DEPTH + 1:  # the value is a level inside it, or more
        message = f"tool {name!r} returned a result nested deeper than the {MAX_DEPTH} levels corral keeps"
        return False, None, error("too_deep", message)
    size = len(json.dumps(result, separators=(",", ":"), default=str))
    if size > max_bytes:
        return (
            False,
            None,
            error(
                "too_large",
                f"tool {name!r} returned {size} bytes, over the {max_bytes // 1024} KiB cap ([mcp.{server}] "
                "max_result_kb); ask for less (a narrower query, a page), or raise the cap",
            ),
        )
    blocks = [b for b in result.get("content") or () if isinstance(b, Mapping)]
    texts = [str(b.get("text", "")) for b in blocks if b.get("type") == "text"]
    if result.get("isError"):
        detail = "\n".join(texts) or "the server gave no reason"
        return False, None, error("failed", f"tool {name!r} failed: {detail}")
    structured = result.get("structuredContent")
    if structured is not None:
        return True, structured, None
    if len(texts) == len(blocks):
        return True, "\n".join(texts), None
    return True, [dict(b) for b in blocks], None
