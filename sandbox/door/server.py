"""The door's HTTP server: one thread in the agent's process, on a socket bound before confinement.

Each request is checked here (token, path, size, body, model) before anything is sent to
the daemon; a request that passes becomes one ``model`` step through ``ask``, which
serialises steps on the wire (the protocol is strict request and reply). stdlib
``http.server``: it is already in the sandbox, needs nothing installed, and the door's
traffic is one local client (docs/dependencies.md).

Every run serves the door, and most never call it, so what answers a route is made at the
first request that needs it (:class:`FirstUse`): a model dialect's module (named in
:data:`DIALECTS`, with what it brings: corral's model types, msgspec), the tool door and the
state and log API (made by the runtime, with the ``mcp`` SDK's types at the first ``/mcp``
message). Until then the agent's process holds this module, ``http.server`` and the errors
(:mod:`corral.sandbox.door.problems`), which need none of them.
"""

from __future__ import annotations

import hmac
import importlib
import json
import os
import socket
import sys
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from functools import partial
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from types import ModuleType
from typing import TYPE_CHECKING, Any, Generic, TypeVar

from corral.sandbox.door import API_PREFIX, MCP_PATH
from corral.sandbox.door.problems import (
    MAX_BODY_DEPTH,
    DoorError,
    anthropic_error,
    api_error,
    from_step,
    openai_error,
    shallow,
)

if TYPE_CHECKING:
    from corral.sandbox.door.api import Api
    from corral.sandbox.door.tools import ToolDoor

Ask = Callable[[str, dict[str, Any]], tuple[int, dict[str, Any]]]
"""Send one model step (model alias, args); returns (seq, the daemon's ``result`` frame)."""

HOST = "127.0.0.1"
DOOR_VARIABLES = ("OPENAI_BASE_URL", "OPENAI_API_KEY", "ANTHROPIC_BASE_URL", "ANTHROPIC_API_KEY")
"""What the door sets in the environment of an agent granted models (:meth:`Door.env`), for the
SDKs there alone."""
CORRAL_VARIABLES = ("CORRAL_DOOR_TOKEN", "CORRAL_MCP_URL", "CORRAL_API_URL")
"""What the door sets in every agent's environment: the run's token, the URL of its tools, and the
base URL of the state and log API."""
MAX_CONNECTIONS = 32
"""Connections served at once: well below a run's ``open_files`` (256 by default), so that
connections from outside the run (the host's loopback, for a network list or "all") cannot
use up the agent's descriptors (docs/models.md)."""
HEADER_SECONDS = 2.0
"""How long a connection has to deliver a request line and its headers (each request of a
kept-alive one too); the token is in the headers, so until then it may be anyone's."""


@dataclass(frozen=True)
class Dialect:
    """One API of the model door: the module that reads its requests and writes its answers
    (imported at the first request in it), how its errors look, and how its answer ids begin
    (the rest of an id is the run and the step, the same on a replay)."""

    module: str
    error: Callable[[DoorError], dict[str, Any]]
    ids: str


DIALECTS = {
    "openai": Dialect("corral.sandbox.door.chat", openai_error, "chatcmpl"),
    "anthropic": Dialect("corral.sandbox.door.messages", anthropic_error, "msg"),
    "responses": Dialect("corral.sandbox.door.responses", openai_error, "resp"),
}
"""The model door's dialects by the name their module gives itself (``NAME``)."""

T = TypeVar("T")


class FirstUse(Generic[T]):
    """What answers a route, made by ``make`` at the first request that needs it and kept.

    The door serves each connection on a thread of its own, so two first requests may come
    at once: one makes it while the other waits. A ``make`` that fails (a broken install, a
    run short of memory) is the door's 500 naming what could not be loaded and why, to that
    request and to each later one, which tries again.
    """

    def __init__(self, make: Callable[[], T], what: str) -> None:
        self._make = make
        self._what = what
        self._lock = threading.Lock()
        self._made: list[T] = []
        """Empty until made (a list: the value itself may be any object)."""

    def get(self) -> T:
        if not self._made:
            with self._lock:
                if not self._made:
                    try:
                        self._made.append(self._make())
                    except Exception as exc:  # noqa: BLE001 - told to the client, which would otherwise see a dropped connection
                        raise DoorError(
                            500,
                            f"corral's door could not load {self._what} ({type(exc).__name__}: {exc}); the request "
                            "was not sent. A broken corral install (reinstall it) or a run short of memory "
                            "(limits.address_space_mb) does this",
                        ) from exc
        return self._made[0]


