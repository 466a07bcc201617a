"""The webhook listener: one HTTP server on 127.0.0.1 serving every webhook trigger.

The scheduler owns it and hands it to each event trigger (``TriggerEnv.webhooks``); a
trigger that takes HTTP requests (the built-in ``webhook`` kind is
:mod:`corral.plugins.triggers.webhook`) adds a route: a path and a secret token. A
request is checked in this order, and refused at the first failure without reading
further: ``POST`` (405), a known path (404), the token in ``Authorization: Bearer
TOKEN`` or ``X-Corral-Token`` compared in constant time (401), the declared and then the
actual body size against the trigger's limit (413), a JSON body (400). A good call
answers ``202 {"run": ID}``, or ``200 {"skipped": REASON}`` when the agent is paused or
busy. HTTP parsing is h11's; a token is a :class:`~corral.secrets.Secret`, revealed only
to compare it, and never reaches a log line or a reply.
"""

from __future__ import annotations

import asyncio
import hmac
import json
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Any

import h11

from corral.jsoninput import parse_input
from corral.secrets import Secret

READ_TIMEOUT = 10.0
MAX_HEADERS = 16 * 1024
Handler = Callable[[Any], Awaitable[dict[str, Any]]]


@dataclass(frozen=True)
class Route:
    token: Secret
    max_bytes: int
    handler: Handler
    agent: str


class Refused(Exception):
    def __init__(self, status: int, message: str) -> None:
        super().__init__(message)
        self.status = status


class WebhookServer:
    """Routes ``POST /path`` to the trigger that owns the path."""

    def __init__(self, port: int, log: Any, host: str = "127.0.0.1") -> None:
        self.host = host
        self.requested_port = port
        self.log = log
        self.routes: dict[str, Route] = {}
        self._server: asyncio.Server | None = None

    @property
    def port(self) -> int:
        """The bound port (the requested one, or the one picked for port 0)."""
        assert self._server is not None, "the webhook server is not started"
        return int(self._server.sockets[0].getsockname()[1])

    def add(self, path: str, token: Secret, max_bytes: int, handler: Handler, agent: str) -> None:
        if path in self.routes:
            raise ValueError(f"webhook path {path} is already taken by agent {self.routes[path].agent}")
        self.routes[path] = Route(token, max_bytes, handler, agent)

    def remove(self, path: str) -> None:
        self.routes.pop(path, None)

    async def start(self) -> None:
        self._server = await asyncio.start_server(self._client, self.host, self.requested_port)
        self.log.info("webhook listener started", host=self.host, port=self.port)

    async def stop(self) -> None:
        if self._server is not None:
            self._server.close()
            await self._server.wait_closed()
            self._server = None

    async def _client(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        conn = h11.Connection(h11.SERVER, max_incomplete_event_size=MAX_HEADERS)
        try:
            status, body = await asyncio.wait_for(self._serve(conn, reader, writer), READ_TIMEOUT)
        except Refused as exc:
            status, body = exc.status, {"error": str(exc)}
        except (h11.RemoteProtocolError, ValueError) as exc:  # not JSON, not UTF-8, not storable, too deep
            status, body = 400, {"error": f"bad request: {exc}"}
        except TimeoutError:
            status, body = 408, {"error": f"the request was not complete within {READ_TIMEOUT:g}s"}
        except ConnectionError:
            writer.close()
            return
        if status >= 400:
            peer = writer.get_extra_info("peername")
            self.log.warning("webhook refused", status=status, reason=body.get("error"), peer=str(peer))
        try:
            if conn.our_state in (h11.IDLE, h11.SEND_RESPONSE):
                data = json.dumps(body).encode()
                headers = [("content-type", "application/json"), ("content-length", str(len(data)))]
                headers.append(("connection", "close"))
                writer.write(conn.send(h11.Response(status_code=status, headers=headers)) or b"")
                writer.write(conn.send(h11.Data(data=data)) or b"")
                writer.write(conn.send(h11.EndOfMessage()) or b"")
                await writer.drain()
        except (ConnectionError, h11.LocalProtocolError):
            pass
        finally:
            writer.close()

    async def _next(self, conn: h11.Connection, reader: asyncio.StreamReader) -> Any:
        while True:
            event = conn.next_event()
            if event is not h11.NEED_DATA:
                return event
            conn.receive_data(await reader.read(65536))

    async def _serve(
        self, conn: h11.Connection, reader: asyncio.StreamReader, writer: asyncio.StreamWriter
    ) -> tuple[int, dict[str, Any]]:
        request = await self._next(conn, reader)
        if not isinstance(request, h11.Request):
            raise Refused(400, "expected an HTTP request")
        if request.method != b"POST":
            raise Refused(405, "webhooks take POST")
        path = request.target.decode("ascii", "replace").split("?", 1)[0]
        route = self.routes.get(path)
        if route is None:
            raise Refused(404, f"no webhook trigger at {path}")
        headers = {name.lower(): value for name, value in request.headers}
        given = headers.get(b"x-corral-token", b"")
        auth = headers.get(b"authorization", b"")
        if auth[:7].lower() == b"bearer ":
            given = auth[7:].strip()
        if not hmac.compare_digest(given, route.token.reveal().encode()):
            raise Refused(401, "missing or wrong token")
        declared = headers.get(b"content-length")
        if declared is not None and declared.isdigit() and int(declared) > route.max_bytes:
            raise Refused(413, f"payload of {int(declared)} bytes is over this trigger's limit of {route.max_bytes}")
        if conn.they_are_waiting_for_100_continue:
            writer.write(conn.send(h11.InformationalResponse(status_code=100, headers=[])) or b"")
        body = bytearray()
        while True:
            event = await self._next(conn, reader)
            if isinstance(event, h11.Data):
                body += event.data
                if len(body) > route.max_bytes:
                    raise Refused(413, f"payload is over this trigger's limit of {route.max_bytes} bytes")
            elif isinstance(event, h11.EndOfMessage):
                break
            else:
                raise Refused(400, "the request ended before its body")
        payload = parse_input(bytes(body)) if body.strip() else None  # as strict as any other run input
        result = await route.handler(payload)
        return (202 if "run" in result else 200), result
