"""Capturing an agent's stdout and stderr, and its ``ctx.log`` lines, into its log, bounded.

Lines are truncated, rate-limited by a token bucket, and capped in total per attempt;
each line is charged the bytes it writes (its text as JSON, fields included, and the
fields corral adds to every line), so no encoding and no number of fields takes an
attempt past :data:`MAX_BYTES_PER_RUN`. Whatever is dropped is counted and reported, and
the pipe is always drained so a flooding agent can neither block itself nor flood the disk.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable, Mapping
from itertools import islice
from typing import Any

import orjson

from corral.packing import pack

MAX_LINE = 4096
LINES_PER_SECOND = 200.0
BURST = 1000.0
MAX_BYTES_PER_RUN = 10 * 2**20
LINE_OVERHEAD = 256
"""Bytes charged for what corral writes on every line besides the agent's text and fields
(timestamp, level, agent, run and trace ids, ``source``, ``seq``): about 200 in practice."""
MAX_LOG_FIELDS = 64
"""Fields of one ``ctx.log`` line kept; the rest are dropped and counted in ``fields_dropped``."""
DOOR_TOKEN_PLACEHOLDER = "[redacted:CORRAL_DOOR_TOKEN]"


def json_size(value: Any) -> int:
    """Bytes of ``value`` as a JSON log line writes it (escapes included), before the log
    cuts long strings: a line is charged at least what it writes."""
    try:
        return len(orjson.dumps(value, default=repr, option=orjson.OPT_NON_STR_KEYS))
    except (TypeError, ValueError):  # nested past orjson's depth: the log writes its repr, cut
        return len(pack(value))


def bounded_fields(fields: Mapping[str, Any]) -> dict[str, Any]:
    """The first :data:`MAX_LOG_FIELDS` of ``fields``, and how many were dropped, if any."""
    kept = dict(islice(fields.items(), MAX_LOG_FIELDS))
    if len(fields) > MAX_LOG_FIELDS:
        kept["fields_dropped"] = len(fields) - MAX_LOG_FIELDS
    return kept


def hide(value: Any, text: str, placeholder: str) -> Any:
    """``value`` (plain data) with every occurrence of ``text`` in its strings replaced."""
    if isinstance(value, str):
        return value.replace(text, placeholder) if text in value else value
    if isinstance(value, dict):
        return {hide(k, text, placeholder): hide(v, text, placeholder) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return type(value)(hide(item, text, placeholder) for item in value)
    return value


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
        """Take a line of ``size`` bytes if the bucket and the cap allow it; else count it dropped."""
        if self.refuses(size):
            return False
        self.tokens -= 1
        self.bytes += size
        return True

    def refuses(self, size: int) -> bool:
        """Whether a line of at least ``size`` bytes would be dropped now (then it is counted
        dropped): a flood is turned away before its lines are redacted and measured."""
        now = time.monotonic()
        self.tokens = min(self.burst, self.tokens + (now - self.stamp) * self.rate)
        self.stamp = now
        if self.tokens < 1 or self.bytes + size > self.max_bytes:
            self.dropped += 1
            return True
        return False

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
        if limit.refuses(min(len(raw), MAX_LINE) + LINE_OVERHEAD):  # no line of these bytes writes less
            return
        text = redact(raw.decode("utf-8", errors="replace"))
        line = text[:MAX_LINE]
        if limit.allow(json_size(line) + LINE_OVERHEAD):
            size = len(raw) + extra
            log.info(name, line=line, **({"truncated": size} if len(text) > MAX_LINE or extra else {}))

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
