"""Agents that use their run's tool door (``$CORRAL_MCP_URL``) with MCP clients, and the
plugin whose tools they call. Each returns what it saw."""

TOOLS_PLUGIN = '''
import json, os, pathlib, time, urllib.request

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


@corral.tool(read_only=True)
def slow(label: str) -> list:
    """Take 0.3 s; say when it began and ended.

    :param label: which call this is
    """
    began = time.monotonic()
    time.sleep(0.3)
    return [label, began, time.monotonic()]


@corral.tool
def nested() -> dict:
    """Call the tool door from inside a tool: what a tool must not do."""
    body = {"jsonrpc": "2.0", "id": 1, "method": "tools/call", "params": {"name": "add", "arguments": {"a": 1, "b": 1},
            "_meta": {"io.modelcontextprotocol/protocolVersion": "2026-07-28",
                      "io.modelcontextprotocol/clientCapabilities": {}}}}
    headers = {"authorization": "Bearer " + os.environ["CORRAL_DOOR_TOKEN"], "content-type": "application/json",
               "mcp-protocol-version": "2026-07-28", "mcp-method": "tools/call", "mcp-name": "add"}
    request = urllib.request.Request(os.environ["CORRAL_MCP_URL"], json.dumps(body).encode(), headers)
    began = time.monotonic()
    with urllib.request.urlopen(request, timeout=30) as answer:
        result = json.loads(answer.read())["result"]
    return {"result": result, "seconds": time.monotonic() - began}


@corral.tool
def note(text: str) -> str:
    """Write a line to notes.txt in the workdir.

    :param text: the line
    """
    with pathlib.Path("notes.txt").open("a") as f:
        f.write(text + "\\n")
    return f"noted {text}"


@corral.tool(read_only=True)
def pause() -> str:
    """Wait until the file go exists in the workdir (saying so in paused)."""
    pathlib.Path("paused").touch()
    while not pathlib.Path("go").exists():
        time.sleep(0.05)
    return "went on"


@corral.hookimpl
def corral_register_tools(register):
    for tool in (add, refuse, launch, slow, nested, note, pause):
        register(tool)
'''

CLIENT = """
import asyncio, os

import httpx2
from mcp import Client
from mcp.client.streamable_http import streamable_http_client


def plain(result):
    return {"error": result.is_error, "text": [c.text for c in result.content],
            "structured": result.structured_content, "kind": (result.meta or {}).get("io.corral/error-kind")}


async def connected(mode, work):
    headers = {"authorization": "Bearer " + os.environ["CORRAL_DOOR_TOKEN"]}
    async with httpx2.AsyncClient(headers=headers, timeout=120) as http:
        transport = streamable_http_client(os.environ["CORRAL_MCP_URL"], http_client=http)
        async with Client(transport, mode=mode, cache=None) as client:
            return await work(client)
"""
"""What the agents below share: a connection through the ``mcp`` SDK's Streamable HTTP
client with the run's token, and a call's result as plain JSON."""

SDK_CLIENT = (
    CLIENT
    + """

async def session(mode, calls):
    async def work(client):
        seen = {"version": getattr(client.session, "protocol_version", None)}
        listed = await client.list_tools()
        seen["tools"] = {t.name: {"description": t.description, "schema": t.input_schema,
                                  "hints": t.annotations.model_dump(by_alias=True, exclude_none=True)
                                  if t.annotations else {}} for t in listed.tools}
        for label, (name, args) in calls.items():
            seen[label] = plain(await client.call_tool(name, args))
        return seen

    return await connected(mode, work)


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
)
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
        "huge arguments": call("refuse", {"reason": "x" * 1_500_000}),
    }
    seen["still works"] = call("add", {"a": 20, "b": 22})
    return seen
"""
"""Speaks to the tool door at the HTTP level with every kind of bad message, then a good one."""

LAUNCHER = (
    CLIENT
    + """

def run(ctx):
    return asyncio.run(connected("auto", lambda client: launch(client, ctx.input)))


async def launch(client, target):
    return plain(await client.call_tool("launch", {"target": target}))
"""
)
"""Calls the high-stakes ``launch`` through the door, which needs a human's approval."""

TAKING_TURNS = (
    CLIENT
    + """

def run(ctx):
    async def work(client):
        calls = [client.call_tool("slow", {"label": label}) for label in ("a", "b", "c")]
        return [plain(result) for result in await asyncio.gather(*calls)]

    parallel = asyncio.run(connected("auto", work))
    nested = ctx.tool("nested")
    return {"parallel": parallel, "nested": nested}
"""
)
"""Three calls at once from one async client, then a tool (run by ``ctx.tool``) that calls
the door itself."""

AGENTS_SDK_MCP = """
import asyncio, os

from agents import Agent, Runner, set_tracing_disabled
from agents.mcp import MCPServerStreamableHttp

set_tracing_disabled(True)  # corral traces the run; the SDK's exporter would call api.openai.com


def run(ctx):
    async def main():
        params = {"url": os.environ["CORRAL_MCP_URL"],
                  "headers": {"Authorization": "Bearer " + os.environ["CORRAL_DOOR_TOKEN"]}}
        async with MCPServerStreamableHttp(params=params, client_session_timeout_seconds=60) as corral_tools:
            clerk = Agent(name="Clerk", instructions="Note what you are told.", mcp_servers=[corral_tools],
                          model="fake")
            result = await Runner.run(clerk, "Note first, then pause.")
            return result.final_output

    return asyncio.run(main())
"""
"""An OpenAI Agents SDK agent whose tools are the run's corral tools, through its own MCP
client (``MCPServerStreamableHttp``), and whose model is the model door."""
