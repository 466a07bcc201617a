"""Daily model budgets: what each agent and all agents together have spent each day.

Two numbers make a day's spend: *settled* (calls that finished, durable in the store's
``spend`` database in the same commit as the call's journal entry) and *reserved* (calls
in flight, held at their worst case: every input token and the whole output cap). A call
may start only if settled + reserved + its own worst case stays within every cap, so
calls that run at the same time cannot overshoot a cap together. After the call, the
reservation is replaced by what the provider reported.

Days are calendar days in ``[corral] timezone`` (the machine's local zone by default):
an operator's "per day" means their midnight. A day's settled totals always come from
the store, whenever that day becomes the clock's day again (after midnight, a restart,
or the wall clock stepped back onto a day that already has spend), so no day's caps
are ever counted from zero twice. Soft thresholds are found in the commit that crosses
them (the store's totals of a day only grow), so each fires exactly once a day, across
restarts too.
"""

from __future__ import annotations

import datetime as dt
import threading
import time
from collections import OrderedDict
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from decimal import Decimal
from typing import TYPE_CHECKING, Any

from corral.store.schema import pack, unpack

if TYPE_CHECKING:
    import lmdb

    from corral.config import CorralConfig
    from corral.config.budget import Caps

DB = "spend"
MICRO = Decimal(1_000_000)
CACHED_DAYS = 4
"""Days whose totals a ledger keeps in memory besides those with calls in flight; a day
dropped is read from the store again when the clock comes back to it."""


def day_of(ts: float, zone: dt.tzinfo | None = None) -> str:
    """The calendar day of ``ts`` in ``zone`` (None: the machine's local zone), as ``YYYY-MM-DD``."""
    return dt.datetime.fromtimestamp(ts, zone).date().isoformat()


def next_day(ts: float, zone: dt.tzinfo | None = None) -> float:
    """The epoch time of the midnight after ``ts`` in ``zone`` (None: the machine's local zone).

    Wall-clock arithmetic in the zone, so a day with a daylight-saving change is 23 or 25
    hours long; a midnight skipped by a change becomes the first instant of the new day.
    """
    tomorrow = dt.datetime.fromtimestamp(ts, zone).date() + dt.timedelta(days=1)
    return dt.datetime.combine(tomorrow, dt.time(), tzinfo=zone).timestamp()


def _renewal(until: float, config: CorralConfig) -> str:
    """``until`` (a budget day's end) as the operator reads it: ``2026-11-25 00:00 Europe/Paris``."""
    when = dt.datetime.fromtimestamp(until, config.zone)
    return f"{when:%Y-%m-%d %H:%M} {config.timezone or 'local time'}"


def _key(day: str, agent: str = "", model: str = "") -> bytes:
    """``day/agent/model`` rows; ``day/agent/`` is an agent's total, ``day//`` the day's total."""
    return f"{day}\x00{agent}\x00{model}".encode()


@dataclass
class Tally:
    """Spend over some span. Cost is in millionths of a dollar (integers add exactly)."""

    input_tokens: int = 0
    output_tokens: int = 0
    cost_micro_usd: int = 0
    calls: int = 0
    unpriced_calls: int = 0

    @property
    def tokens(self) -> int:
        return self.input_tokens + self.output_tokens

    @property
    def cost_usd(self) -> Decimal:
        return Decimal(self.cost_micro_usd) / MICRO

    def add(self, other: Tally) -> None:
        self.input_tokens += other.input_tokens
        self.output_tokens += other.output_tokens
        self.cost_micro_usd += other.cost_micro_usd
        self.calls += other.calls
        self.unpriced_calls += other.unpriced_calls

    def to_dict(self) -> dict[str, int]:
        return {
            "input_tokens": self.input_tokens,
            "output_tokens": self.output_tokens,
            "cost_micro_usd": self.cost_micro_usd,
            "calls": self.calls,
            "unpriced_calls": self.unpriced_calls,
        }

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> Tally:
        return cls(**{k: int(data.get(k, 0)) for k in cls().to_dict()})


@dataclass(frozen=True)
class Worst:
    """What one call may use at most: held against the day's caps while it is in flight."""

    tokens: int
    cost_micro_usd: int


@dataclass
class Reservation:
    """A call's hold on its day's budgets; give it back with :meth:`Ledger.release` exactly once.

    It belongs to ``day`` (the day whose caps admitted the call) whatever the clock does
    while the call is in flight."""

    agent: str
    day: str
    worst: Worst
    released: bool = False