def unserved_env(models: bool) -> dict[str, str]:
    """The variables a run's door sets (``models``: for an agent granted models), pointing at
    no door: ``corral check`` imports an agent's module with them, so that a client made at
    import time (``client = OpenAI()``) finds what it finds in a run."""
    return _door_env(f"http://{HOST}:9", "corral-check-no-door", models)


def _door_env(base: str, token: str, models: bool) -> dict[str, str]:
    """The door's variables for a door at ``base`` taking ``token``."""
    env = dict(zip(CORRAL_VARIABLES, (token, f"{base}{MCP_PATH}", f"{base}{API_PREFIX}"), strict=True))
    if models:
        env.update(zip(DOOR_VARIABLES, (f"{base}/v1", token, base, token), strict=True))
    return env


def listen(port: int = 0) -> socket.socket:
    """The door's listening socket. Bound before Landlock, which denies an explicit bind."""
    return socket.create_server((HOST, port), backlog=64)


class Door:
    """The endpoint of one run: its token, its granted models, and the thread serving them.

    ``tools`` makes the tool door (``/mcp``; None: ``/mcp`` is 404) and ``api`` the state and
    log API (``/corral/v1``; None: 404), each at the first request to it.
    """

    def __init__(
        self,
        listener: socket.socket,
        token: str,
        granted: list[dict[str, str]],
        ask: Ask,
        max_body: int,
        run_id: str,
        *,
        tools: Callable[[], ToolDoor] | None = None,
        api: Callable[[], Api] | None = None,
    ) -> None:
        self.token = token
        self.granted = granted
        """``{"name": alias, "model": upstream name}`` for each model the agent is granted."""
        self.ask = ask
        self.max_body = max_body
        self.run_id = run_id
        self.tools = None if tools is None else FirstUse(tools, "the tool door")
        self.api = None if api is None else FirstUse(api, "the state and log API")
        self.dialects = {
            name: FirstUse(partial(importlib.import_module, dialect.module), f"its {name} dialect")
            for name, dialect in DIALECTS.items()
        }
        server = _Server((HOST, 0), _Handler, bind_and_activate=False)
        server.socket.close()
        server.socket = listener
        server.server_address = listener.getsockname()
        server.door = self  # type: ignore[attr-defined]
        self._server = server

    @property
    def port(self) -> int:
        return int(self._server.server_address[1])

    def env(self) -> dict[str, str]:
        """What points the agent at this door: its token and tools always, and the official
        model SDKs when the agent is granted models (without, an agent keeps its own ``env``
        entries of those names)."""
        return _door_env(f"http://{HOST}:{self.port}", self.token, bool(self.granted))

    def start(self, poll_interval: float = 0.5) -> None:
        """Serve on a daemon thread (it dies with the process); ``poll_interval`` is how soon
        :meth:`stop` is noticed."""
        serve = self._server.serve_forever
        threading.Thread(target=serve, args=(poll_interval,), name="corral-door", daemon=True).start()

    def stop(self) -> None:
        """Stop serving and close the socket (a run's door ends with its process instead)."""
        self._server.shutdown()
        self._server.server_close()

    def model(self, asked: str) -> str:
        """The alias of the granted model ``asked`` names (alias, upstream name, or "default")."""
        for model in self.granted:
            if asked == model["name"]:
                return model["name"]
        for model in self.granted:
            if model["model"] and asked == model["model"]:
                return model["name"]
        if asked == "default" and self.granted:
            return self.granted[0]["name"]
        names = ", ".join(f"{m['name']} ({m['model']})" for m in self.granted) or "none"
        raise DoorError(404, f"model {asked!r} is not granted to this agent; granted models: {names}", param="model")

    def authorized(self, headers: Any) -> bool:
        offered = headers.get("x-api-key") or ""
        bearer = headers.get("authorization") or ""
        if bearer[:7].lower() == "bearer ":
            offered = offered or bearer[7:]
        return hmac.compare_digest(offered.encode(), self.token.encode())


