"""The door's state and log API, ``/corral/v1/...``: ``ctx.state`` and ``ctx.log`` over HTTP,
for agents that are not Python functions (``[agents.NAME] command = [...]``).

Each write is a ``state`` step through the run's session, exactly as ``ctx.state[key] =
value`` makes one: journaled, answered from the journal on a resumed attempt. A log line is
a ``log`` frame, as ``ctx.log`` sends. Every request is checked here first (path, key,
body, size); a bad one is answered with a JSON error and never ends the run. The routes
and their answers are described in ``openapi.json`` beside this module, which the door also
serves (:data:`ROUTES` lists what it serves; a test holds the two together).
"""

from __future__ import annotations

import json
import threading
import urllib.parse
from collections.abc import Callable, MutableMapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Protocol

from corral.jsoninput import loads, storable
from corral.packing import pack
from corral.sandbox.door import API_PREFIX
from corral.sandbox.door.problems import DoorError, shallow

DOCUMENT = Path(__file__).with_name("openapi.json")
LEVELS = ("debug", "info", "warning", "error")
MAX_KEY = 256
"""Bytes of a state key, as for ``ctx.state`` (:data:`corral.sandbox.runtime.MAX_STATE_KEY`)."""
MAX_EVENT = 512
"""Characters of a log line's event: the daemon keeps no more of it."""

Answer = tuple[int, dict[str, Any], dict[str, str]]
"""(status, JSON body, extra headers)."""


class LogLines(Protocol):
    """``ctx.log``: what a log line becomes."""

    def debug(self, event: str, /, **fields: Any) -> None: ...
    def info(self, event: str, /, **fields: Any) -> None: ...
    def warning(self, event: str, /, **fields: Any) -> None: ...
    def error(self, event: str, /, **fields: Any) -> None: ...


@dataclass(frozen=True)
class Operation:
    """One method on one path of the API."""

    method: str
    path: str
    """As the OpenAPI document writes it: ``{key}`` for the one path parameter."""
    handler: str


ROUTES = (
    Operation("GET", f"{API_PREFIX}/state", "everything"),
    Operation("GET", f"{API_PREFIX}/state/{{key}}", "one"),
    Operation("PUT", f"{API_PREFIX}/state/{{key}}", "put"),
    Operation("DELETE", f"{API_PREFIX}/state/{{key}}", "delete"),
    Operation("POST", f"{API_PREFIX}/log", "log"),
    Operation("GET", f"{API_PREFIX}/openapi.json", "openapi"),
)


class Api:
    """The routes of one run, over its ``ctx.state`` and ``ctx.log``; ``change`` makes a state
    change happen (the runtime's: it leaves when the daemon ended the run meanwhile).

    ``busy`` names the tool this process runs now, if any: a state write must wait for the
    tool's outcome to reach corral, and a tool that wrote state through its own door would
    wait for ever, so the write is refused (409) instead, as the model door refuses.
    ``value_limit_kb``: ``limits.state_value_kb``, checked here so an oversized value is a
    413 and not the end of the run (``ctx.state`` ends it: a Python agent gets an exception);
    ``state_limit_mb``: ``limits.state_mb``, the same for the whole state as this run sees it
    (the daemon checks the store's total again).
    """

    def __init__(
        self,
        state: MutableMapping[str, Any],
        log: LogLines,
        change: Callable[[Callable[[], None]], None],
        busy: Callable[[], str | None],
        value_limit_kb: int | None,
        state_limit_mb: int | None = None,
    ) -> None:
        self.state = state
        self.log = log
        self.change = change
        self.busy = busy
        self.value_limit_kb = value_limit_kb
        self.state_limit_mb = state_limit_mb
        self._lock = threading.Lock()
        """One state change at a time, so the journal's order is the order the values apply; reads
        wait for a change in flight."""

    def answer(self, method: str, target: str, body: Callable[[], bytes]) -> Answer:
        """Answer ``method`` on ``target`` (path and query); ``body`` reads the request's
        body (raising 400 or 413 itself). Raises :class:`DoorError` for a bad request."""
        path = target.split("?", 1)[0]
        route, key = _route(method, path)
        handler: Callable[..., Answer] = getattr(self, f"_{route.handler}")
        return handler(key, body) if "{key}" in route.path else handler(body)

    def _everything(self, body: Callable[[], bytes]) -> Answer:
        with self._lock:  # not while a write changes the mapping
            return 200, {"state": dict(self.state)}, {}

    def _one(self, key: str, body: Callable[[], bytes]) -> Answer:
        with self._lock:
            if key not in self.state:
                raise DoorError(404, f"no key {key!r} in this agent's state ({_keys(self.state)})", param="key")
            return 200, {"key": key, "value": self.state[key]}, {}

    def _put(self, key: str, body: Callable[[], bytes]) -> Answer:
        given = _object(body(), ("value",))
        if "value" not in given:
            raise DoorError(400, 'the body must be {"value": ...}: the JSON value to store under the key', "value")
        value = given["value"]
        size = _packed_size(value)
        limit = self.value_limit_kb
        if limit is not None and size > limit * 1024:
            raise DoorError(
                413,
                f"the value is {size} bytes packed, over limits.state_value_kb ({limit} KiB); nothing was written. "
                "Keep bulky data in a file in the workdir and its name in the state, or raise the limit",
                "value",
            )
        self._check_total(key, size)
        self._write(lambda: self.state.__setitem__(key, value))
        return 200, {"ok": True, "key": key}, {}

    def _check_total(self, key: str, size: int) -> None:
        """A 413 when the write would take the state past ``limits.state_mb`` (keys and packed
        values, as the daemon counts them)."""
        limit = self.state_limit_mb
        if limit is None:
            return
        others = sum(len(k.encode()) + _packed_size(v) for k, v in self.state.items() if k != key)
        total = others + len(key.encode()) + size
        if total > limit * 2**20:
            raise DoorError(
                413,
                f"the state would hold {total / 2**20:.1f} MiB with this value, over limits.state_mb ({limit} MiB); "
                "nothing was written. Delete keys the agent no longer needs (DELETE /corral/v1/state/KEY, or "
                "`corral state AGENT --delete KEY`), keep bulky data in files in the workdir, or raise the limit",
                "value",
            )

    def _delete(self, key: str, body: Callable[[], bytes]) -> Answer:
        if key not in self.state:
            raise DoorError(404, f"no key {key!r} in this agent's state ({_keys(self.state)})", param="key")
        self._write(lambda: self.state.__delitem__(key))
        return 200, {"ok": True, "key": key}, {}

    def _log(self, body: Callable[[], bytes]) -> Answer:
        given = _object(body(), ("level", "event", "fields"))
        level = given.get("level", "info")
        if level not in LEVELS:
            raise DoorError(400, f"level {level!r} is not one of {', '.join(LEVELS)}", "level")
        event = given.get("event")
        if not isinstance(event, str) or not event.strip():
            raise DoorError(400, 'event is required: a short text naming what happened, e.g. "fetched"', "event")
        if len(event) > MAX_EVENT:
            raise DoorError(400, f"event is {len(event)} characters, over {MAX_EVENT}; put details in fields", "event")
        fields = given.get("fields", {})
        if not isinstance(fields, dict):
            raise DoorError(400, "fields must be an object of names and JSON values", "fields")
        try:
            storable(fields)
        except ValueError as exc:  # a lone surrogate in a name or a value; an integer past 64 bits
            raise DoorError(400, f"fields cannot be logged ({exc})", "fields") from None
        getattr(self.log, level)(event, **fields)
        return 200, {"ok": True}, {}

    def _openapi(self, body: Callable[[], bytes]) -> Answer:
        return 200, json.loads(DOCUMENT.read_bytes()), {}

    def _write(self, change: Callable[[], None]) -> None:
        running = self.busy()
        if running is not None:
            raise DoorError(
                409,
                f"the state cannot change while tool {running} runs: its outcome must reach corral first "
                "(a tool that writes state through the door is not supported); try again after it",
            )
        with self._lock:
            self.change(change)


