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
import threading
from collections.abc import Mapping
from typing import Any

import msgpack

from corral.errors import ProtocolError
from corral.packing import MAX_DEPTH, nesting, pack

VERSION = 1
HEADER = struct.Struct(">I")
DEFAULT_MAX_FRAME = 8 * 2**20
MAX_FRAME_DEPTH = MAX_DEPTH + 4
"""How deep lists and maps may nest in a frame: a value of :data:`corral.packing.MAX_DEPTH`
and the frame's own maps around it (a log line's ``fields``, a step's ``args``). Checked on
every frame received, so no value past it reaches a walk that recursion could break."""

_STR, _INT, _BOOL, _ANY, _MAP, _LIST = str, int, bool, object, dict, list
_OPT = "optional"

CHILD_MESSAGES: dict[str, dict[str, Any]] = {
    "hello": {"v": _INT, "pid": _INT, "applied": (_LIST, _OPT)},
    "step": {"seq": _INT, "kind": _STR, "name": _STR, "args": _MAP},
    "done": {"seq": _INT, "ok": _BOOL, "value": (_ANY, _OPT), "error": (_MAP, _OPT), "waits": (_BOOL, _OPT)},
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

_TOO_DEEP = f"frame is nested deeper than the wire allows ({MAX_FRAME_DEPTH} levels of lists and maps)"

LOG_LEVELS = frozenset({"debug", "info", "warning", "error"})


def _reject_ext(code: int, data: bytes) -> Any:
    raise ProtocolError(f"msgpack extension type {code} is not allowed on the wire")


def encode(message: Mapping[str, Any]) -> bytes:
    """One frame: header plus msgpack body."""
    body = pack(message)
    return HEADER.pack(len(body)) + body


_Fields = tuple[tuple[str, type, bool], ...]


def _compile(table: Mapping[str, Mapping[str, Any]]) -> dict[str, _Fields]:
    """``table`` as (name, type, optional) per message type."""
    return {
        kind: tuple(
            (name, spec[0], True) if isinstance(spec, tuple) else (name, spec, False) for name, spec in fields.items()
        )
        for kind, fields in table.items()
    }


_CHILD_CHECKS, _DAEMON_CHECKS = _compile(CHILD_MESSAGES), _compile(DAEMON_MESSAGES)


def _checks(table: Mapping[str, Mapping[str, Any]]) -> dict[str, _Fields]:
    """The protocol's two tables are compiled once; any other on each call."""
    if table is CHILD_MESSAGES:
        return _CHILD_CHECKS
    if table is DAEMON_MESSAGES:
        return _DAEMON_CHECKS
    return _compile(table)


def decode(body: bytes, table: Mapping[str, Mapping[str, Any]]) -> dict[str, Any]:
    """Unpack and validate one frame body against ``table``; raise ProtocolError."""
    try:
        # timestamp=1: msgpack's one built-in extension (-1) never reaches ext_hook; read it
        # as a plain float so no extension object gets past this point
        message = msgpack.unpackb(body, raw=False, ext_hook=_reject_ext, strict_map_key=True, timestamp=1)
    except ProtocolError:
        raise
    except (msgpack.StackError, RecursionError):
        raise ProtocolError(_TOO_DEEP) from None
    except Exception as exc:  # msgpack raises several unrelated types for bad bytes
        raise ProtocolError(f"frame is not valid msgpack ({type(exc).__name__}: {exc})") from None
    if not isinstance(message, dict):
        raise ProtocolError(f"frame must be a map, got {type(message).__name__}")
    if nesting(message, MAX_FRAME_DEPTH) > MAX_FRAME_DEPTH:
        raise ProtocolError(_TOO_DEEP)
    kind = message.get("t")
    fields = _checks(table).get(kind) if isinstance(kind, str) else None
    if fields is None:
        raise ProtocolError(f"unknown message type {kind!r}; expected one of {sorted(table)}")
    present = 1  # "t"
    for name, expected, optional in fields:
        if name not in message:
            if optional:
                continue
            raise ProtocolError(f"{kind!r} message lacks field {name!r}")
        present += 1
        value = message[name]
        if expected is int and (isinstance(value, bool) or not isinstance(value, int)):
            raise ProtocolError(f"{kind!r} field {name!r} must be an integer")
        if not isinstance(value, expected):
            raise ProtocolError(f"{kind!r} field {name!r} must be {expected.__name__}")
        if isinstance(value, dict) and not all(isinstance(key, str) for key in value):
            raise ProtocolError(f"{kind!r} field {name!r} must have text keys")
    if len(message) != present:
        extra = set(message) - {name for name, _, _ in fields} - {"t"}
        raise ProtocolError(f"{kind!r} message has unexpected fields {sorted(extra)}")
    return message


class BlockingChannel:
    """The child's end: blocking reads and writes on the two wire fds.

    Reads take whatever the pipe holds (one ``read`` for a whole answer, usually) and keep
    what lies past the frame for the next :meth:`recv`. Sends are whole frames even from
    several threads (``ctx.log`` may write while the model door's thread waits for a step).
    """

    _READ_SIZE = 1 << 16

    def __init__(self, read_fd: int, write_fd: int, *, max_bytes: int = DEFAULT_MAX_FRAME) -> None:
        self.read_fd = read_fd
        self.write_fd = write_fd
        self.max_bytes = max_bytes
        self._buffer = bytearray()
        self._sending = threading.Lock()

    def send(self, message: Mapping[str, Any]) -> None:
        """Send one frame. ValueError, and nothing sent, for one nested deeper than the
        daemon takes (:data:`MAX_FRAME_DEPTH`), which would end the run."""
        if nesting(message, MAX_FRAME_DEPTH) > MAX_FRAME_DEPTH:
            raise ValueError(
                f"a value nests lists and maps deeper than corral keeps ({MAX_DEPTH} levels); "
                "flatten it, or send it as a JSON string"
            )
        data = memoryview(encode(message))
        with self._sending:
            while data:
                written = os.write(self.write_fd, data)
                data = data[written:]

    def _fill(self, n: int) -> None:
        """Read until the buffer holds at least ``n`` bytes."""
        while len(self._buffer) < n:
            chunk = os.read(self.read_fd, max(self._READ_SIZE, n - len(self._buffer)))
            if not chunk:
                raise ProtocolError("the daemon closed the wire")
            self._buffer += chunk

    def recv(self) -> dict[str, Any]:
        self._fill(HEADER.size)
        (length,) = HEADER.unpack_from(self._buffer)
        if length > self.max_bytes:
            raise ProtocolError(f"frame of {length} bytes exceeds the {self.max_bytes}-byte limit")
        end = HEADER.size + length
        self._fill(end)
        body = bytes(self._buffer[HEADER.size : end])
        del self._buffer[:end]
        return decode(body, DAEMON_MESSAGES)


def canonical(value: Any) -> Any:
    """``value`` with every map's keys sorted, so equal requests pack to equal bytes."""
    if isinstance(value, dict):
        return {k: _canonical_item(value[k]) for k in sorted(value, key=repr)}
    if isinstance(value, list | tuple):
        return [_canonical_item(v) for v in value]
    return value


def _canonical_item(value: Any) -> Any:
    return canonical(value) if isinstance(value, dict | list | tuple) else value


def fingerprint(kind: str, name: str, args: Mapping[str, Any]) -> str:
    """Stable hash of a request: what a resumed run must ask again at the same seq."""
    packed = pack([kind, name, canonical(args if type(args) is dict else dict(args))])
    return hashlib.sha256(packed).hexdigest()[:32]


def idempotency_key(run_id: str, seq: int, fp: str) -> str:
    """The key a tool gets: the same for every re-execution of the same step. ``fp`` is the
    step's fingerprint, which already covers the tool's name and arguments."""
    return hashlib.sha256(f"{run_id}/{seq}/{fp}".encode()).hexdigest()[:32]
