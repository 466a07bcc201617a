"""Circuit breakers per downstream (a model endpoint, a tool's host or plugin, an MCP server),
shared by every caller of that downstream in the daemon.

closed -> open after ``failures`` consecutive failures; open -> half-open once
``cool_down`` seconds have passed; in half-open exactly one trial call goes through (the
others fail fast), its success closes the breaker and its failure opens it again. A
``Retry-After`` that one caller receives becomes a hold that every caller waits out
before sending. Every state change is passed to ``on_change`` so the daemon can alert
when a downstream goes down and when it comes back.

:class:`Breakers` is the daemon's registry: one breaker per downstream name, created on
first use, so two agents calling one host share its breaker. Callers on the event loop
(models, MCP over HTTP) use :meth:`CircuitBreaker.acquire`, which waits out holds; the
step path on the store writer's thread uses :meth:`CircuitBreaker.admit`, which never
waits. Every method takes the breaker's lock while it changes state, so both may use one
breaker. ``on_change`` is called under that lock, after the state has changed: it must be
quick and must not raise (its exception would reach the caller whose call caused the change).

Written here rather than taken from PyPI: aiobreaker 1.2.0 lets every caller through in
half-open, mixes ``datetime.now()`` with ``utcnow()`` for the cool-down (wrong outside
UTC), and has no injectable clock; purgatory 3.0.1 also lets every caller through in
half-open and times the cool-down with the wall clock (``time.time()``, which jumps); and
neither has a Retry-After hold.
"""

from __future__ import annotations

import enum
import threading
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Literal

from corral.errors import CorralError

DEFAULT_FAILURES = 5
"""Consecutive failures that open a breaker when nothing else is configured."""
DEFAULT_COOL_DOWN = 30.0
"""Seconds an open breaker stays open when nothing else is configured."""

_KINDS: dict[str, str] = {"tool": "tool downstream", "mcp": "MCP server"}


def describe(downstream: str) -> tuple[str, str]:
    """``(kind, name)`` of a breaker's name: ``("tool", "example.com")`` for ``tool:example.com``,
    ``("model", "gpt")`` for a model's."""
    kind, sep, name = downstream.partition(":")
    return (kind, name) if sep and kind in _KINDS else ("model", downstream)


def downstream_label(downstream: str) -> str:
    """How people read a breaker's name: ``model 'gpt'``, ``tool downstream 'example.com'``."""
    kind, name = describe(downstream)
    return f"{_KINDS.get(kind, kind)} {name!r}"


class BreakerState(enum.StrEnum):
    """Whether calls reach the downstream: all (closed), none (open), one trial (half-open)."""

    CLOSED = "closed"
    OPEN = "open"
    HALF_OPEN = "half_open"


@dataclass(frozen=True, slots=True)
class BreakerChange:
    """A transition, for alerts: ``retry_in`` is the cool-down when the breaker opens."""

    downstream: str
    old: BreakerState
    new: BreakerState
    reason: str
    retry_in: float | None = None


@dataclass(frozen=True, slots=True)
class Permit:
    """Leave to send one request; hand it back through exactly one of the ``record_*`` methods."""

    trial: bool
    held: float


class BreakerOpen(CorralError):
    """Model or agent author: the call was not sent because its downstream's breaker refuses it.

    ``kind`` is ``breaker_open`` (open, or another caller's trial is out) or
    ``retry_after_too_long`` (every caller must wait longer than the caller accepts);
    ``retry_after`` says when trying again makes sense. Callers turn it into their own
    error (a ``ModelError``, a tool's failed result) with the same message.
    """

    def __init__(
        self,
        message: str,
        *,
        kind: Literal["breaker_open", "retry_after_too_long"],
        downstream: str,
        retry_after: float | None = None,
    ) -> None:
        self.message = message
        self.kind: Literal["breaker_open", "retry_after_too_long"] = kind
        self.downstream = downstream
        self.retry_after = retry_after
        super().__init__(message)


