"""The wire protocol between the daemon and an agent's process.

Frames are a 4-byte big-endian length followed by that many bytes of msgpack, on two
dedicated pipes (the child's stdout and stderr are only logs). The child speaks first
with ``hello``; every frame is checked against the table below before anyone acts on
it. A stream cannot resynchronise after a bad frame, so any violation ends the run.
docs/protocol.md is the reference for every message.
"""

from __future__ import annotations

import hashlib
import os
import struct
from collections.abc import Mapping
from typing import TYPE_CHECKING, Any

import msgpack

from corral.errors import ProtocolError

if TYPE_CHECKING:
    import asyncio

VERSION = 1
HEADER = struct.Struct(">I")
DEFAULT_MAX_FRAME = 8 * 2**20

_STR, _INT, _BOOL, _ANY, _MAP, _LIST = str, int, bool, object, dict, list
_OPT = "optional"

CHILD_MESSAGES: dict[str, dict[str, Any]] = {
    "hello": {"v": _INT, "pid": _INT, "applied": (_LIST, _OPT)},
    "step": {"seq": _INT, "kind": _STR, "name": _STR, "args": _MAP},
    "done": {"seq": _INT, "ok": _BOOL, "value": (_ANY, _OPT), "error": (_MAP, _OPT)},
    "reconciled": {"seq": _INT, "outcome": _STR, "value": (_ANY, _OPT)},
    "log": {"level": _STR, "event": _STR, "fields": _MAP},
    "finish": {"ok": _BOOL, "value": (_ANY, _OPT), "error": (_MAP, _OPT)},
}
"""Messages a child may send, with their fields; the daemon rejects anything else."""

DAEMON_MESSAGES: dict[str, dict[str, Any]] = {
    "welcome": {"v": _INT, "run": _MAP},
    "result": {"seq": _INT, "ok": _BOOL, "replayed": _BOOL, "value": (_ANY, _OPT), "error": (_MAP, _OPT)},
    "exec": {"seq": _INT, "key": _STR},
    "reconcile": {"seq": _INT, "key": _STR},
    "abort": {"reason": _STR},
}
"""Messages the daemon sends; the child runtime checks them the same way."""

STEP_KINDS = frozenset({"tool", "state"})
LOG_LEVELS = frozenset({"debug", "info", "warning", "error"})


def _reject_ext(code: int, data: bytes) -> Any:
    raise ProtocolError(f"msgpack extension type {code} is not allowed on the wire")


def encode(message: Mapping[str, Any]) -> bytes:
    """One frame: header plus msgpack body."""
    body = msgpack.packb(message, use_bin_type=True)
    return HEADER.pack(len(body)) + body


def decode(body: bytes, table: Mapping[str, Mapping[str, Any]]) -> dict[str, Any]:
    """Unpack and validate one frame body against ``table``; raise ProtocolError."""
    try:
        # timestamp=1: msgpack's one built-in extension (-1) never reaches ext_hook; read it
        # as a plain float so no extension object gets past this point
        message = msgpack.unpackb(body, raw=False, ext_hook=_reject_ext, strict_map_key=True, timestamp=1)
    except ProtocolError:
        raise
    except (msgpack.StackError, RecursionError):
        raise ProtocolError("frame is nested deeper than the wire allows") from None
    except Exception as exc:  # msgpack raises several unrelated types for bad bytes
        raise ProtocolError(f"frame is not valid msgpack ({type(exc).__name__}: {exc})") from None
    if not isinstance(message, dict):
        raise ProtocolError(f"frame must be a map, got {type(message).__name__}")
    kind = message.get("t")
    fields = table.get(kind) if isinstance(kind, str) else None
    if fields is None:
        raise ProtocolError(f"unknown message type {kind!r}; expected one of {sorted(table)}")
    for name, spec in fields.items():
        expected, optional = spec if isinstance(spec, tuple) else (spec, None)
        if name not in message:
            if optional:
                continue
            raise ProtocolError(f"{kind!r} message lacks field {name!r}")
        value = message[name]
        if expected is int and (isinstance(value, bool) or not isinstance(value, int)):
            raise ProtocolError(f"{kind!r} field {name!r} must be an integer")
        if not isinstance(value, expected):
            raise ProtocolError(f"{kind!r} field {name!r} must be {expected.__name__}")
    extra = set(message) - set(fields) - {"t"}
    if extra:
        raise ProtocolError(f"{kind!r} message has unexpected fields {sorted(extra)}")
    return message


