"""The pieces of the retry policy: the clock, the wait, the server's Retry-After, the attempt record.

The loop itself is tenacity's ``AsyncRetrying`` (see :mod:`corral.models.client`); this
module gives it a full-jitter exponential wait that yields to a longer server-requested
wait, a predicate that retries only transient failures, and an :class:`Attempt` record per
try so the daemon can log, journal and trace every retry and its wait.
"""

from __future__ import annotations

import asyncio
import random
import time
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import asdict, dataclass, replace
from email.utils import parsedate_to_datetime
from typing import Any

from tenacity import RetryCallState, wait_exponential

from corral.models.errors import NOT_RETRIED_NOW, ModelError


@dataclass(frozen=True, slots=True)
class Timing:
    """The clocks, the sleep and the randomness the gateway uses; tests pass fakes.

    ``monotonic`` measures durations and breaker cool-downs, ``wall`` turns an HTTP-date
    ``Retry-After`` into seconds, ``random`` draws the jitter in [0, 1).
    """

    monotonic: Callable[[], float] = time.monotonic
    wall: Callable[[], float] = time.time
    sleep: Callable[[float], Awaitable[None]] = asyncio.sleep
    random: Callable[[], float] = random.random


@dataclass(frozen=True, slots=True)
class Attempt:
    """One try of a model call, as it ended.

    ``status`` is the HTTP status (``None`` when no answer came), ``kind`` and ``message``
    describe the failure (``None`` on success). ``held`` is the time spent waiting, before
    sending, for a ``Retry-After`` another caller of the endpoint was given; ``elapsed``
    the time from the start of the try to its end, ``held`` included. ``wait`` is the pause
    before the next try, ``None`` when none followed; ``retry_after`` what the server asked
    for.
    """

    endpoint: str
    number: int
    status: int | None
    kind: str | None
    message: str | None
    elapsed: float
    held: float = 0.0
    wait: float | None = None
    retry_after: float | None = None
    request_id: str | None = None

    @property
    def ok(self) -> bool:
        """Whether this try produced the response."""
        return self.kind is None

    def to_dict(self) -> dict[str, Any]:
        """Builtins only, for msgpack and log fields."""
        return asdict(self)

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> Attempt:
        """Read back :meth:`to_dict`."""
        return cls(**{key: data[key] for key in cls.__dataclass_fields__ if key in data})


def retry_after_seconds(headers: Mapping[str, str], now: float) -> float | None:
    """Seconds the server asks to wait, from ``retry-after-ms`` or ``Retry-After``; None if absent or unreadable.

    ``retry-after-ms`` (OpenAI, more precise) wins over ``Retry-After``, which is either
    delta-seconds or an HTTP-date compared with ``now`` (Unix seconds). A date in the past
    means "now": 0.
    """
    millis = headers.get("retry-after-ms")
    if millis is not None:
        try:
            value = float(millis)
        except ValueError:
            value = -1.0
        if value >= 0 and value != float("inf"):
            return value / 1000
    text = headers.get("retry-after")
    if text is None:
        return None
    text = text.strip()
    try:
        seconds = float(text)
    except ValueError:
        try:
            when = parsedate_to_datetime(text)
        except (TypeError, ValueError, IndexError):
            return None
        if when.tzinfo is None:  # RFC 9110 dates are GMT even when the zone is missing
            return None
        return max(0.0, when.timestamp() - now)
    return seconds if 0 <= seconds != float("inf") else None


def should_retry(exc: BaseException) -> bool:
    """Retry a transient failure (timeouts, drops, 408/409/429/5xx listed), never one that needs a fix."""
    return isinstance(exc, ModelError) and exc.retryable and exc.kind not in NOT_RETRIED_NOW


class RetryWait:
    """tenacity wait: full-jitter exponential backoff, or the server's Retry-After when longer.

    Full jitter (a uniform draw between 0 and the capped exponential) spreads out callers
    that failed together, so they do not come back together. The server's wait was already
    bounded by ``max_retry_after`` when the failure was classified.
    """

    def __init__(self, initial: float, cap: float, draw: Callable[[], float]) -> None:
        self._ceiling = wait_exponential(multiplier=initial, max=cap)
        self._draw = draw

    def __call__(self, state: RetryCallState) -> float:
        backoff = self._draw() * self._ceiling(state)
        error = state.outcome.exception() if state.outcome is not None else None
        server = error.retry_after if isinstance(error, ModelError) and error.retry_after is not None else 0.0
        return max(backoff, server)


class AttemptLog:
    """Collects a call's attempts and reports each one once, with the wait that follows it.

    The try records itself when it ends; tenacity's ``before_sleep`` fills in the wait and
    reports it; :meth:`finish` reports the last one (no wait follows it).
    """

    def __init__(self, endpoint: str, on_attempt: Callable[[Attempt], None] | None) -> None:
        self.endpoint = endpoint
        self.attempts: list[Attempt] = []
        self._pending: Attempt | None = None
        self._on_attempt = on_attempt

    @property
    def next_number(self) -> int:
        """The 1-based number of the try about to start."""
        return len(self.attempts) + 1

    def record(self, attempt: Attempt) -> None:
        """A try ended; it is reported once its wait is known."""
        self._pending = attempt

    def before_sleep(self, state: RetryCallState) -> None:
        """tenacity hook: the wait before the next try is decided."""
        wait = state.next_action.sleep if state.next_action is not None else None
        self._emit(wait)

    def finish(self) -> None:
        """The call is over; report the last try."""
        self._emit(None)

    @property
    def waited(self) -> float:
        """Seconds spent between tries and held back before them."""
        return sum((attempt.wait or 0.0) + attempt.held for attempt in self.attempts)

    def _emit(self, wait: float | None) -> None:
        if self._pending is None:
            return
        attempt = replace(self._pending, wait=wait)
        self._pending = None
        self.attempts.append(attempt)
        if self._on_attempt is not None:
            self._on_attempt(attempt)
