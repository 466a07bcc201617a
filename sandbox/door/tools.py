"""The tool door: the run's granted tools as an MCP server, Streamable HTTP at ``POST /mcp``.

One JSON-RPC message a POST, answered with one ``application/json`` body (the spec allows
it; nothing here streams). Both eras of the protocol are served on the same endpoint, as
the 2026-07-28 specification lets a dual-era server do: a request whose ``_meta`` carries
a protocol version is served statelessly by that revision (``server/discover``, the
header checks, ``resultType``, ``ttlMs``); ``initialize`` and what follows it by the
handshake revisions (2024-11-05 to 2025-11-25). The door serves one run and keeps no
session: it never issues ``Mcp-Session-Id``, and GET and DELETE are 405.

Messages are parsed and results built with the ``mcp`` SDK's own types (``mcp_types``,
the package ``mcp.types`` mirrors, without the SDK's transports), imported at the first
request to ``/mcp``: a run that never uses the door pays nothing for them.

``tools/call`` is ``ctx.tool``: the runtime's ``call`` sends the same step, which the
daemon validates, guards, journals and may hold for approval. A refusal or a failure is a
result with ``isError`` the model can read; only a malformed message is a JSON-RPC error.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from dataclasses import dataclass, field
from email.message import Message
from typing import Any

from corral.errors import ToolCallError
from corral.sandbox.door.problems import MAX_BODY_DEPTH, DoorError, shallow

LIST_TTL_MS = 3_600_000
"""How long a client may keep ``tools/list``: the run's tools do not change while it lives."""
_PARSE_ERROR, _INVALID_REQUEST, _METHOD_NOT_FOUND, _INVALID_PARAMS = -32700, -32600, -32601, -32602
_INTERNAL_ERROR, _HEADER_MISMATCH, _UNSUPPORTED_VERSION = -32603, -32020, -32022
_NAMED = {"tools/call": "name"}
"""Methods whose ``params`` field the ``Mcp-Name`` header mirrors (those the door serves)."""
_ROUTING = ("mcp-protocol-version", "mcp-method", "mcp-name")


@dataclass(frozen=True)
class Listed:
    """One tool as the door lists it."""

    name: str
    """The name listed and called: corral's own, or an alias a model API accepts (``git__git_log``)."""
    tool: str
    """corral's name, which the step carries (``git.git_log``)."""
    description: str
    schema: dict[str, Any]
    hints: dict[str, bool] = field(default_factory=dict)
    """MCP annotations in their wire names (``readOnlyHint``...): only what corral knows."""


Catalogue = Callable[[], list[Listed]]
"""The run's granted tools, in a stable order (an MCP server's read at the first ask)."""
Call = Callable[[str, dict[str, Any]], Any]
"""``ctx.tool``'s step for a door request: corral's name, arguments -> the value; raises
:class:`ToolCallError` for a refusal or a failure."""


@dataclass
class RpcReply:
    """What the HTTP server sends: a status, a JSON body (None: none), extra headers."""

    status: int
    body: dict[str, Any] | None = None
    headers: dict[str, str] = field(default_factory=dict)


class _Rpc(Exception):
    """A JSON-RPC error to answer with (and the HTTP status it goes with)."""

    def __init__(self, code: int, message: str, status: int, data: Any = None) -> None:
        super().__init__(message)
        self.code, self.message, self.status, self.data = code, message, status, data


