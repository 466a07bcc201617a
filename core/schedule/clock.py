"""The scheduler's sense of time, replaceable so tests can move it by hand.

Schedules are computed in wall-clock seconds since the epoch (cron times are wall-clock
times), and the scheduler sleeps through :meth:`Clock.wait`, so a test's
:class:`ManualClock` can jump a day ahead without anyone sleeping for it.
"""

from __future__ import annotations

import asyncio
import time


class Clock:
    """Real time: ``time.time()`` and ``asyncio`` sleeps."""

    def now(self) -> float:
        """Seconds since the epoch."""
        return time.time()

    async def wait(self, until: float, wake: asyncio.Event) -> None:
        """Return at ``until`` (epoch seconds) or as soon as ``wake`` is set, whichever is first."""
        delay = until - self.now()
        if delay <= 0:
            return
        try:
            await asyncio.wait_for(wake.wait(), delay)
        except TimeoutError:
            pass


class ManualClock(Clock):
    """Time that moves only when a test calls :meth:`advance` or :meth:`set`."""

    def __init__(self, start: float = 1_800_000_000.0) -> None:
        self._now = start
        self._moved = asyncio.Event()

    def now(self) -> float:
        return self._now

    def set(self, moment: float) -> None:
        """Jump to ``moment``; every waiter whose time has come wakes."""
        self._now = moment
        self._moved.set()
        self._moved = asyncio.Event()

    def advance(self, seconds: float) -> None:
        self.set(self._now + seconds)

    async def wait(self, until: float, wake: asyncio.Event) -> None:
        while self._now < until and not wake.is_set():
            moved = asyncio.ensure_future(self._moved.wait())
            woken = asyncio.ensure_future(wake.wait())
            try:
                await asyncio.wait({moved, woken}, return_when=asyncio.FIRST_COMPLETED)
            finally:
                moved.cancel()
                woken.cancel()
