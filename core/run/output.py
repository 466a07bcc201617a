"""Capturing an agent's stdout and stderr into its log, bounded.

Lines are truncated, rate-limited by a token bucket, and capped in total per attempt;
whatever is dropped is counted and reported, and the pipe is always drained so a
flooding agent can neither block itself nor flood the disk.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable
from typing import Any

MAX_LINE = 4096
LINES_PER_SECOND = 200.0
BURST = 1000.0
MAX_BYTES_PER_RUN = 10 * 2**20


class RateLimit:
    """Token bucket shared by every line source of one attempt (stdout, stderr, ctx.log)."""

    def __init__(
        self, rate: float = LINES_PER_SECOND, burst: float = BURST, max_bytes: int = MAX_BYTES_PER_RUN
    ) -> None:
        self.rate = rate
        self.burst = burst
        self.tokens = burst
        self.max_bytes = max_bytes
        self.bytes = 0
        self.stamp = time.monotonic()
        self.dropped = 0

    def allow(self, size: int) -> bool:
        now = time.monotonic()
        self.tokens = min(self.burst, self.tokens + (now - self.stamp) * self.rate)
        self.stamp = now
        if self.tokens < 1 or self.bytes + size > self.max_bytes:
            self.dropped += 1
            return False
        self.tokens -= 1
        self.bytes += size
        return True

    def take_dropped(self) -> int:
        dropped, self.dropped = self.dropped, 0
        return dropped


async def pump(
    stream: asyncio.StreamReader, name: str, log: Any, limit: RateLimit, redact: Callable[[str], str] = str
) -> None:
    """Copy ``stream`` into ``log`` line by line until EOF.

    A line is redacted whole before it is cut to :data:`MAX_LINE` (a secret straddling the
    cut would otherwise be logged in part); one longer than twice that is logged from what
    has come, and the rest of it, up to its newline, is only counted, never logged as a
    line of its own (where a cut could split a secret again).
    """
    pending = b""
    skipped = 0  # the rest of an over-long line already logged: dropped up to its newline
    last_report = time.monotonic()

    def emit(raw: bytes, extra: int = 0) -> None:
        if limit.allow(len(raw)):
            text = redact(raw.decode("utf-8", errors="replace"))
            size = len(raw) + extra
            log.info(name, line=text[:MAX_LINE], **({"truncated": size} if len(text) > MAX_LINE or extra else {}))

    while True:
        chunk = await stream.read(65536)
        if not chunk:
            break
        if skipped:
            head, newline, chunk = chunk.partition(b"\n")
            skipped += len(head)
            if not newline:
                continue
            skipped = 0
        pending += chunk
        *lines, pending = pending.split(b"\n")
        for raw in lines:
            emit(raw)
        if len(pending) > 2 * MAX_LINE:
            emit(pending[: 2 * MAX_LINE], len(pending) - 2 * MAX_LINE)
            skipped, pending = len(pending) - 2 * MAX_LINE, b""
        if limit.dropped and time.monotonic() - last_report > 1.0:
            log.warning(
                "output dropped", stream=name, lines=limit.take_dropped(), reason="rate or size limit for agent output"
            )
            last_report = time.monotonic()
    if pending:
        emit(pending)
    if limit.dropped:
        log.warning(
            "output dropped", stream=name, lines=limit.take_dropped(), reason="rate or size limit for agent output"
        )