def _route(method: str, path: str) -> tuple[Operation, str]:
    """The route ``method`` and ``path`` name, and the decoded key for a ``{key}`` route."""
    key = ""
    template = path
    prefix = f"{API_PREFIX}/state/"
    if path.startswith(prefix):
        key, template = _key(path[len(prefix) :]), f"{prefix}{{key}}"
    allowed = [route for route in ROUTES if route.path == template]
    if not allowed:
        raise DoorError(
            404, f"no such path on corral's door: {method} {path}; the API is described at {API_PREFIX}/openapi.json"
        )
    for route in allowed:
        if route.method == method:
            return route, key
    methods = ", ".join(route.method for route in allowed)
    raise DoorError(405, f"{method} is not allowed on {template}; use {methods}")


def _key(raw: str) -> str:
    if "/" in raw:
        raise DoorError(404, f"no such path: a state key is one path segment; encode '/' in a key as %2F ({raw!r})")
    try:
        key = urllib.parse.unquote(raw, errors="strict")
    except UnicodeDecodeError:
        raise DoorError(400, "the key is not UTF-8 once percent-decoded", "key") from None
    if not 0 < len(key.encode()) <= MAX_KEY:
        raise DoorError(400, f"a state key is 1 to {MAX_KEY} bytes of UTF-8; this one is {len(key.encode())}", "key")
    return key


def _object(raw: bytes, known: tuple[str, ...]) -> dict[str, Any]:
    """The body as a JSON object with no keys but ``known``; a 400 naming what is wrong."""
    try:
        given = shallow(loads(raw))
    except ValueError as exc:
        raise DoorError(400, f"the request body is not valid JSON: {exc}") from None
    if not isinstance(given, dict):
        raise DoorError(400, f"the request body must be a JSON object with {', '.join(known)}")
    unknown = sorted(set(given) - set(known))
    if unknown:
        raise DoorError(400, f"unknown field {unknown[0]!r}; the body takes {', '.join(known)}", unknown[0])
    return given


def _packed_size(value: Any) -> int:
    """Bytes of ``value`` as the journal holds it; a 400 when it cannot hold it."""
    try:
        return len(pack(value))
    except (OverflowError, TypeError, ValueError) as exc:
        raise DoorError(400, f"the value cannot be stored ({exc}); integers must fit in 64 bits", "value") from None


def _keys(state: MutableMapping[str, Any]) -> str:
    names = sorted(state)
    if not names:
        return "it is empty"
    shown = ", ".join(repr(name) for name in names[:10])
    return f"keys: {shown}" + (f" and {len(names) - 10} more" if len(names) > 10 else "")