class FrameReader:
    """The daemon's end: frames from an asyncio stream, buffered so that frames which
    arrive together (a ``done`` and the next ``step``) cost one read, not several.

    Once a frame has begun it must arrive whole within ``deadline`` seconds: a child that
    trickles bytes or dies mid-frame cannot hold the daemon.
    """

    def __init__(
        self,
        reader: asyncio.StreamReader,
        *,
        max_bytes: int,
        deadline: float,
        table: Mapping[str, Mapping[str, Any]] = CHILD_MESSAGES,
    ) -> None:
        self.reader = reader
        self.max_bytes = max_bytes
        self.deadline = deadline
        self.table = table
        self._buffer = bytearray()
        self._partial_since: float | None = None
        self._peeked: dict[str, Any] | None = None

    def peek(self) -> dict[str, Any] | None:
        """The next frame if it is already here whole (validated, and kept for ``next``)."""
        if self._peeked is None:
            body = self._take()
            if body is not None:
                self._peeked = decode(body, self.table)
        return self._peeked

    def _take(self) -> bytes | None:
        if len(self._buffer) < HEADER.size:
            return None
        (length,) = HEADER.unpack_from(self._buffer)
        if length > self.max_bytes:
            raise ProtocolError(f"frame of {length} bytes exceeds the {self.max_bytes}-byte limit")
        end = HEADER.size + length
        if len(self._buffer) < end:
            return None
        body = bytes(self._buffer[HEADER.size : end])
        del self._buffer[:end]
        self._partial_since = None
        return body

    async def next(self, timeout: float | None = None) -> dict[str, Any] | None:
        """The next frame, validated; None at a clean end of stream between frames.

        ``timeout`` bounds the wait for a frame to begin (TimeoutError); without it the
        wait is unbounded, as a run may legitimately think for a long time.
        """
        import asyncio  # the daemon's side only; the agent's process never loads asyncio for this

        if self._peeked is not None:
            message, self._peeked = self._peeked, None
            return message
        loop = asyncio.get_running_loop()
        while True:
            body = self._take()
            if body is not None:
                return decode(body, self.table)
            try:
                if self._buffer:
                    self._partial_since = self._partial_since or loop.time()
                    remaining = self._partial_since + self.deadline - loop.time()
                    if remaining <= 0:
                        raise ProtocolError(f"frame did not arrive whole within {self.deadline:g}s")
                    try:
                        chunk = await asyncio.wait_for(self.reader.read(65536), remaining)
                    except TimeoutError:
                        raise ProtocolError(f"frame did not arrive whole within {self.deadline:g}s") from None
                elif timeout is not None:
                    chunk = await asyncio.wait_for(self.reader.read(65536), timeout)
                else:
                    chunk = await self.reader.read(65536)
            except TimeoutError:
                raise  # no frame began in time: the caller decides (it is an OSError subclass)
            except (ConnectionError, OSError) as exc:
                raise ProtocolError(f"wire pipe failed: {exc}") from None
            if not chunk:
                if self._buffer:
                    got = len(self._buffer) - HEADER.size if len(self._buffer) >= HEADER.size else len(self._buffer)
                    raise ProtocolError(f"stream ended mid-frame after {got} bytes")
                return None
            self._buffer += chunk


class BlockingChannel:
    """The child's end: blocking reads and writes on the two wire fds."""

    def __init__(self, read_fd: int, write_fd: int, *, max_bytes: int = DEFAULT_MAX_FRAME) -> None:
        self.read_fd = read_fd
        self.write_fd = write_fd
        self.max_bytes = max_bytes

    def send(self, message: Mapping[str, Any]) -> None:
        data = memoryview(encode(message))
        while data:
            written = os.write(self.write_fd, data)
            data = data[written:]

    def _read_exactly(self, n: int) -> bytes:
        chunks = bytearray()
        while len(chunks) < n:
            chunk = os.read(self.read_fd, n - len(chunks))
            if not chunk:
                raise ProtocolError("the daemon closed the wire")
            chunks += chunk
        return bytes(chunks)

    def recv(self) -> dict[str, Any]:
        (length,) = HEADER.unpack(self._read_exactly(HEADER.size))
        if length > self.max_bytes:
            raise ProtocolError(f"frame of {length} bytes exceeds the {self.max_bytes}-byte limit")
        return decode(self._read_exactly(length), DAEMON_MESSAGES)


def canonical(value: Any) -> Any:
    """``value`` with every map's keys sorted, so equal requests pack to equal bytes."""
    if isinstance(value, dict):
        return {k: canonical(value[k]) for k in sorted(value, key=repr)}
    if isinstance(value, list | tuple):
        return [canonical(v) for v in value]
    return value


def fingerprint(kind: str, name: str, args: Mapping[str, Any]) -> str:
    """Stable hash of a request: what a resumed run must ask again at the same seq."""
    packed = msgpack.packb(canonical([kind, name, dict(args)]), use_bin_type=True)
    return hashlib.sha256(packed).hexdigest()[:32]


def idempotency_key(run_id: str, seq: int, name: str, args: Mapping[str, Any]) -> str:
    """The key a tool gets: the same for every re-execution of the same step."""
    packed = msgpack.packb(canonical([run_id, seq, name, dict(args)]), use_bin_type=True)
    return hashlib.sha256(packed).hexdigest()[:32]
