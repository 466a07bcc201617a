"""The daemon's control socket: a Unix socket of mode 0600 speaking JSON lines.

One request per connection: the client writes one JSON object and a newline; the
daemon answers with one or more JSON lines (``run --wait`` sends the queued run, then
the finished one) and closes. Only the daemon's own user (or root) may connect: the
file mode keeps others out, and on Linux the peer's uid is checked as well.
"""

from __future__ import annotations

import asyncio
import json
import os
import socket
import struct
from collections.abc import Awaitable, Callable, Iterator
from pathlib import Path
from typing import Any

from corral.errors import ConfigError, ControlError, DaemonUnavailable

MAX_REQUEST = 1 << 20
Handler = Callable[[dict[str, Any], Callable[[dict[str, Any]], Awaitable[None]]], Awaitable[None]]


def _peer_uid(sock: socket.socket) -> int | None:
    if not hasattr(socket, "SO_PEERCRED"):
        return None
    raw = sock.getsockopt(socket.SOL_SOCKET, socket.SO_PEERCRED, struct.calcsize("3i"))
    return struct.unpack("3i", raw)[1]


async def serve(path: Path, handler: Handler) -> asyncio.AbstractServer:
    """Listen on ``path``; the file is created 0600 (umask) so there is no window."""
    if len(os.fsencode(path)) > 100:
        raise ConfigError(
            [f"control socket path {path} is too long for a Unix socket; set a shorter [corral] home or CORRAL_HOME"]
        )
    path.unlink(missing_ok=True)

    async def on_client(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        async def reply(message: dict[str, Any]) -> None:
            writer.write(json.dumps(message, default=str).encode() + b"\n")
            await writer.drain()

        try:
            uid = _peer_uid(writer.get_extra_info("socket"))
            if uid is not None and uid not in (0, os.getuid()):
                await reply({"ok": False, "error": "permission denied: not the daemon's user"})
                return
            line = await reader.readuntil(b"\n")
            request = json.loads(line)
            if not isinstance(request, dict) or not isinstance(request.get("op"), str):
                raise ValueError('a request is a JSON object with an "op"')
            await handler(request, reply)
        except (asyncio.IncompleteReadError, asyncio.LimitOverrunError, ValueError) as exc:
            try:
                await reply({"ok": False, "error": f"bad request: {exc}"})
            except ConnectionError:
                pass
        except ConnectionError:
            pass
        finally:
            writer.close()

    old = os.umask(0o177)
    try:
        server = await asyncio.start_unix_server(on_client, path=str(path), limit=MAX_REQUEST)
    finally:
        os.umask(old)
    os.chmod(path, 0o600)
    return server


def request(path: Path, message: dict[str, Any], timeout: float | None = 10.0) -> Iterator[dict[str, Any]]:
    """Send one request and yield each reply line. Raises ControlError if nobody answers."""
    sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    sock.settimeout(timeout)
    try:
        sock.connect(str(path))
    except FileNotFoundError:
        sock.close()
        raise DaemonUnavailable(f"no daemon is listening at {path}") from None
    except PermissionError:
        sock.close()
        raise ControlError(f"permission denied on {path}: the control socket belongs to another user") from None
    except (ConnectionRefusedError, OSError) as exc:
        sock.close()
        raise DaemonUnavailable(f"the daemon at {path} is not answering ({exc})") from None
    with sock, sock.makefile("rwb") as stream:
        stream.write(json.dumps(message).encode() + b"\n")
        stream.flush()
        for line in stream:
            answer = json.loads(line)
            if not answer.get("ok", False):
                raise ControlError(answer.get("error", "the daemon refused the request"))
            yield answer