class ToolDoor:
    """The MCP endpoint of one run."""

    def __init__(self, catalogue: Catalogue, call: Call, version: str) -> None:
        self._catalogue = catalogue
        self._call = call
        self.version = version
        """corral's version, the ``serverInfo`` version."""

    def answer(self, raw: bytes, headers: Message) -> RpcReply:
        """The reply to one POST body; never raises for anything the client sent."""
        ident: Any = None
        try:
            body = _parse(raw)
            ident = body.get("id") if isinstance(body, dict) else None
            return self._message(body, headers)
        except _Rpc as rpc:
            problem = rpc
        except Exception as exc:  # a fault of the door's own: the client reads it, the run goes on
            problem = _Rpc(_INTERNAL_ERROR, f"the tool door failed: {type(exc).__name__}: {exc}"[:2000], 500)
        error = {"code": problem.code, "message": problem.message}
        if problem.data is not None:
            error["data"] = problem.data
        valid = isinstance(ident, str) or (isinstance(ident, int) and not isinstance(ident, bool))
        return RpcReply(problem.status, {"jsonrpc": "2.0", "id": ident if valid else None, "error": error})

    def _message(self, body: Any, headers: Message) -> RpcReply:
        from mcp_types import JSONRPCNotification, JSONRPCRequest
        from pydantic import ValidationError

        if isinstance(body, list):
            raise _Rpc(_INVALID_REQUEST, "a batch is not accepted: send one JSON-RPC message per POST", 400)
        if not isinstance(body, dict) or "method" not in body:
            if isinstance(body, dict) and ("result" in body or "error" in body):
                raise _Rpc(_INVALID_REQUEST, "the door sends no requests, so it takes no responses", 400)
            raise _Rpc(_INVALID_REQUEST, 'a JSON-RPC message is an object with "jsonrpc": "2.0" and a "method"', 400)
        kind = JSONRPCRequest if "id" in body else JSONRPCNotification
        try:
            message = kind.model_validate(body)
        except ValidationError as exc:
            raise _Rpc(_INVALID_REQUEST, f"not a JSON-RPC 2.0 message: {_first(exc)}", 400) from None
        if isinstance(message, JSONRPCNotification):
            return RpcReply(202)  # initialized, cancelled...: the door has nothing to do with them
        params = message.params or {}
        meta = params.get("_meta")
        header = headers.get("mcp-protocol-version")
        modern = message.method != "initialize" and (
            (isinstance(meta, dict) and _key("PROTOCOL_VERSION_META_KEY") in meta) or header in _modern()
        )
        if modern:
            version = self._modern(message.method, params, headers)
        else:
            version = _handshake(message.method, params, header)
        try:
            result = self._result(message.method, version, params)
        except _Rpc as problem:
            if not modern:
                problem.status = 200 if problem.code in (_METHOD_NOT_FOUND, _INVALID_PARAMS) else problem.status
            raise
        return RpcReply(200, {"jsonrpc": "2.0", "id": message.id, "result": result})

    def _modern(self, method: str, params: dict[str, Any], headers: Message) -> str:
        """The version a 2026-07-28-era request is served at, after the spec's checks in its
        order: the ``_meta`` pair, the headers against the body, the version itself."""
        meta = params.get("_meta")
        wanted = (_key("PROTOCOL_VERSION_META_KEY"), _key("CLIENT_CAPABILITIES_META_KEY"))
        missing = [key for key in wanted if not isinstance(meta, dict) or key not in meta]
        if missing:
            raise _Rpc(_INVALID_PARAMS, f"params._meta must carry {' and '.join(missing)}", 400)
        assert isinstance(meta, dict)
        version = meta[wanted[0]]
        for name in _ROUTING:
            if len(headers.get_all(name) or ()) > 1:
                raise _Rpc(_HEADER_MISMATCH, f"header {name} is sent more than once", 400)
        expected = {"mcp-protocol-version": version, "mcp-method": method}
        if method in _NAMED and params.get(_NAMED[method]) is not None:  # absent: the params' check says so
            expected["mcp-name"] = params[_NAMED[method]]
        for name, value in expected.items():
            sent = headers.get(name)
            if name == "mcp-name" and sent is not None:
                sent = _decoded(sent)
            if sent is None:
                raise _Rpc(_HEADER_MISMATCH, f"header {name} is required (it must be {value!r})", 400)
            if sent != value:
                raise _Rpc(_HEADER_MISMATCH, f"header {name} is {sent!r}, the body says {value!r}", 400)
        if not isinstance(version, str):
            raise _Rpc(_INVALID_PARAMS, "params._meta: the protocol version must be a string", 400)
        if version not in _modern():
            supported = _supported()
            data = {"supported": supported, "requested": version}
            raise _Rpc(
                _UNSUPPORTED_VERSION, f"protocol version {version!r} is not served; use one of {supported}", 400, data
            )
        return version

    def _result(self, method: str, version: str, params: dict[str, Any]) -> dict[str, Any]:
        """The result of ``method``, parsed and built with the SDK's types at ``version``."""
        import mcp_types as types
        from mcp_types import methods
        from pydantic import ValidationError

        if method not in ("initialize", "ping", "server/discover", "tools/list", "tools/call"):
            raise _Rpc(_METHOD_NOT_FOUND, f"method {method!r} is not served by corral's tool door", 404)
        try:
            request = methods.parse_client_request(method, version, params or None)
        except KeyError:
            raise _Rpc(_METHOD_NOT_FOUND, f"method {method!r} is not part of MCP {version}", 404) from None
        except ValidationError as exc:
            raise _Rpc(_INVALID_PARAMS, f"{method}: {_first(exc)}", 400) from None
        capabilities = types.ServerCapabilities(tools=types.ToolsCapability(list_changed=False))
        server = types.Implementation(name="corral", title="corral tool door", version=self.version)
        meta = {_key("SERVER_INFO_META_KEY"): server.model_dump(by_alias=True, mode="json", exclude_none=True)}
        result: Any
        if method == "initialize":
            result = types.InitializeResult(protocol_version=version, capabilities=capabilities, server_info=server)
        elif method == "ping":
            result = types.EmptyResult()
        elif method == "server/discover":
            result = types.DiscoverResult(supported_versions=_supported(), capabilities=capabilities)
        elif method == "tools/list":
            if request.params is not None and request.params.cursor is not None:
                raise _Rpc(_INVALID_PARAMS, "tools/list: the door lists every tool at once and gave no cursor", 400)
            tools = [
                types.Tool(
                    name=tool.name,
                    description=tool.description,
                    input_schema=tool.schema,
                    annotations=types.ToolAnnotations.model_validate(tool.hints) if tool.hints else None,
                )
                for tool in self._listed()
            ]
            result = types.ListToolsResult(tools=tools, ttl_ms=LIST_TTL_MS, cache_scope="private")
        else:
            result = self._tools_call(request.params, version in _modern())
        if method != "initialize" and method != "ping":
            result.meta = {**meta, **(result.meta or {})}
        data = result.model_dump(by_alias=True, mode="json", exclude_none=True)
        return dict(methods.serialize_server_result(method, version, data))

    def _listed(self) -> list[Listed]:
        try:
            return self._catalogue()
        except ToolCallError as exc:  # the turn on the wire did not come (a tool runs)
            raise _Rpc(_INTERNAL_ERROR, str(exc), 503) from None

    def _tools_call(self, params: Any, modern: bool) -> Any:
        """``ctx.tool`` for the named tool: its value, or its refusal as ``isError``."""
        import mcp_types as types

        try:
            names = {tool.name: tool.tool for tool in self._catalogue()}
            name = names.get(params.name, params.name)  # an unlisted name goes to the daemon, which refuses it
            value = self._call(name, dict(params.arguments or {}))
        except ToolCallError as exc:
            refused: list[types.ContentBlock] = [types.TextContent(text=str(exc))]
            return types.CallToolResult(content=refused, is_error=True, _meta={"io.corral/error-kind": exc.kind})
        text = value if isinstance(value, str) else json.dumps(value, ensure_ascii=False)
        structured = None if isinstance(value, str) else value
        if not modern and not isinstance(structured, dict):
            structured = None  # before 2026-07-28 structuredContent is an object or absent
        content: list[types.ContentBlock] = [types.TextContent(text=text)]
        return types.CallToolResult(content=content, structured_content=structured)