@dataclass(frozen=True)
class Crossing:
    """A soft threshold crossed by a settled call: ``scope`` is an agent's name or "" for all agents."""

    scope: str
    day: str
    measure: str
    fraction: float
    used: str
    cap: str


@dataclass(frozen=True)
class Refusal:
    """Why a call may not start: which cap of which ``day``, for whom, and until when it stays spent."""

    scope: str
    day: str
    message: str
    until: float


@dataclass
class _Day:
    settled: dict[str, Tally] = field(default_factory=dict)
    reserved: dict[str, Tally] = field(default_factory=dict)

    def in_flight(self) -> bool:
        return any(tally.calls for tally in self.reserved.values())


class Ledger:
    """Each day's spend per agent and in total, for the days the clock has been on lately.

    ``reserve``/``release`` run on the event loop and never read the store; ``load`` and
    ``record`` run on the store writer's thread (in its transactions); a lock keeps the two
    sides consistent. A day is *loaded* once its settled totals have been read from the
    store; ``reserve`` answers None for a day that is not, and the caller loads it through
    the writer and asks again (see :meth:`reserve`).
    """

    def __init__(self, config: CorralConfig, dbs: dict[str, Any], clock: Callable[[], float] = time.time) -> None:
        self.config = config
        self.db = dbs[DB]
        self.clock = clock
        self._lock = threading.Lock()
        self._days: OrderedDict[str, _Day] = OrderedDict()
        """Loaded days, least recently used first."""

    def today(self) -> str:
        """The clock's day in the configured zone."""
        return day_of(self.clock(), self.config.zone)

    def load(self, txn: lmdb.Transaction) -> None:
        """Read today's settled totals from the store, unless this ledger holds them already
        (two calls may both have asked: the second keeps the calls in flight the first saw)."""
        self._load(txn, self.today())

    def _load(self, txn: lmdb.Transaction, day: str) -> None:
        # Only load() and record() add days, both on the writer's thread: nothing can be
        # settled for ``day`` between reading its rows and holding them.
        with self._lock:
            if day in self._days:
                return
        settled = {agent: tally for (_, agent, model), tally in rows(txn, self.db, day) if not model}
        with self._lock:
            self._days[day] = _Day(settled=settled)
            stale = [old for old, kept in self._days.items() if old != day and not kept.in_flight()]
            for old in stale[: max(len(self._days) - CACHED_DAYS, 0)]:  # least recently used first
                del self._days[old]

    def reserve(self, agent: str, worst: Worst) -> Reservation | Refusal | None:
        """Hold ``worst`` against today's caps of ``agent`` and of all agents, or say which cap it would cross.

        None when today is not loaded (the first call of a day or since a restart, or the
        clock moved to another day since the last load): load it with :meth:`load` in a
        store transaction and ask again. Counting a day not loaded from zero is what gave
        a day a second allowance after the clock stepped back onto it; refusing instead
        would fail a run for nothing the operator did.
        """
        now = self.clock()
        day = day_of(now, self.config.zone)
        with self._lock:
            today = self._days.get(day)
            if today is None:
                return None
            self._days.move_to_end(day)
            caps = [("", self.config.budget.day, "[budget]")]
            if (config := self.config.agents.get(agent)) is not None:  # else removed by a reload while running
                caps.insert(0, (agent, config.budget.day, f"[agents.{agent}.budget]"))
            for scope, cap, where in caps:
                used = Tally()
                used.add(today.settled.get(scope, Tally()))
                used.add(today.reserved.get(scope, Tally()))
                over = _over(cap, used, worst, where)
                if over:
                    who = f"agent {agent!r}" if scope else "all agents together"
                    until = next_day(now, self.config.zone)
                    message = (
                        f"the daily model budget of {who} for {day} is spent: {over}; "
                        f"it renews at {_renewal(until, self.config)}"
                    )
                    return Refusal(scope, day, message, until)
            for scope in (agent, ""):
                held = today.reserved.setdefault(scope, Tally())
                held.input_tokens += worst.tokens
                held.cost_micro_usd += worst.cost_micro_usd
                held.calls += 1
            return Reservation(agent, day, worst)

    def release(self, reservation: Reservation) -> None:
        """Give a reservation back to its own day, whichever day it is now: after its
        call's spend is recorded, or when the call was never made."""
        with self._lock:
            if reservation.released:
                return
            reservation.released = True
            held_day = self._days.get(reservation.day)
            if held_day is None:  # not this ledger's reservation: a day with calls in flight is never forgotten
                return
            for scope in (reservation.agent, ""):
                held = held_day.reserved[scope]
                held.input_tokens -= reservation.worst.tokens
                held.cost_micro_usd -= reservation.worst.cost_micro_usd
                held.calls -= 1

    def record(
        self, txn: lmdb.Transaction, agent: str, model: str, spent: Tally, admitted: str | None = None
    ) -> list[Crossing]:
        """Add a finished call's spend to its day's rows, in the caller's (the journal's) transaction.

        The day is the clock's day when the call settles, so a call answered after midnight
        counts for the new day, as the store's totals of a past day never grow; but never a
        day before ``admitted`` (the day of the call's reservation): after the clock stepped
        back during the call, its spend stays on the day whose caps let it start, instead of
        going over the cap of a day that may already be spent.

        Returns the soft thresholds this call crossed. The in-memory totals follow at once;
        if the transaction then fails they over-count, which errs on the side of the cap.
        """
        db = self.db
        day = max(self.today(), admitted or "")
        crossings: list[Crossing] = []
        totals: dict[str, Tally] = {}
        for scope_agent, scope_model in ((agent, model), (agent, ""), ("", "")):
            key = _key(day, scope_agent, scope_model)
            raw = txn.get(key, db=db)
            tally = Tally.from_dict(unpack(raw)) if raw else Tally()
            before = Tally()
            before.add(tally)
            tally.add(spent)
            txn.put(key, pack(tally.to_dict()), db=db)
            if not scope_model:
                totals[scope_agent] = tally
                config = self.config.agents.get(agent)
                budget = (config.budget if config is not None else None) if scope_agent else self.config.budget
                if budget is not None:
                    crossings += _crossed(scope_agent, day, budget.day, budget.soft, before, tally)
        with self._lock:
            loaded = self._days.get(day)
            if loaded is not None:
                loaded.settled.update(totals)
        if loaded is None:  # this transaction holds the day's rows, this call's included
            self._load(txn, day)
        return crossings


