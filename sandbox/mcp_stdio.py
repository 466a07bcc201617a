"""The run's stdio MCP servers, in the agent's process and so inside its sandbox.

A server is started at the run's first use of it (its tool list, or a call), under the
agent's limits, grants and workdir, and stopped with the run (the daemon kills the
run's whole process tree at its end). The SDK's client is asynchronous and the agent's
code is not: the servers are held by one event loop on a thread of its own, and each
request waits for its answer with the server's timeout.

A server that dies is started again once in a run. A call in flight when it died (or
that outlived ``[mcp.NAME] timeout``, after which the hung server is stopped) follows
the outcome-unknown rules: a read-only or idempotent tool is called again; any other
is reported as ``outcome_unknown``, and the daemon puts the run on hold.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import os
import tempfile
import threading
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from corral.mcp.results import error, outcome
from corral.mcp.session import ServerGone, call_tool, list_tools

STDERR_TAIL = 600
"""Characters of a server's stderr quoted when it fails to start or dies."""


class ServerUnavailable(Exception):
    """A server could not be started (or not again); the message names it, its command and its stderr."""


@dataclass
class _Live:
    """A started server: its client, and what ends the task that holds it open."""

    client: Any
    stop: asyncio.Event
    holder: concurrent.futures.Future[None]


@dataclass
class _Server:
    name: str
    command: list[str]
    timeout: float
    startup_timeout: float
    max_bytes: int
    live: _Live | None = None
    deaths: int = 0
    stderr: Any = field(default=None)
    malformed: str = ""
    """What the server sent that is not JSON-RPC (it is then stopped: the stream cannot be trusted)."""


def server_environment(environ: Mapping[str, str]) -> dict[str, str]:
    """What a server is started with: the agent's environment without the model door's
    token and address and without corral's own variables. A server is someone else's
    program; it gets the agent's secrets by name ([agents.NAME] secrets), not the door."""
    from corral.sandbox.door.server import DOOR_VARIABLES

    return {k: v for k, v in environ.items() if k not in DOOR_VARIABLES and not k.startswith("CORRAL_")}


