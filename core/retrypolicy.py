"""How a tool call is retried: the policy a tool declares, and the decision after each failed try.

A :class:`RetryPolicy` is what ``@corral.tool(retry=...)`` takes and what ``[tools.NAME]``
``retries``/``backoff`` override: how many tries after the first, the exponential backoff's
first and longest wait, and the longest ``Retry-After`` worth waiting for. The wait is
tenacity's ``wait_exponential`` with full jitter (a uniform draw between 0 and the capped
exponential, so callers that failed together do not come back together), or the error's
``retry_after`` when that is longer.

A retry happens only when it is safe (:func:`next_try`): the failure is transient and
either the tool is idempotent (read-only tools are) and is run again with the same
idempotency key, or the error says the effect did not happen
(``corral.ToolError(..., retryable=True)``). Callers on an event loop (MCP over HTTP) get
the same policy as a tenacity loop from :meth:`RetryPolicy.retrying`; the step path, which
must never sleep, asks :func:`next_try` and schedules the next try itself.
"""

from __future__ import annotations

import random
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass
from email.utils import parsedate_to_datetime
from typing import TYPE_CHECKING, Any

from corral.durations import format_duration, parse_duration

if TYPE_CHECKING:
    from tenacity import AsyncRetrying, RetryCallState

DEFAULT_RETRIES = 3
DEFAULT_BACKOFF = (1.0, 30.0)
DEFAULT_MAX_RETRY_AFTER = 60.0
MAX_RETRIES = 100


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


def parse_backoff(value: object) -> tuple[float, float]:
    """``"1s..30s"`` (first wait .. longest wait) as seconds; a ValueError says how to write it."""
    if isinstance(value, tuple | list) and len(value) == 2:
        first, longest = (parse_duration(part) for part in value)
    elif isinstance(value, str) and ".." in value:
        try:
            first, longest = (parse_duration(part) for part in value.split("..", 1))
        except ValueError:
            raise ValueError(f'{value!r} is not a backoff; write "FIRST..LONGEST", e.g. "1s..30s"') from None
    else:
        raise ValueError(f'{value!r} is not a backoff; write "FIRST..LONGEST", e.g. "1s..30s"')
    if first <= 0 or longest < first:
        raise ValueError(f'backoff {value!r} must start above zero and end at or above its start, e.g. "1s..30s"')
    return first, longest


@dataclass(frozen=True, init=False)
class RetryPolicy:
    """Retries of one tool: ``retries`` tries after the first, waits growing from
    ``backoff[0]`` to at most ``backoff[1]`` seconds, a ``Retry-After`` honoured up to
    ``max_retry_after`` seconds (a longer one ends the call at once).

    ``backoff`` may be written ``"1s..30s"`` or ``(1, 30)``, ``max_retry_after`` ``"1m"``
    or ``60``; both are kept as seconds. A bad value raises ValueError naming it and how
    to write it.
    """

    retries: int
    backoff: tuple[float, float]
    max_retry_after: float

    def __init__(
        self,
        retries: int = DEFAULT_RETRIES,
        backoff: str | tuple[float, float] = DEFAULT_BACKOFF,
        max_retry_after: float | str = DEFAULT_MAX_RETRY_AFTER,
    ) -> None:
        if isinstance(retries, bool) or not isinstance(retries, int) or not 0 <= retries <= MAX_RETRIES:
            raise ValueError(
                f"retries={retries!r} must be a whole number from 0 to {MAX_RETRIES} (tries after the first)"
            )
        try:
            most = parse_duration(max_retry_after)
        except ValueError as exc:
            raise ValueError(f"max_retry_after: {exc}") from None
        object.__setattr__(self, "retries", retries)
        object.__setattr__(self, "backoff", parse_backoff(backoff))
        object.__setattr__(self, "max_retry_after", most)

    @property
    def tries(self) -> int:
        """Tries in all, the first included."""
        return self.retries + 1

    def describe(self) -> str:
        """``"3 retries, backoff 1s..30s"``: for ``corral tools`` and messages."""
        first, longest = (format_duration(seconds) for seconds in self.backoff)
        return f"{self.retries} retries, backoff {first}..{longest}"

    def wait(self, number: int, retry_after: float | None = None, draw: float | None = None) -> float:
        """Seconds to wait after failed try ``number`` (1-based): full jitter, or ``retry_after`` if longer.

        tenacity is imported here, not at the top: a policy is also built in the agent's
        process, where the tool is defined, and only the daemon waits."""
        from tenacity import RetryCallState, wait_exponential

        state = RetryCallState(None, None, (), {})  # type: ignore[arg-type]
        state.attempt_number = number
        ceiling = wait_exponential(multiplier=self.backoff[0], max=self.backoff[1])(state)
        backoff = (random.random() if draw is None else draw) * ceiling
        return max(backoff, retry_after or 0.0)

    def retrying(
        self,
        retry: Callable[[BaseException], bool],
        *,
        retry_after: Callable[[BaseException], float | None] = lambda exc: None,
        sleep: Callable[[float], Awaitable[None]] | None = None,
        before_sleep: Callable[[RetryCallState], None] | None = None,
        draw: Callable[[], float] = random.random,
    ) -> AsyncRetrying:
        """A tenacity loop for a call made on an event loop (an MCP server over HTTP).

        ``retry`` says whether an exception is transient and safe to retry (tenacity's
        predicate; nothing else is retried), ``retry_after`` reads the server's wait from
        one. The loop re-raises the last exception (``reraise=True``). Use it as
        ``await policy.retrying(...)(call, *args)``.
        """
        from tenacity import AsyncRetrying, retry_if_exception, stop_after_attempt

        def wait(state: RetryCallState) -> float:
            error = state.outcome.exception() if state.outcome is not None else None
            asked = retry_after(error) if error is not None else None
            return self.wait(state.attempt_number, asked, draw())

        options: dict[str, Any] = {} if sleep is None else {"sleep": sleep}
        return AsyncRetrying(
            stop=stop_after_attempt(self.tries),
            wait=wait,
            retry=retry_if_exception(retry),
            before_sleep=before_sleep,
            reraise=True,
            **options,
        )


@dataclass(frozen=True)
class NextTry:
    """What follows a failed try: ``wait`` seconds then another, or (``wait`` None) the end, with why."""

    wait: float | None
    why_not: str = ""


def next_try(
    policy: RetryPolicy | None, *, number: int, idempotent: bool, error: Mapping[str, Any], draw: float | None = None
) -> NextTry:
    """Whether failed try ``number`` of a call is tried again, from the error the tool reported.

    ``error`` carries ``transient`` (the failure may pass: a connection refused, a timeout,
    a ``ToolError(retryable=True)``), ``no_effect`` (the tool says the call did nothing:
    ``ToolError(retryable=True)``) and ``retry_after`` (seconds the downstream asked for).
    """
    if policy is None or not policy.retries or not error.get("transient"):
        return NextTry(None)
    if not (idempotent or error.get("no_effect")):
        return NextTry(
            None,
            "not retried: the tool is not idempotent and the failure does not say the call had no effect "
            "(raise corral.ToolError(..., retryable=True) when it did not)",
        )
    if number >= policy.tries:
        return NextTry(None, f"gave up after {number} tries ({policy.describe()})")
    asked = error.get("retry_after")
    if isinstance(asked, int | float) and asked > policy.max_retry_after:
        return NextTry(
            None,
            f"the downstream asked to wait {asked:.0f} s, longer than max_retry_after "
            f"({policy.max_retry_after:g} s); try again later",
        )
    return NextTry(policy.wait(number, asked if isinstance(asked, int | float) else None, draw))