class _Server(ThreadingHTTPServer):
    """A thread per connection, at most :data:`MAX_CONNECTIONS` of them, none waiting for its
    headers longer than :data:`HEADER_SECONDS`.

    A connection over the cap takes the place of the oldest one still waiting for its
    headers (the agent's SDK sends its own at once; idle ones are strangers or a kept-alive
    pool), or is closed when every connection is busy with a request.
    """

    daemon_threads = True

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self._lock = threading.Lock()
        self._open: dict[socket.socket, float | None] = {}
        """Each connection served: when it began waiting for headers, or None while in a request."""

    def verify_request(self, request: Any, client_address: Any) -> bool:
        with self._lock:
            if len(self._open) >= MAX_CONNECTIONS:
                waiting = [(since, conn) for conn, since in self._open.items() if since is not None]
                if not waiting:
                    return False
                self._cut(min(waiting, key=lambda pair: pair[0])[1])
            self._open[request] = time.monotonic()
        return True

    def service_actions(self) -> None:
        """Called by ``serve_forever`` at least every poll interval: cut the slow or idle."""
        late = time.monotonic() - HEADER_SECONDS
        with self._lock:
            for conn in [conn for conn, since in self._open.items() if since is not None and since < late]:
                self._cut(conn)

    def _cut(self, conn: socket.socket) -> None:
        """Wake its thread with an end of file; the thread closes it (the lock is held)."""
        del self._open[conn]
        try:
            conn.shutdown(socket.SHUT_RDWR)
        except OSError:  # already gone
            pass

    def waiting(self, conn: socket.socket, now: bool) -> None:
        """``conn`` begins waiting for a request's headers (``now``), or has them."""
        with self._lock:
            if conn in self._open:
                self._open[conn] = time.monotonic() if now else None

    def shutdown_request(self, request: Any) -> None:
        with self._lock:
            self._open.pop(request, None)
        super().shutdown_request(request)