class CircuitBreaker:
    """State shared by all callers of one downstream; see the module docstring for the rules.

    ``label`` names the downstream in messages (``"model endpoint 'gpt'"``); it defaults to
    the quoted name.
    """

    def __init__(
        self,
        downstream: str,
        *,
        failures: int,
        cool_down: float,
        clock: Callable[[], float] = time.monotonic,
        on_change: Callable[[BreakerChange], None] | None = None,
        label: str | None = None,
    ) -> None:
        self.downstream = downstream
        self.label = label or repr(downstream)
        self.configure(failures, cool_down)
        self._clock = clock
        self._on_change = on_change
        self._lock = threading.RLock()
        self._state = BreakerState.CLOSED
        self._consecutive = 0
        self._opened_at = 0.0
        self._trial_out = False
        self._held_until = 0.0
        self._hold_reason = ""

    def configure(self, failures: int, cool_down: float) -> None:
        """Take new settings (a reloaded config); the state and the count are kept."""
        if failures < 1 or cool_down <= 0:
            raise ValueError("a breaker needs failures >= 1 and cool_down > 0")
        self.failures: int = failures
        self.cool_down: float = cool_down

    def reset(self, reason: str) -> None:
        """Forget the failures (the downstream itself changed: a reload moved a model to
        another endpoint); an open breaker closes, with ``reason``."""
        with self._lock:
            self._consecutive = 0
            self._trial_out = False
            self._held_until = 0.0
            self._change(BreakerState.CLOSED, reason)

    @property
    def state(self) -> BreakerState:
        """The current state, moving open to half-open when the cool-down is over."""
        with self._lock:
            if self._state is BreakerState.OPEN and self._clock() >= self._opened_at + self.cool_down:
                self._change(
                    BreakerState.HALF_OPEN, f"cool-down of {self.cool_down:g} s is over; one trial call may go"
                )
            return self._state

    @property
    def consecutive_failures(self) -> int:
        """Failures since the last success."""
        return self._consecutive

    def hold_remaining(self) -> float:
        """Seconds before the downstream's last Retry-After expires (0 when none is pending)."""
        return max(0.0, self._held_until - self._clock())

    def admit(self) -> Permit:
        """Grant one request now, or raise :class:`BreakerOpen`; never waits (a hold is not waited out)."""
        with self._lock:
            self._refuse_if_closed_to_calls()
            return self._permit(0.0)

    async def acquire(self, *, max_hold: float, sleep: Callable[[float], Awaitable[None]]) -> Permit:
        """Wait out any Retry-After hold, then grant one request, or fail fast.

        Raises :class:`BreakerOpen`: ``breaker_open`` while open or while another caller's
        trial is out, ``retry_after_too_long`` when the hold is longer than ``max_hold``.
        """
        held = 0.0
        while True:
            with self._lock:
                self._refuse_if_closed_to_calls()
                remaining = self.hold_remaining()
                if remaining <= 0:
                    return self._permit(held)
                if remaining > max_hold:
                    raise BreakerOpen(
                        f"{self.label} asked every caller to wait {remaining:.0f} s ({self._hold_reason}), longer"
                        f" than max_retry_after ({max_hold:g} s); this call was not sent. Try again later, or raise"
                        " max_retry_after for it.",
                        kind="retry_after_too_long",
                        downstream=self.downstream,
                        retry_after=remaining,
                    )
            await sleep(remaining)
            held += remaining

    def hold(self, seconds: float, reason: str) -> None:
        """Hold every caller back for ``seconds`` (a Retry-After); a longer hold already set stays."""
        with self._lock:
            until = self._clock() + seconds
            if until > self._held_until:
                self._held_until = until
                self._hold_reason = reason

    def record_success(self, permit: Permit) -> None:
        """The downstream answered as it should (a refusal that is the caller's fault counts too)."""
        with self._lock:
            self._consecutive = 0
            if permit.trial:
                self._trial_out = False
                self._change(BreakerState.CLOSED, "the trial call succeeded")

    def record_failure(self, permit: Permit, reason: str) -> None:
        """The downstream failed (5xx, timeout, dropped connection, garbage): count it."""
        with self._lock:
            self._consecutive += 1
            if permit.trial:
                self._trial_out = False
                self._open(f"the trial call failed: {reason}")
            elif self._state is BreakerState.CLOSED and self._consecutive >= self.failures:
                self._open(f"{self._consecutive} consecutive failures, the last: {reason}")

    def record_neutral(self, permit: Permit) -> None:
        """No verdict (the call was cancelled, or rate-limited): a trial slot is given back."""
        with self._lock:
            if permit.trial:
                self._trial_out = False

    def _refuse_if_closed_to_calls(self) -> None:
        """Raise :class:`BreakerOpen` while open, or while another caller's trial is out."""
        state = self.state
        if state is BreakerState.OPEN:
            raise self._open_error()
        if state is BreakerState.HALF_OPEN and self._trial_out:
            raise self._probing_error()

    def _permit(self, held: float) -> Permit:
        trial = self._state is BreakerState.HALF_OPEN
        self._trial_out = self._trial_out or trial
        return Permit(trial=trial, held=held)

    def _open(self, reason: str) -> None:
        self._opened_at = self._clock()
        self._change(BreakerState.OPEN, reason, retry_in=self.cool_down)

    def _open_error(self) -> BreakerOpen:
        wait = max(0.0, self._opened_at + self.cool_down - self._clock())
        return BreakerOpen(
            f"{self.label} is failing ({self._consecutive} consecutive failures), so its circuit breaker is open"
            f" and this call was not sent; corral will try it again in {wait:.1f} s.",
            kind="breaker_open",
            downstream=self.downstream,
            retry_after=wait,
        )

    def _probing_error(self) -> BreakerOpen:
        return BreakerOpen(
            f"{self.label} is recovering from failures and one trial call is probing it now; this call was"
            " not sent. Try again in a moment.",
            kind="breaker_open",
            downstream=self.downstream,
        )

    def _change(self, new: BreakerState, reason: str, *, retry_in: float | None = None) -> None:
        old = self._state
        self._state = new
        if old is not new and self._on_change is not None:
            self._on_change(BreakerChange(self.downstream, old, new, reason, retry_in))


