"""Live updates: the console's subscriber to the event stream, fanned out to browsers as
server-sent events.

The event stream calls :meth:`Hub.observe` on the daemon's background thread; it only
appends a small notice to a bounded buffer, and hands the buffer to the event loop at most
once a :data:`TICK`. There each connected browser has its own bounded queue: one that is
full (a slow client, a phone that went to sleep) is dropped on the spot, and its browser
reconnects and reloads. Delivery never waits for a browser.

A notice only says "this changed, fetch it again", and a page fetches at most every
250 ms (a run's page once a second), so a tick's notices are sent once each: eight busy
agents make hundreds of steps a second, and each notice sent is a wake-up of the event loop
and a write to every browser, paid on the 2 cores the agents run on.
"""

from __future__ import annotations

import asyncio
import json
import threading
import time
from collections.abc import AsyncIterator
from dataclasses import dataclass, field

from corral.observe.events import Event
from corral.states import EventKind

CLIENT_QUEUE = 64
"""Notices one browser may have unsent before it is dropped."""
PENDING = 4096
"""Different notices waiting for the event loop; past this, every client is dropped and reloads."""
TICK = 0.25
"""Seconds between fan-outs to the browsers: the shortest wait of ``console.js`` before it fetches."""
HEARTBEAT = 15.0
"""Seconds between keep-alive comments, so proxies and phones keep the stream open."""
QUIET = frozenset({EventKind.STEP_DONE})
"""Kinds only a run's own page follows; lists and the overview change with the others."""


@dataclass(frozen=True)
class Notice:
    """What a browser is told: something changed here; it fetches the page again."""

    kind: str
    run: str = ""
    agent: str = ""

    def sse(self) -> bytes:
        return f"event: change\ndata: {json.dumps(self.__dict__)}\n\n".encode()


@dataclass(eq=False)
class Client:
    """One open event stream, following one run (``run``) or everything else."""

    run: str | None
    queue: asyncio.Queue[Notice | None] = field(default_factory=lambda: asyncio.Queue(CLIENT_QUEUE))
    dropped: bool = False

    def wants(self, notice: Notice) -> bool:
        if self.run is not None:
            return notice.run == self.run
        return EventKind(notice.kind) not in QUIET


class Hub:
    """The event stream's ``console`` subscriber and the set of connected browsers."""

    def __init__(self, loop: asyncio.AbstractEventLoop) -> None:
        self._loop = loop
        self._clients: set[Client] = set()
        self._pending: dict[tuple[str, str, str], None] = {}
        """The tick's notices as (kind, run, agent), each once, in the order first seen: a page
        refetches itself once for all of them, so a repeat costs only this lookup (eight busy
        agents post hundreds of step events a second)."""
        self._overflow = False
        self._scheduled = False
        self._due = 0.0
        """When the next fan-out may run (``time.monotonic``)."""
        self._lock = threading.Lock()

    @property
    def clients(self) -> int:
        return len(self._clients)

    def observe(self, event: Event) -> None:
        """The subscriber (background thread): note the event for the browsers, if any."""
        if not self._clients:
            return
        run = event.run or {}
        key = (event.kind.value, str(run.get("id", "")), str(run.get("agent", "")))
        with self._lock:
            if key in self._pending:
                return
            if len(self._pending) >= PENDING:
                self._overflow = True
                self._pending.clear()
            self._pending[key] = None
            if self._scheduled:
                return
            self._scheduled = True
            wait = max(0.0, self._due - time.monotonic())
        try:
            self._loop.call_soon_threadsafe(self._loop.call_later, wait, self._fan_out)
        except RuntimeError:  # the loop is closed: the daemon is stopping
            pass

    def _fan_out(self) -> None:
        with self._lock:
            self._due = time.monotonic() + TICK
            pending, self._pending = self._pending, {}
            overflow, self._overflow = self._overflow, False
            self._scheduled = False
        batch = [Notice(*key) for key in pending]
        for client in list(self._clients):
            if overflow:
                self._drop(client)
                continue
            for notice in batch:
                if not client.wants(notice):
                    continue
                try:
                    client.queue.put_nowait(notice)
                except asyncio.QueueFull:
                    self._drop(client)
                    break

    def _drop(self, client: Client) -> None:
        client.dropped = True
        self._clients.discard(client)
        while not client.queue.empty():
            client.queue.get_nowait()
        client.queue.put_nowait(None)

    def close(self) -> None:
        """End every stream (the console is stopping)."""
        for client in list(self._clients):
            self._drop(client)

    async def stream(self, run: str | None) -> AsyncIterator[bytes]:
        """One browser's server-sent events until it leaves or is dropped."""
        client = Client(run)
        self._clients.add(client)
        try:
            yield b"retry: 2000\n\n"
            while True:
                try:
                    notice = await asyncio.wait_for(client.queue.get(), HEARTBEAT)
                except TimeoutError:
                    yield b": keep-alive\n\n"
                    continue
                if notice is None:
                    return
                yield notice.sse()
        finally:
            self._clients.discard(client)
