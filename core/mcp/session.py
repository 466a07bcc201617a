"""One conversation with an MCP server through the ``mcp`` SDK: list its tools, call one.

Both transports go through here: stdio servers from the agent's process
(:mod:`corral.sandbox.mcp_stdio`), HTTP servers from the daemon (:mod:`corral.mcp.http`).
The SDK is imported only when a server is used, so runs without MCP never load it.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from mcp import Client

KEY_META = "io.corral/idempotency-key"
"""The ``_meta`` entry of a ``tools/call`` carrying corral's idempotency key: the same on
every execution of one journaled call, so a server can recognise a repeat."""
MAX_PAGES = 50
"""Pages of ``tools/list`` read before giving up on a server whose cursor never ends."""


class ServerGone(Exception):
    """The connection to the server closed (it crashed or was stopped) while a request was open."""


async def list_tools(client: Client) -> list[dict[str, Any]]:
    """Every tool the server lists, as plain JSON (camelCase keys, as on the wire)."""
    tools: list[dict[str, Any]] = []
    cursor: str | None = None
    for _ in range(MAX_PAGES):
        page = await _request(client.list_tools(cursor=cursor))
        tools += [tool.model_dump(by_alias=True, mode="json", exclude_none=True) for tool in page.tools]
        cursor = page.next_cursor
        if cursor is None:
            return tools
    raise ValueError(f"the server's tools/list did not end after {MAX_PAGES} pages")


async def call_tool(client: Client, tool: str, args: dict[str, Any], key: str) -> dict[str, Any]:
    """One ``tools/call``; its result as plain JSON. A JSON-RPC error the server answers
    becomes an ``isError`` result carrying its message."""
    from mcp.shared.exceptions import MCPError

    meta: Any = {KEY_META: key} if key else None  # the SDK's RequestParamsMeta is an open mapping
    try:
        result = await _request(client.call_tool(tool, args, meta=meta))
    except MCPError as exc:
        return {
            "isError": True,
            "content": [{"type": "text", "text": f"the server refused the call: {exc.error.message}"}],
        }
    return dict(result.model_dump(by_alias=True, mode="json", exclude_none=True))


async def _request(pending: Any) -> Any:
    """Await an SDK request; a closed connection becomes :class:`ServerGone`."""
    from mcp.shared.exceptions import MCPError
    from mcp_types import CONNECTION_CLOSED

    try:
        return await pending
    except MCPError as exc:
        if exc.error.code == CONNECTION_CLOSED:
            raise ServerGone(exc.error.message) from exc
        raise
