"""The pieces of the retry policy: the clocks, the wait, the stop, the server's Retry-After.

The loop itself is tenacity's ``AsyncRetrying`` (see :mod:`corral.models.client`); this
module gives it a full-jitter exponential wait that yields to a longer server-requested
wait, a predicate that retries only transient failures, a stop that does not count tries
the host slept through, and a :class:`~corral.models.tries.Try` record per try so the
daemon can log, journal and trace every retry and its wait.
"""

from __future__ import annotations

import asyncio
import random
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, replace

from tenacity import RetryCallState, wait_exponential

from corral.models.errors import NOT_RETRIED_NOW, ModelError
from corral.models.tries import Try
from corral.schedule.clock import Clock


def time_asleep() -> float:
    """Seconds this machine has slept since it booted: ``elapsed - awake`` of :class:`~corral.schedule.clock.Clock`.

    Only its growth means something. Where the platform has no clock that counts through
    sleep, both are the same clock and it stays at 0.
    """
    reading = Clock().read()
    return reading.elapsed - reading.awake


@dataclass(frozen=True, slots=True)
class Timing:
    """The clocks, the sleep and the randomness the gateway uses; tests pass fakes.

    ``monotonic`` measures durations and breaker cool-downs, ``wall`` turns an HTTP-date
    ``Retry-After`` into seconds, ``random`` draws the jitter in [0, 1), ``slept`` says
    how long the host has slept so far (seconds; only its growth matters), so a try the
    host slept through can be told from one the endpoint failed.
    """

    monotonic: Callable[[], float] = time.monotonic
    wall: Callable[[], float] = time.time
    sleep: Callable[[float], Awaitable[None]] = asyncio.sleep
    random: Callable[[], float] = random.random
    slept: Callable[[], float] = time_asleep


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


class RetryStop:
    """tenacity stop: after ``attempts`` tries, where a try the host slept through does not count.

    Up to ``attempts`` such tries go uncounted; any more count like other tries, so a host
    that sleeps through every try still ends the call, after ``2 * attempts`` tries.
    """

    def __init__(self, attempts: int, log: TryLog) -> None:
        self.attempts = attempts
        self._log = log

    def __call__(self, state: RetryCallState) -> bool:
        uncounted = min(self._log.slept_tries, self.attempts)
        return state.attempt_number - uncounted >= self.attempts


class TryLog:
    """Collects a call's attempts and reports each one once, with the wait that follows it.

    The try records itself when it ends; tenacity's ``before_sleep`` fills in the wait and
    reports it; :meth:`finish` reports the last one (no wait follows it). ``slept`` is
    :attr:`Timing.slept`, read by :meth:`slept_since_last`.
    """

    def __init__(self, endpoint: str, on_attempt: Callable[[Try], None] | None, slept: Callable[[], float]) -> None:
        self.endpoint = endpoint
        self.attempts: list[Try] = []
        self._pending: Try | None = None
        self._on_attempt = on_attempt
        self._slept = slept
        self._slept_mark = slept()

    def slept_since_last(self) -> float:
        """Seconds the host slept since the previous try ended (the call began, for the first).

        The wait before a try counts with it: a try that starts as the host wakes meets a
        network still reconnecting.
        """
        now = self._slept()
        seconds, self._slept_mark = now - self._slept_mark, now
        return seconds

    @property
    def slept_tries(self) -> int:
        """Tries so far that the host slept through, the one that just ended included."""
        ended = [*self.attempts, self._pending] if self._pending is not None else self.attempts
        return sum(1 for attempt in ended if attempt.slept)

    @property
    def next_number(self) -> int:
        """The 1-based number of the try about to start."""
        return len(self.attempts) + 1

    def record(self, attempt: Try) -> None:
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