class Breakers:
    """The daemon's breakers, one per downstream name, shared by every agent and run.

    ``on_change`` receives every transition of every breaker (the daemon posts it as a
    ``breaker_changed`` event). Names say whose breaker it is (:func:`describe`): a model's is
    its name, a tool's ``tool:`` and its downstream (a host, or the plugin that offers the
    tool), an MCP server's ``mcp:`` and the server's name, so a model and a host never share
    a breaker by accident.
    """

    def __init__(
        self,
        *,
        clock: Callable[[], float] = time.monotonic,
        on_change: Callable[[BreakerChange], None] | None = None,
    ) -> None:
        self._clock = clock
        self._on_change = on_change
        self._lock = threading.Lock()
        self._breakers: dict[str, CircuitBreaker] = {}

    def get(
        self,
        downstream: str,
        *,
        failures: int = DEFAULT_FAILURES,
        cool_down: float = DEFAULT_COOL_DOWN,
        label: str | None = None,
    ) -> CircuitBreaker:
        """The breaker of ``downstream``, created on first use; its settings become the ones given.

        Callers sharing a downstream should pass the same settings: the last caller's win.
        """
        with self._lock:
            breaker = self._breakers.get(downstream)
            if breaker is None:
                breaker = self._breakers[downstream] = CircuitBreaker(
                    downstream,
                    failures=failures,
                    cool_down=cool_down,
                    clock=self._clock,
                    on_change=self._on_change,
                    label=label,
                )
            elif (breaker.failures, breaker.cool_down) != (failures, cool_down):
                breaker.configure(failures, cool_down)
            return breaker

    def reset(self, downstream: str, reason: str) -> None:
        """Close ``downstream``'s breaker and forget its failures, if it has one."""
        with self._lock:
            breaker = self._breakers.get(downstream)
        if breaker is not None:
            breaker.reset(reason)

    def states(self) -> dict[str, BreakerState]:
        """Every known breaker's state, by downstream name."""
        with self._lock:
            breakers = list(self._breakers.values())
        return {breaker.downstream: breaker.state for breaker in breakers}