class StdioServers:
    """Every stdio server the run is granted tools of, each started at its first use."""

    def __init__(self, servers: Mapping[str, Mapping[str, Any]]) -> None:
        self._servers = {
            name: _Server(
                name,
                list(cfg["command"]),
                float(cfg["timeout"]),
                float(cfg["startup_timeout"]),
                int(cfg["max_result_kb"]) * 1024,
            )
            for name, cfg in servers.items()
        }
        self._loop: asyncio.AbstractEventLoop | None = None

    def tools(self, name: str) -> list[dict[str, Any]]:
        """The server's tools (``tools/list``), starting it if it is not running."""
        server = self._servers[name]
        for _ in range(2):
            live = self._started(server)
            try:
                return self._wait(server, list_tools(live.client), server.timeout)
            except ServerGone:
                self._died(server)
            except TimeoutError:
                self._died(server)
                raise ServerUnavailable(
                    f"MCP server {name!r} did not list its tools within {server.timeout:g}s "
                    f"([mcp.{name}] timeout); it was stopped{self._stderr(server)}"
                ) from None
        raise ServerUnavailable(
            f"MCP server {name!r} closed the connection while listing its tools{self._stderr(server)}"
        )

    def call(
        self, name: str, tool: str, args: dict[str, Any], key: str, repeatable: bool
    ) -> tuple[bool, Any, dict[str, Any] | None]:
        """Call ``tool``: ``(ok, value, error)``. ``repeatable``: the tool is read-only or
        idempotent, so a call interrupted by the server's death is made again."""
        server = self._servers[name]
        label = f"{name}.{tool}"
        what = "died during the call"
        for _ in range(2):
            try:
                live = self._started(server)
            except ServerUnavailable as exc:
                return False, None, error("unavailable", f"tool {label!r}: {exc}")
            try:
                result = self._wait(server, call_tool(live.client, tool, args, key), server.timeout)
            except TimeoutError:
                self._died(server)
                what = f"did not answer within {server.timeout:g}s ([mcp.{name}] timeout) and was stopped"
                if repeatable:
                    return False, None, error("timeout", f"tool {label!r}: MCP server {name!r} {what}")
                return False, None, self._unknown(server, label, what)
            except ServerGone:
                if server.malformed:
                    what = f"sent a malformed message ({server.malformed}) and was stopped"
                self._died(server)
                if not repeatable:
                    return False, None, self._unknown(server, label, what)
                continue  # started again (once in a run) and called again: the tool is safe to repeat
            except Exception as exc:  # noqa: BLE001 - a malformed answer, whatever the SDK raises for it
                return False, None, error("failed", f"tool {label!r}: MCP server {name!r} answered badly: {exc}")
            return outcome(result, label, name, server.max_bytes)
        return (
            False,
            None,
            error("unavailable", f"tool {label!r}: MCP server {name!r} {what}, twice{self._stderr(server)}"),
        )

    def _unknown(self, server: _Server, label: str, what: str) -> dict[str, Any]:
        return error(
            "outcome_unknown",
            f"MCP server {server.name!r} {what}; tool {label!r} is not idempotent, so whether it took effect "
            f"is unknown{self._stderr(server)}",
        )

    def close(self) -> None:
        """Stop every server (the run is over); waits a little for them to exit."""
        loop = self._loop
        if loop is None:
            return
        for server in self._servers.values():
            if server.live is not None:
                loop.call_soon_threadsafe(server.live.stop.set)
                concurrent.futures.wait([server.live.holder], timeout=2)

    def _started(self, server: _Server) -> _Live:
        if server.live is not None:
            return server.live
        if server.deaths >= 2:
            raise ServerUnavailable(
                f"MCP server {server.name!r} died twice in this run and is not started again{self._stderr(server)}"
            )
        loop = self._running_loop()
        if server.stderr is not None:
            server.stderr.close()
        server.stderr = tempfile.TemporaryFile(mode="w+", encoding="utf-8", errors="replace")  # noqa: SIM115
        ready: concurrent.futures.Future[Any] = concurrent.futures.Future()
        stop_box: list[asyncio.Event] = []
        holder = asyncio.run_coroutine_threadsafe(self._hold(server, ready, stop_box), loop)
        try:
            client = ready.result(server.startup_timeout)
        except concurrent.futures.TimeoutError:
            holder.cancel()
            server.deaths += 1
            raise ServerUnavailable(
                f"MCP server {server.name!r} ({' '.join(server.command)}) did not start within "
                f"{server.startup_timeout:g}s ([mcp.{server.name}] startup_timeout){self._stderr(server)}"
            ) from None
        except Exception as exc:  # noqa: BLE001 - the command is missing, exits at once, speaks no MCP...
            server.deaths += 1
            cause: BaseException = exc
            while isinstance(cause, BaseExceptionGroup) and cause.exceptions:
                cause = cause.exceptions[0]
            raise ServerUnavailable(
                f"MCP server {server.name!r} could not start ({' '.join(server.command)}): "
                f"{type(cause).__name__}: {cause}{self._stderr(server)}"
            ) from None
        server.live = _Live(client, stop_box[0], holder)
        return server.live

    async def _hold(
        self, server: _Server, ready: concurrent.futures.Future[Any], stop_box: list[asyncio.Event]
    ) -> None:
        """Open the server's connection, hand out its client, keep it open until told to stop."""
        from mcp import Client
        from mcp.client.stdio import StdioServerParameters, stdio_client

        stop = asyncio.Event()
        stop_box.append(stop)
        server.malformed = ""

        async def on_message(message: Any) -> None:
            if isinstance(message, Exception):  # a line that is not JSON-RPC: nothing after it can be trusted
                server.malformed = f"{type(message).__name__}: {str(message).splitlines()[0][:200]}"
                stop.set()

        program, *arguments = server.command
        params = StdioServerParameters(
            command=program, args=arguments, cwd=os.getcwd(), env=server_environment(os.environ)
        )
        try:
            transport = stdio_client(params, errlog=server.stderr)
            async with Client(transport, cache=None, message_handler=on_message) as client:
                ready.set_result(client)
                await stop.wait()
        except BaseException as exc:
            if not ready.done():
                ready.set_exception(exc if isinstance(exc, Exception) else RuntimeError(str(exc)))
            if not isinstance(exc, Exception):
                raise

    def _wait(self, server: _Server, request: Any, timeout: float) -> Any:
        future = asyncio.run_coroutine_threadsafe(request, self._running_loop())
        try:
            return future.result(timeout)
        except concurrent.futures.TimeoutError:
            future.cancel()
            raise TimeoutError from None

    def _died(self, server: _Server) -> None:
        """Forget a server that died or hung: stop what is left of it; the next use starts it again."""
        if server.live is not None:
            live, server.live = server.live, None
            self._running_loop().call_soon_threadsafe(live.stop.set)
            if not concurrent.futures.wait([live.holder], timeout=5).done:
                live.holder.cancel()
        server.deaths += 1

    def _stderr(self, server: _Server) -> str:
        if server.stderr is None:
            return ""
        server.stderr.flush()
        server.stderr.seek(0, os.SEEK_END)
        size = server.stderr.tell()
        server.stderr.seek(max(0, size - STDERR_TAIL * 4))
        tail = server.stderr.read()[-STDERR_TAIL:].strip()
        return f"; its stderr ends: {tail}" if tail else "; it wrote nothing on stderr"

    def _running_loop(self) -> asyncio.AbstractEventLoop:
        if self._loop is None:
            loop = asyncio.new_event_loop()
            threading.Thread(target=loop.run_forever, name="corral-mcp", daemon=True).start()
            self._loop = loop
        return self._loop
