"""What answers a route of the door is made at the first request to it: once, however many
first requests come together on the door's threads, and a failure to make it is an answer
in the route's own format that names what failed, not a dropped connection. Real HTTP on
loopback; the makers are the ``tools=`` and ``api=`` a runtime gives its door."""

from __future__ import annotations

import http.client
import importlib
import json
import threading
import time
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import pytest

from corral.sandbox.door.api import Api
from corral.sandbox.door.server import DIALECTS, Door, listen
from corral.sandbox.door.tools import ToolDoor

TOKEN = "corral-test-token"


class _Lines:
    """``ctx.log`` for an API that is only read here."""

    def debug(self, event: str, /, **fields: Any) -> None: ...
    def info(self, event: str, /, **fields: Any) -> None: ...
    def warning(self, event: str, /, **fields: Any) -> None: ...
    def error(self, event: str, /, **fields: Any) -> None: ...


def _api() -> Api:
    return Api({"note": "kept"}, _Lines(), lambda apply: apply(), lambda: None, None)


def _ask(name: str, args: dict[str, Any]) -> tuple[int, dict[str, Any]]:
    raise AssertionError("no model step is asked here")


@pytest.fixture
def serve() -> Iterator[Callable[..., Door]]:
    """Start a door on loopback with the given makers; stopped after the test."""
    doors: list[Door] = []

    def start(**makers: Callable[[], Any]) -> Door:
        door = Door(listen(), TOKEN, [], _ask, 4096, "r1", **makers)
        door.start(poll_interval=0.02)
        doors.append(door)
        return door

    yield start
    for door in doors:
        door.stop()


def _request(door: Door, method: str, path: str, body: Any = None) -> tuple[int, Any]:
    connection = http.client.HTTPConnection("127.0.0.1", door.port, timeout=10)
    payload = None if body is None else json.dumps(body).encode()
    connection.request(method, path, payload, {"authorization": f"Bearer {TOKEN}", "content-type": "application/json"})
    response = connection.getresponse()
    answer = response.status, json.loads(response.read())
    connection.close()
    return answer


def test_first_requests_that_come_together_make_what_answers_them_once(serve: Callable[..., Door]) -> None:
    made: list[float] = []

    def slow_api() -> Api:
        made.append(time.monotonic())
        time.sleep(0.3)  # long enough for every first request to arrive while it is made
        return _api()

    door = serve(api=slow_api)
    start = threading.Barrier(8)

    def read(_: int) -> tuple[int, Any]:
        start.wait()
        return _request(door, "GET", "/corral/v1/state/note")

    with ThreadPoolExecutor(8) as pool:
        answers = list(pool.map(read, range(8)))
    assert answers == [(200, {"key": "note", "value": "kept"})] * 8
    assert len(made) == 1, "made once, the other first requests waited for it"


def test_a_part_that_cannot_be_loaded_is_the_routes_own_error_and_the_next_request_tries_again(
    serve: Callable[..., Door],
) -> None:
    outcomes: list[BaseException | None] = [MemoryError("cannot allocate"), None]

    def api() -> Api:
        failure = outcomes.pop(0)
        if failure is not None:
            raise failure
        return _api()

    def tools() -> ToolDoor:
        raise ModuleNotFoundError("No module named 'mcp_types'")

    door = serve(api=api, tools=tools)
    status, body = _request(door, "GET", "/corral/v1/state/note")
    assert status == 500 and set(body) == {"error"} and body["error"]["status"] == 500, "the API's Error schema"
    message = body["error"]["message"]
    assert "could not load the state and log API (MemoryError: cannot allocate)" in message
    assert "limits.address_space_mb" in message, "and what to do"
    assert _request(door, "GET", "/corral/v1/state/note") == (200, {"key": "note", "value": "kept"})

    listing = {"jsonrpc": "2.0", "id": 1, "method": "tools/list"}
    status, body = _request(door, "POST", "/mcp", listing)
    assert status == 500 and body["jsonrpc"] == "2.0" and body["error"]["code"] == -32603
    assert "could not load the tool door (ModuleNotFoundError: No module named 'mcp_types')" in body["error"]["message"]


def test_each_dialect_is_named_in_the_route_table_as_its_module_names_itself() -> None:
    """The name is the ``door`` its steps carry and picks its error format and ids: a module
    moved or renamed without the table fails here, not at an agent's first request."""
    assert {name: importlib.import_module(dialect.module).NAME for name, dialect in DIALECTS.items()} == {
        name: name for name in DIALECTS
    }