_HINTS = ("readOnlyHint", "destructiveHint", "idempotentHint", "openWorldHint")


def listed(plugin_tools: dict[str, dict[str, Any]], server_tools: list[tuple[str, dict[str, Any]]]) -> list[Listed]:
    """The door's list: each plugin tool of the welcome (its ``listed`` entry: what the
    daemon validates against), then each granted tool of the run's MCP servers (``server``,
    its entry of the journaled ``tools/list``), the dotted names aliased as model APIs
    need (:func:`corral.models.toolnames.accepted`)."""
    from corral.models.toolnames import accepted

    found: list[tuple[str, str, dict[str, Any], dict[str, bool]]] = []
    for name, info in sorted(plugin_tools.items()):
        shown = info.get("listed")
        if not shown:
            continue
        hints = {"readOnlyHint": True} if shown.get("read_only") else {}
        if shown.get("idempotent"):
            hints["idempotentHint"] = True
        if shown.get("high_stakes") and not shown.get("read_only"):
            hints["destructiveHint"] = True
        found.append((name, str(shown.get("description") or ""), shown["parameters"], hints))
    for server, tool in server_tools:
        given = tool.get("annotations") or {}
        hints = {key: given[key] for key in _HINTS if isinstance(given.get(key), bool)}
        found.append((f"{server}.{tool['name']}", str(tool.get("description") or ""), tool["inputSchema"], hints))
    aliases = accepted(name for name, *_ in found)
    return [Listed(aliases.get(name, name), name, text, schema, hints) for name, text, schema, hints in found]


