"""Agents that use their run's tool door (``$CORRAL_MCP_URL``) with MCP clients, and the
plugin whose tools they call. Each returns what it saw."""

TOOLS_PLUGIN = '''
import pathlib

import corral


@corral.tool(read_only=True)
def add(a: int, b: int) -> int:
    """Add two integers.

    :param a: the first
    :param b: the second
    """
    return a + b


@corral.tool
def refuse(reason: str) -> str:
    """Fail with the reason given.

    :param reason: what the failure says
    """
    raise corral.ToolError(reason)


@corral.tool(high_stakes=True)
def launch(target: str) -> str:
    """Launch at a target (a line in launched.txt of the workdir).

    :param target: where to launch
    """
    with pathlib.Path("launched.txt").open("a") as f:
        f.write(target + "\\n")
    return f"launched at {target}"


@corral.hookimpl
def corral_register_tools(register):
    register(add)
    register(refuse)
    register(launch)
'''

SDK_CLIENT = """
import asyncio, os

import httpx2
from mcp import Client
from mcp.client.streamable_http import streamable_http_client


def plain(result):
    return {"error": result.is_error, "text": [c.text for c in result.content],
            "structured": result.structured_content, "kind": (result.meta or {}).get("io.corral/error-kind")}


async def session(mode, calls):
    headers = {"authorization": "Bearer " + os.environ["CORRAL_DOOR_TOKEN"]}
    async with httpx2.AsyncClient(headers=headers) as http:
        transport = streamable_http_client(os.environ["CORRAL_MCP_URL"], http_client=http)
        async with Client(transport, mode=mode, cache=None) as client:
            seen = {"version": client.session.protocol_version if hasattr(client.session, "protocol_version") else None}
            listed = await client.list_tools()
            seen["tools"] = {t.name: {"description": t.description, "schema": t.input_schema,
                                      "hints": t.annotations.model_dump(by_alias=True, exclude_none=True)
                                      if t.annotations else {}} for t in listed.tools}
            for label, (name, args) in calls.items():
                seen[label] = plain(await client.call_tool(name, args))
            return seen


def run(ctx):
    modern = asyncio.run(session("auto", {
        "add": ("add", {"a": 2, "b": 3}),
        "bad arguments": ("add", {"a": "two"}),
        "not granted": ("launch_missiles", {}),
        "tool error": ("refuse", {"reason": "no, thanks"}),
        "huge int": ("add", {"a": 10**30, "b": 1}),
        "time": ("time__get_current_time", {"timezone": "UTC"}),
    }))
    legacy = asyncio.run(session("legacy", {"add": ("add", {"a": 40, "b": 2})}))
    return {"modern": modern, "legacy": legacy}
"""
"""Lists and calls the door's tools with the ``mcp`` SDK's Streamable HTTP client, once
negotiating the current revision (``auto``: ``server/discover``) and once with the
``initialize`` handshake (``legacy``)."""

RAW = """
import json, os, urllib.request, urllib.error

URL = os.environ["CORRAL_MCP_URL"]
TOKEN = os.environ["CORRAL_DOOR_TOKEN"]
META = {"io.modelcontextprotocol/protocolVersion": "2026-07-28",
        "io.modelcontextprotocol/clientCapabilities": {}}


def post(body, headers=None, method="POST", raw=None):
    sent = {"authorization": "Bearer " + TOKEN, "content-type": "application/json",
            "accept": "application/json, text/event-stream", "mcp-protocol-version": "2026-07-28"}
    sent.update(headers or {})
    sent = {k: v for k, v in sent.items() if v is not None}
    data = raw if raw is not None else (json.dumps(body).encode() if body is not None else None)
    request = urllib.request.Request(URL, data=data, headers=sent, method=method)
    try:
        with urllib.request.urlopen(request) as answer:
            text = answer.read()
            return [answer.status, json.loads(text) if text else None, answer.headers.get("mcp-session-id")]
    except urllib.error.HTTPError as error:
        text = error.read()
        return [error.code, json.loads(text) if text else None, error.headers.get("allow")]


def call(name, arguments, **headers):
    body = {"jsonrpc": "2.0", "id": 7, "method": "tools/call",
            "params": {"name": name, "arguments": arguments, "_meta": META}}
    return post(body, {"mcp-method": "tools/call", "mcp-name": name, **headers})


def run(ctx):
    listing = {"jsonrpc": "2.0", "id": 1, "method": "tools/list", "params": {"_meta": META}}
    seen = {
        "no token": post(listing, {"authorization": None, "mcp-method": "tools/list"}),
        "wrong token": post(listing, {"authorization": "Bearer corral-guess", "mcp-method": "tools/list"}),
        "get": post(None, method="GET"),
        "delete": post(None, method="DELETE"),
        "not json": post(None, raw=b"{nope", headers={"mcp-method": "tools/list"}),
        "batch": post([listing, listing], {"mcp-method": "tools/list"}),
        "too big": post(None, raw=b'{"x": "' + b"x" * 5_000_000 + b'"}'),
        "too deep": post(None, raw=b'{"jsonrpc": "2.0", "id": 1, "method": "tools/list", "params": '
                         + b"[" * 200 + b"]" * 200 + b"}"),
        "no method": post({"jsonrpc": "2.0", "id": 3}),
        "unknown method": post({"jsonrpc": "2.0", "id": 4, "method": "prompts/list", "params": {"_meta": META}},
                               {"mcp-method": "prompts/list"}),
        "header mismatch": call("add", {"a": 1, "b": 2}, **{"mcp-name": "refuse"}),
        "no routing headers": post(listing),
        "old version": post({**listing, "params": {"_meta": {**META, "io.modelcontextprotocol/protocolVersion":
                             "1999-01-01"}}}, {"mcp-method": "tools/list", "mcp-protocol-version": "1999-01-01"}),
        "notification": post({"jsonrpc": "2.0", "method": "notifications/initialized"}),
        "response": post({"jsonrpc": "2.0", "id": 9, "result": {}}),
        "origin": post(listing, {"origin": "https://evil.example", "mcp-method": "tools/list"}),
        "legacy ping": post({"jsonrpc": "2.0", "id": 5, "method": "ping"}, {"mcp-protocol-version": "2025-11-25"}),
        "legacy unknown": post({"jsonrpc": "2.0", "id": 6, "method": "resources/list"},
                               {"mcp-protocol-version": "2025-11-25"}),
        "bad params": post({"jsonrpc": "2.0", "id": 8, "method": "tools/call", "params": {"_meta": META}},
                           {"mcp-method": "tools/call"}),
        "named base64": call("add", {"a": 1, "b": 2}, **{"mcp-name": "=?base64?YWRk?="}),
    }
    seen["still works"] = call("add", {"a": 20, "b": 22})
    return seen
"""
"""Speaks to the tool door at the HTTP level with every kind of bad message, then a good one."""
