"""Counting something that can happen thousands of times a second, and logging it at most
once a period with how many times it happened: a flood must not become a flood of log."""

from __future__ import annotations

import time
from collections.abc import Callable


class EveryPeriod:
    """Occurrences of one thing between log lines at most ``every`` seconds apart."""

    def __init__(self, every: float, clock: Callable[[], float] = time.monotonic) -> None:
        self.every = every
        self._clock = clock
        self.unlogged = 0
        self.logged_at = -every

    def due(self) -> int:
        """Count one; how many to report when a log line is due now, else 0."""
        self.unlogged += 1
        now = self._clock()
        if now - self.logged_at < self.every:
            return 0
        count, self.logged_at, self.unlogged = self.unlogged, now, 0
        return count
