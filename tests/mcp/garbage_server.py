"""A stdio MCP server that speaks JSON-RPC by hand and answers every tool call with garbage.

It lists one tool, ``echo``; a call gets a line that is not JSON, then nothing. (The SDK's
own servers cannot be made to write a malformed frame: this one exists for that fault.)
"""

from __future__ import annotations

import json
import sys

TOOLS = [
    {
        "name": "echo",
        "description": "Say it back.",
        "inputSchema": {"type": "object"},
        "annotations": {"readOnlyHint": True},
    }
]


def answer(request_id: object, result: object) -> None:
    sys.stdout.write(json.dumps({"jsonrpc": "2.0", "id": request_id, "result": result}) + "\n")
    sys.stdout.flush()


for line in sys.stdin:
    message = json.loads(line)
    method, request_id = message.get("method"), message.get("id")
    if request_id is None:
        continue
    if method == "initialize":
        answer(
            request_id,
            {
                "protocolVersion": message["params"]["protocolVersion"],
                "capabilities": {"tools": {}},
                "serverInfo": {"name": "garbage", "version": "1"},
            },
        )
    elif method == "tools/list":
        answer(request_id, {"tools": TOOLS})
    elif method == "tools/call":
        sys.stdout.write("{this is not JSON-RPC\n")
        sys.stdout.flush()
    else:
        error = {"code": -32601, "message": f"method {method} not found"}
        sys.stdout.write(json.dumps({"jsonrpc": "2.0", "id": request_id, "error": error}) + "\n")
        sys.stdout.flush()
