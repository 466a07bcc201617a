"""Daily model budgets: what each agent and all agents together have spent today.

Two numbers make a day's spend: *settled* (calls that finished, durable in the store's
``spend`` database in the same commit as the call's journal entry) and *reserved* (calls
in flight, held at their worst case: every input token and the whole output cap). A call
may start only if settled + reserved + its own worst case stays within every cap, so
calls that run at the same time cannot overshoot a cap together. After the call, the
reservation is replaced by what the provider reported.

Days are local calendar days of the daemon's machine: an operator's "per day" means
their midnight. Soft thresholds are found in the commit that crosses them (the store's
totals only grow within a day), so each fires exactly once a day, across restarts too.
"""

from __future__ import annotations

import datetime as dt
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from decimal import Decimal
from typing import TYPE_CHECKING, Any

from corral.store.schema import pack, unpack

if TYPE_CHECKING:
    import lmdb

    from corral.config import CorralConfig
    from corral.modelconfig import Caps

DB = "spend"
MICRO = Decimal(1_000_000)


def day_of(ts: float) -> str:
    """The local calendar day of ``ts``, as ``YYYY-MM-DD``."""
    return time.strftime("%Y-%m-%d", time.localtime(ts))


def next_day(ts: float) -> float:
    """The epoch time of the local midnight after ``ts``."""
    today = dt.datetime.fromtimestamp(ts).date()
    return dt.datetime.combine(today + dt.timedelta(days=1), dt.time()).timestamp()


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
    """A call's hold on today's budgets; give it back with :meth:`Ledger.release` exactly once."""

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
    """Why a call may not start: which cap, for whom, and until when it stays spent."""

    scope: str
    message: str
    until: float


@dataclass
class _Day:
    settled: dict[str, Tally] = field(default_factory=dict)
    reserved: dict[str, Tally] = field(default_factory=dict)


class Ledger:
    """Today's spend per agent and in total. ``reserve``/``release`` run on the event loop;
    ``load`` and ``record`` run on the store writer's thread (in its transactions); a lock
    keeps the two sides consistent."""

    def __init__(self, config: CorralConfig, dbs: dict[str, Any], clock: Callable[[], float] = time.time) -> None:
        self.config = config
        self.db = dbs[DB]
        self.clock = clock
        self._lock = threading.Lock()
        self._loaded = False
        self._day: str | None = None
        self._today = _Day()

    @property
    def loaded(self) -> bool:
        """Whether this process has read the day's totals from the store yet."""
        return self._loaded

    def load(self, txn: lmdb.Transaction) -> None:
        """Read today's settled totals (once per process, before the first reservation)."""
        day = day_of(self.clock())
        settled = {agent: tally for (_, agent, model), tally in rows(txn, self.db, day) if not model}
        with self._lock:
            if self._loaded:  # two first calls may both have asked: keep what the first one holds
                return
            self._day, self._today, self._loaded = day, _Day(settled=settled), True

    def _current(self, day: str | None = None) -> _Day:
        """The tallies of ``day`` (today by default); a new day starts from zero, as nothing
        was recorded for it before it began. Call with the lock held."""
        day = day or day_of(self.clock())
        if day != self._day:
            self._day, self._today = day, _Day()
        return self._today

    def reserve(self, agent: str, worst: Worst) -> Reservation | Refusal:
        """Hold ``worst`` against today's caps of ``agent`` and of all agents, or say which cap it would cross."""
        with self._lock:
            today = self._current()
            assert self._day is not None
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
                    message = f"the daily model budget of {who} is spent: {over}; it renews at local midnight"
                    return Refusal(scope, message, next_day(self.clock()))
            for scope in (agent, ""):
                held = today.reserved.setdefault(scope, Tally())
                held.input_tokens += worst.tokens
                held.cost_micro_usd += worst.cost_micro_usd
                held.calls += 1
            return Reservation(agent, self._day, worst)

    def release(self, reservation: Reservation) -> None:
        """Give a reservation back: after its call's spend is recorded, or when the call was never made."""
        with self._lock:
            if reservation.released:
                return
            reservation.released = True
            if reservation.day != self._day:
                return
            for scope in (reservation.agent, ""):
                held = self._today.reserved[scope]
                held.input_tokens -= reservation.worst.tokens
                held.cost_micro_usd -= reservation.worst.cost_micro_usd
                held.calls -= 1

    def record(self, txn: lmdb.Transaction, agent: str, model: str, spent: Tally) -> list[Crossing]:
        """Add a finished call's spend to today's rows, in the caller's (the journal's) transaction.

        Returns the soft thresholds this call crossed. The in-memory totals follow at once;
        if the transaction then fails they over-count, which errs on the side of the cap.
        """
        db = self.db
        day = day_of(self.clock())
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
            if self._day is None or day >= self._day:  # a call settled after midnight may start the new day
                self._current(day).settled.update(totals)
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


def spent_today(txn: lmdb.Transaction, db: Any, now: float) -> dict[str, dict[str, int]]:
    """Today's totals per agent, and for all agents under "", as plain dicts (for views)."""
    return {agent: tally.to_dict() for (_, agent, model), tally in rows(txn, db, day_of(now)) if not model}


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