def rows(txn: lmdb.Transaction, db: Any, prefix: str = "") -> Iterator[tuple[tuple[str, str, str], Tally]]:
    """Every ``(day, agent, model)`` row whose day starts with ``prefix``, in key order."""
    cursor = txn.cursor(db=db)
    start = prefix.encode()
    if not cursor.set_range(start):
        return
    for raw, value in cursor:
        key = bytes(raw)
        if not key.startswith(start):
            break
        day, agent, model = key.decode().split("\x00")
        yield (day, agent, model), Tally.from_dict(unpack(value))


def spent_today(txn: lmdb.Transaction, db: Any, now: float, zone: dt.tzinfo | None = None) -> dict[str, dict[str, int]]:
    """The totals of ``now``'s day in ``zone`` (None: the machine's; give it the config's ``zone``)
    per agent, and for all agents under "", as plain dicts (for views)."""
    return {agent: tally.to_dict() for (_, agent, model), tally in rows(txn, db, day_of(now, zone)) if not model}


def _over(cap: Caps, used: Tally, worst: Worst, where: str) -> str | None:
    if cap.calls is not None and used.calls + 1 > cap.calls:
        return f"{used.calls} of {cap.calls} calls made ({where} day_calls)"
    if cap.tokens is not None and used.tokens + worst.tokens > cap.tokens:
        return f"{used.tokens} of {cap.tokens} tokens used, this call may use {worst.tokens} more ({where} day_tokens)"
    if cap.cost_usd is not None:
        limit = int(cap.cost_usd * MICRO)
        if used.cost_micro_usd + worst.cost_micro_usd > limit:
            spent = Decimal(used.cost_micro_usd) / MICRO
            worst_usd = Decimal(worst.cost_micro_usd) / MICRO
            return (
                f"${spent:.4f} of ${cap.cost_usd} spent, this call may cost up to ${worst_usd:.4f} "
                f"({where} day_cost_usd)"
            )
    return None


def _crossed(scope: str, day: str, cap: Caps, soft: tuple[float, ...], before: Tally, after: Tally) -> list[Crossing]:
    found = []
    measures: list[tuple[str, int | None, int, int, Callable[[int], str]]] = [
        ("calls", cap.calls, before.calls, after.calls, str),
        ("tokens", cap.tokens, before.tokens, after.tokens, str),
        (
            "cost_usd",
            int(cap.cost_usd * MICRO) if cap.cost_usd is not None else None,
            before.cost_micro_usd,
            after.cost_micro_usd,
            lambda micro: f"${Decimal(micro) / MICRO:.4f}",
        ),
    ]
    for measure, limit, old, new, show in measures:
        if limit is None:
            continue
        for fraction in soft:
            mark = fraction * limit
            if old < mark <= new:
                found.append(Crossing(scope, day, measure, fraction, show(new), show(limit)))
    return found