def _parse(raw: bytes) -> Any:
    try:
        return shallow(json.loads(raw))
    except RecursionError:
        raise _Rpc(_INVALID_REQUEST, f"the message nests deeper than {MAX_BODY_DEPTH} levels", 400) from None
    except DoorError as problem:
        raise _Rpc(_INVALID_REQUEST, problem.message, 400) from None
    except ValueError as exc:
        raise _Rpc(_PARSE_ERROR, f"the body is not valid JSON: {exc}", 400) from None


def _handshake(method: str, params: dict[str, Any], header: str | None) -> str:
    """The version a handshake-era request is served at: for ``initialize`` the client's
    if the door speaks it, else the newest; after it, the ``MCP-Protocol-Version`` header
    (absent: 2025-03-26, the spec's rule for clients older than the header)."""
    from mcp_types.version import HANDSHAKE_PROTOCOL_VERSIONS, LATEST_HANDSHAKE_VERSION

    if method == "initialize":
        asked = params.get("protocolVersion")
        return asked if asked in HANDSHAKE_PROTOCOL_VERSIONS else LATEST_HANDSHAKE_VERSION
    if header is None:
        return "2025-03-26"
    if header not in HANDSHAKE_PROTOCOL_VERSIONS:
        raise _Rpc(_INVALID_REQUEST, f"MCP-Protocol-Version {header!r} is not served; use one of {_supported()}", 400)
    return header


def _modern() -> tuple[str, ...]:
    from mcp_types.version import MODERN_PROTOCOL_VERSIONS

    return MODERN_PROTOCOL_VERSIONS


def _supported() -> list[str]:
    """Every version the door serves, newest first."""
    from mcp_types.version import HANDSHAKE_PROTOCOL_VERSIONS, MODERN_PROTOCOL_VERSIONS

    return [*reversed(MODERN_PROTOCOL_VERSIONS), *reversed(HANDSHAKE_PROTOCOL_VERSIONS)]


def _key(name: str) -> str:
    """One of the spec's reserved ``_meta`` keys, by its ``mcp_types`` constant's name."""
    import mcp_types

    return str(getattr(mcp_types, name))


def _decoded(value: str) -> str | None:
    """A header value, its ``=?base64?...?=`` form decoded (None when that form is broken)."""
    import base64
    import binascii

    if not (value.startswith("=?base64?") and value.endswith("?=")):
        return value
    try:
        return base64.b64decode(value[9:-2], validate=True).decode()
    except (binascii.Error, UnicodeDecodeError):
        return None


def _first(exc: Any) -> str:
    """A pydantic error as one line naming the field: ``params.name: Field required``."""
    errors = exc.errors()
    if not errors:
        return str(exc)
    where = ".".join(str(part) for part in errors[0]["loc"])
    more = f" (and {len(errors) - 1} more)" if len(errors) > 1 else ""
    return f"{where}: {errors[0]['msg']}{more}" if where else f"{errors[0]['msg']}{more}"
