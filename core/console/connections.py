"""The console's HTTP connections: at most :data:`MAX_CONNECTIONS` open at once, and each
request arriving whole within :data:`REQUEST_DEADLINE` seconds or its connection closed.

uvicorn closes an idle keep-alive connection but waits forever for a request that has begun
and never ends, so a few thousand clients sending half a request held as many descriptors
and the daemon, whose loop serves the console, ran out of them: runs could not start and
the CLI hung. With these two bounds a flood costs the console its connections, never the
daemon its descriptors. The protocol is uvicorn's own h11 one, subclassed.
"""

from __future__ import annotations

import asyncio
from typing import Any

from uvicorn.protocols.http.h11_impl import H11Protocol

from corral.observe.quietly import EveryPeriod

MAX_CONNECTIONS = 100
"""Connections the console holds at once (a browser opens about six); more are closed at once."""
REQUEST_DEADLINE = 5.0
"""Seconds a request (its head and its form) has to arrive once it is awaited."""
REFUSALS_LOGGED_EVERY = 60.0
"""Seconds between two log lines about connections closed at the cap."""


class Refusals:
    """Connections closed at the cap, logged once per :data:`REFUSALS_LOGGED_EVERY` with a count."""

    def __init__(self, log: Any) -> None:
        self.log = log
        self.tally = EveryPeriod(REFUSALS_LOGGED_EVERY)

    def count(self) -> None:
        closed = self.tally.due()
        if closed:
            self.log.warning(
                "console at its connection limit: new connections are closed",
                limit=MAX_CONNECTIONS,
                closed=closed,
                fix="something opens connections and holds them; the daemon itself is unaffected",
            )


def protocol(refusals: Refusals) -> type[H11Protocol]:
    """uvicorn's h11 protocol bounded as this module says, counting refusals in ``refusals``."""

    class Bounded(H11Protocol):
        deadline: asyncio.TimerHandle | None = None

        def connection_made(self, transport: asyncio.Transport) -> None:  # type: ignore[override]
            super().connection_made(transport)
            if len(self.connections) > MAX_CONNECTIONS:
                refusals.count()
                transport.abort()
                return
            self._arm()

        def data_received(self, data: bytes) -> None:
            if self._awaiting():
                self._arm()
            super().data_received(data)
            if not self._awaiting():
                self._disarm()

        def connection_lost(self, exc: Exception | None) -> None:
            self._disarm()
            super().connection_lost(exc)

        def _awaiting(self) -> bool:
            """Whether a request (or the rest of its body) is still to come."""
            return self.cycle is None or self.cycle.response_complete or self.cycle.more_body

        def _arm(self) -> None:
            if self.deadline is None:
                self.deadline = self.loop.call_later(REQUEST_DEADLINE, self._too_slow)

        def _disarm(self) -> None:
            if self.deadline is not None:
                self.deadline.cancel()
                self.deadline = None

        def _too_slow(self) -> None:
            self.deadline = None
            if self._awaiting() and not self.transport.is_closing():
                self.transport.close()

    return Bounded