class _Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    disable_nagle_algorithm = True  # headers and body go in two writes; Nagle would hold the second
    timeout = 60.0  # no read blocks for ever; headers have their own deadline (_Server)

    def log_message(self, format: str, *args: Any) -> None:
        """No access log: the agent's stderr is its log, and a request line is the agent's business."""

    @property
    def door(self) -> Door:
        return self.server.door  # type: ignore[attr-defined]

    def handle_one_request(self) -> None:
        self.server.waiting(self.connection, True)  # type: ignore[attr-defined]
        super().handle_one_request()

    def parse_request(self) -> bool:
        parsed = super().parse_request()  # reads the headers
        self.server.waiting(self.connection, False)  # type: ignore[attr-defined]
        return parsed

    def send_response(self, code: int, message: str | None = None) -> None:
        """No ``Server`` header: one naming corral would tell a port scan which ports are doors."""
        self.send_response_only(code, message)
        self.send_header("date", self.date_time_string())

    def _dialect(self) -> str:
        """The name of the API a request to the model door speaks (:data:`DIALECTS`)."""
        path = self.path.split("?", 1)[0]
        if path.startswith("/v1/responses"):
            return "responses"
        return "anthropic" if path.startswith("/v1/messages") or "anthropic-version" in self.headers else "openai"

    def do_GET(self) -> None:
        if self._is_mcp():
            self._mcp_other()
            return
        if self._corral("GET"):
            return
        name = self._dialect()
        try:
            self._check_token()
            if self.path.split("?", 1)[0].rstrip("/") != "/v1/models":
                raise DoorError(404, f"no such path on corral's model door: GET {self.path}")
            listed = self.door.dialects[name].get().models(self.door.granted)
        except DoorError as problem:
            self._error(name, problem)
            return
        self._json(200, listed)

    def do_PUT(self) -> None:
        if not self._corral("PUT"):
            self._discard()
            self._error("openai", DoorError(404, f"no such path on corral's model door: PUT {self.path}"))

    def do_DELETE(self) -> None:
        if self._is_mcp():
            self._mcp_other()
        elif not self._corral("DELETE"):
            self._discard()
            self._error("openai", DoorError(404, f"no such path on corral's model door: DELETE {self.path}"))

    def do_POST(self) -> None:
        if self._is_mcp():
            self._mcp()
            return
        if self._corral("POST"):
            return
        name = self._dialect()
        try:
            self._check_token()
            path = self.path.split("?", 1)[0].rstrip("/")
            if path not in ("/v1/chat/completions", "/v1/messages", "/v1/responses"):
                self._discard()
                raise DoorError(404, f"no such path on corral's model door: POST {self.path}")
            self._post(name)
        except DoorError as problem:
            self._error(name, problem)

    def _corral(self, method: str) -> bool:
        """Answer a request to the state and log API (:mod:`corral.sandbox.door.api`), if it is one."""
        path = self.path.split("?", 1)[0]
        if self.door.api is None or not (path == API_PREFIX or path.startswith(f"{API_PREFIX}/")):
            return False
        read = False

        def body() -> bytes:
            nonlocal read
            read = True
            return self._raw_body()

        try:
            if not self.door.authorized(self.headers):
                raise DoorError(401, "missing or wrong token: send Authorization: Bearer $CORRAL_DOOR_TOKEN")
            status, answer, headers = self.door.api.get().answer(method, self.path, body)
        except DoorError as problem:
            status, answer, headers = problem.status, api_error(problem), {}
        if not read and self.headers.get("content-length", "0") != "0":
            self._discard()
        self._json(status, answer, headers)
        return True

    def _is_mcp(self) -> bool:
        return self.door.tools is not None and self.path.split("?", 1)[0].rstrip("/") == MCP_PATH

    def _mcp(self) -> None:
        """One MCP message: checked here for token, origin and size, answered by the tool door."""
        tools = self.door.tools
        assert tools is not None
        if self._mcp_refused():
            return
        length = self._length()
        if length is None:
            self._discard()
            self._json(400, _rpc_error(-32600, "send the message with a Content-Length"))
        elif length > self.door.max_body:
            self._drain(length)
            message = f"the message is {length} bytes, over the door's limit of {self.door.max_body}"
            self._json(413, _rpc_error(-32600, message))
        else:
            body = self.rfile.read(length)
            try:
                reply = tools.get().answer(body, self.headers)
            except DoorError as problem:
                self._json(problem.status, _rpc_error(-32603, problem.message))
                return
            payload = b"" if reply.body is None else json.dumps(reply.body, ensure_ascii=False).encode()
            self._send(reply.status, payload, "application/json", reply.headers)

    def _mcp_other(self) -> None:
        """GET and DELETE on ``/mcp``: the door offers no server-initiated stream and no session
        to end, and says so as the spec allows (405)."""
        self._discard()
        if not self._mcp_refused():
            self._json(405, _rpc_error(-32600, "the tool door takes POST only"), {"allow": "POST"})

    def _mcp_refused(self) -> bool:
        """Answer 401 without the run's token, 403 for a browser page's origin; whether it did."""
        from urllib.parse import urlsplit

        if not self.door.authorized(self.headers):
            self._discard()
            message = "missing or wrong token: send Authorization: Bearer $CORRAL_DOOR_TOKEN"
            self._json(401, _rpc_error(-32600, message), {"www-authenticate": "Bearer"})
            return True
        origin = self.headers.get("origin")
        if origin is not None and urlsplit(origin).hostname not in ("127.0.0.1", "localhost"):
            self._discard()
            self._json(403, _rpc_error(-32600, f"origin {origin!r} may not use the tool door"))
            return True
        return False

    def _length(self) -> int | None:
        length = self.headers.get("content-length")
        return int(length) if length is not None and length.isdigit() else None

    def _check_token(self) -> None:
        if not self.door.authorized(self.headers):
            self._discard()
            raise DoorError(401, "missing or wrong API key: use the OPENAI_API_KEY / ANTHROPIC_API_KEY corral set")

    def _discard(self) -> None:
        """An unread body would be taken for the next request on this connection."""
        self.close_connection = True

    def _drain(self, length: int) -> None:
        """Read an oversized body away so that the client, still sending, gets the 413 and not a
        broken pipe; one far too big to read is cut off instead."""
        if length > 4 * self.door.max_body:
            self._discard()
            return
        while length > 0:
            chunk = self.rfile.read(min(length, 1 << 16))
            if not chunk:
                break
            length -= len(chunk)

    def _body(self) -> Any:
        raw = self._raw_body()
        try:
            return shallow(json.loads(raw))
        except RecursionError:
            raise DoorError(400, f"the request body nests deeper than {MAX_BODY_DEPTH} levels") from None
        except ValueError as exc:
            raise DoorError(400, f"the request body is not valid JSON: {exc}") from None

    def _raw_body(self) -> bytes:
        length = self.headers.get("content-length")
        if length is None or not length.isdigit():
            self._discard()
            raise DoorError(400, "send the request body with a Content-Length")
        if int(length) > self.door.max_body:
            self._drain(int(length))
            raise DoorError(413, f"the request body is {length} bytes, over the door's limit of {self.door.max_body}")
        return self.rfile.read(int(length))

    def _post(self, name: str) -> None:
        body = self._body()
        dialect: ModuleType = self.door.dialects[name].get()
        asked = dialect.parse(body)
        alias = self.door.model(asked.model)
        try:
            seq, reply = self.door.ask(alias, asked.args)
        except (TypeError, ValueError, OverflowError) as exc:  # nothing was sent: the wire packs first
            raise DoorError(400, f"the request cannot be journaled ({exc}); integers must fit in 64 bits") from None
        if not reply["ok"]:
            raise from_step(reply.get("error") or {}, overloaded=dialect.OVERLOADED)
        ident = f"{DIALECTS[name].ids}_{self.door.run_id}_{seq}"
        extra = {"x-corral-step": str(seq), "x-corral-replayed": "true" if reply.get("replayed") else "false"}
        if asked.stream:
            payload = b"".join(dialect.stream(reply["value"], asked, ident))
            self._send(200, payload, "text/event-stream", extra)
        else:
            self._json(200, dialect.answer(reply["value"], asked, ident), extra)

    def _error(self, name: str, problem: DoorError) -> None:
        headers = {"x-should-retry": "true" if problem.retry else "false"}
        if problem.retry_after is not None:
            headers["retry-after"] = str(max(0, round(problem.retry_after)))
        self._json(problem.status, DIALECTS[name].error(problem), headers)

    def _json(self, status: int, body: dict[str, Any], headers: dict[str, str] | None = None) -> None:
        self._send(status, json.dumps(body, ensure_ascii=False).encode(), "application/json", headers)

    def _send(self, status: int, payload: bytes, kind: str, headers: dict[str, str] | None = None) -> None:
        try:
            self.send_response(status)
            self.send_header("content-type", kind)
            self.send_header("content-length", str(len(payload)))
            for name, value in (headers or {}).items():
                self.send_header(name, value)
            self.end_headers()
            self.wfile.write(payload)
        except OSError:  # the client went away; the step, if any, is journaled all the same
            self.close_connection = True


def _rpc_error(code: int, message: str) -> dict[str, Any]:
    """A JSON-RPC error answering a message the door did not read (no id)."""
    return {"jsonrpc": "2.0", "id": None, "error": {"code": code, "message": message}}


def ended() -> None:
    """The daemon ended the run while the door waited for an answer: leave as the runtime does."""
    sys.stdout.flush()
    sys.stderr.flush()
    os._exit(0)
