"""A circuit breaker per model endpoint, shared by every caller of that endpoint in the daemon.

closed -> open after ``failures`` consecutive failures; open -> half-open once
``cool_down`` seconds have passed; in half-open exactly one trial call goes through (the
others fail fast), its success closes the breaker and its failure opens it again. A
``Retry-After`` that one caller receives becomes a hold that every caller waits out
before sending. Every state change is passed to ``on_change`` so the daemon can alert
when an endpoint goes down and when it comes back.

Written here rather than taken from PyPI: aiobreaker 1.2.0 lets every caller through in
half-open, mixes ``datetime.now()`` with ``utcnow()`` for the cool-down (wrong outside
UTC), and has no injectable clock; purgatory 3.0.1 also lets every caller through in
half-open and times the cool-down with the wall clock (``time.time()``, which jumps); and
neither has a Retry-After hold.

Use a breaker from one event loop (the daemon's); its methods never await while they
change state, so callers on that loop cannot interleave inside a transition. ``on_change``
is called after the state has changed and must not raise (its exception would reach the
caller whose call caused the change).
"""

from __future__ import annotations

import enum
from collections.abc import Awaitable, Callable
from dataclasses import dataclass

from corral.models.errors import ModelError


class BreakerState(enum.StrEnum):
    """Whether calls reach the endpoint: all (closed), none (open), one trial (half-open)."""

    CLOSED = "closed"
    OPEN = "open"
    HALF_OPEN = "half_open"


@dataclass(frozen=True, slots=True)
class BreakerChange:
    """A transition, for alerts: ``retry_in`` is the cool-down when the breaker opens."""

    endpoint: str
    old: BreakerState
    new: BreakerState
    reason: str
    retry_in: float | None = None


@dataclass(frozen=True, slots=True)
class Permit:
    """Leave to send one request; hand it back through exactly one of the ``record_*`` methods."""

    trial: bool
    held: float


class CircuitBreaker:
    """State shared by all callers of one endpoint; see the module docstring for the rules."""

    def __init__(
        self,
        endpoint: str,
        *,
        failures: int,
        cool_down: float,
        clock: Callable[[], float],
        on_change: Callable[[BreakerChange], None] | None = None,
    ) -> None:
        if failures < 1 or cool_down <= 0:
            raise ValueError("a breaker needs failures >= 1 and cool_down > 0")
        self.endpoint = endpoint
        self.failures = failures
        self.cool_down = cool_down
        self._clock = clock
        self._on_change = on_change
        self._state = BreakerState.CLOSED
        self._consecutive = 0
        self._opened_at = 0.0
        self._trial_out = False
        self._held_until = 0.0
        self._hold_reason = ""

    @property
    def state(self) -> BreakerState:
        """The current state, moving open to half-open when the cool-down is over."""
        if self._state is BreakerState.OPEN and self._clock() >= self._opened_at + self.cool_down:
            self._change(BreakerState.HALF_OPEN, f"cool-down of {self.cool_down:g} s is over; one trial call may go")
        return self._state

    @property
    def consecutive_failures(self) -> int:
        """Failures since the last success."""
        return self._consecutive

    def hold_remaining(self) -> float:
        """Seconds before the endpoint's last Retry-After expires (0 when none is pending)."""
        return max(0.0, self._held_until - self._clock())

    async def acquire(self, *, max_hold: float, sleep: Callable[[float], Awaitable[None]]) -> Permit:
        """Wait out any Retry-After hold, then grant one request, or fail fast.

        Raises ModelError ``breaker_open`` while open or while another caller's trial is
        out, and ``retry_after_too_long`` when the hold is longer than ``max_hold``.
        """
        held = 0.0
        while True:
            state = self.state
            if state is BreakerState.OPEN:
                raise self._open_error()
            if state is BreakerState.HALF_OPEN and self._trial_out:
                raise ModelError(
                    f"model endpoint {self.endpoint!r} is recovering from failures and one trial call is"
                    " probing it now; this call was not sent. Try again in a moment.",
                    kind="breaker_open",
                    retryable=True,
                    endpoint=self.endpoint,
                )
            remaining = self.hold_remaining()
            if remaining <= 0:
                break
            if remaining > max_hold:
                raise ModelError(
                    f"model endpoint {self.endpoint!r} asked every caller to wait {remaining:.0f} s"
                    f" ({self._hold_reason}), longer than max_retry_after ({max_hold:g} s); this call was not sent."
                    " Try again later, or raise max_retry_after for this endpoint.",
                    kind="retry_after_too_long",
                    retryable=True,
                    endpoint=self.endpoint,
                    retry_after=remaining,
                )
            await sleep(remaining)
            held += remaining
        trial = self._state is BreakerState.HALF_OPEN
        self._trial_out = self._trial_out or trial
        return Permit(trial=trial, held=held)

    def hold(self, seconds: float, reason: str) -> None:
        """Hold every caller back for ``seconds`` (a Retry-After); a longer hold already set stays."""
        until = self._clock() + seconds
        if until > self._held_until:
            self._held_until = until
            self._hold_reason = reason

    def record_success(self, permit: Permit) -> None:
        """The endpoint answered as it should (a 4xx that is the caller's fault counts too)."""
        self._consecutive = 0
        if permit.trial:
            self._trial_out = False
            self._change(BreakerState.CLOSED, "the trial call succeeded")

    def record_failure(self, permit: Permit, reason: str) -> None:
        """The endpoint failed (5xx, timeout, dropped connection, garbage): count it."""
        self._consecutive += 1
        if permit.trial:
            self._trial_out = False
            self._open(f"the trial call failed: {reason}")
        elif self._state is BreakerState.CLOSED and self._consecutive >= self.failures:
            self._open(f"{self._consecutive} consecutive failures, the last: {reason}")

    def record_neutral(self, permit: Permit) -> None:
        """No verdict (the call was cancelled, or rate-limited): a trial slot is given back."""
        if permit.trial:
            self._trial_out = False

    def _open(self, reason: str) -> None:
        self._opened_at = self._clock()
        self._change(BreakerState.OPEN, reason, retry_in=self.cool_down)

    def _open_error(self) -> ModelError:
        wait = max(0.0, self._opened_at + self.cool_down - self._clock())
        return ModelError(
            f"model endpoint {self.endpoint!r} is failing ({self._consecutive} consecutive failures), so its circuit"
            f" breaker is open and this call was not sent; corral will try the endpoint again in {wait:.1f} s.",
            kind="breaker_open",
            retryable=True,
            endpoint=self.endpoint,
            retry_after=wait,
        )

    def _change(self, new: BreakerState, reason: str, *, retry_in: float | None = None) -> None:
        old = self._state
        self._state = new
        if old is not new and self._on_change is not None:
            self._on_change(BreakerChange(self.endpoint, old, new, reason, retry_in))
