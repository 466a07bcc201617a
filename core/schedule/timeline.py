"""Clock steps, sleeps and the daemon's last sign of life: time as the scheduler must see it.

Between two readings of the clocks (:mod:`corral.schedule.clock`) of one boot, the wall
clock should move exactly as far as ``elapsed``; any difference beyond :data:`STEP` is a
*step* (NTP, a person, a clock set at boot). ``elapsed`` should move as far as ``awake``;
any excess is a *sleep*, reported as a *wake* with its length. Each is logged once at
warning level and kept as the last jump for ``corral status``.

*Steady time* is ``elapsed + offset``: it reads like the wall clock did when the daemon
first started in this boot, then follows real elapsed time only, so it never steps and
it counts sleep. Interval triggers fire on it. Across daemon restarts in one boot it
continues where it was (the offset is derived from the last sign of life); across a
reboot, where the monotonic clocks restart, it continues from the last sign of life
plus the wall-clock gap, never backwards.

The store's ``meta`` database holds ``alive`` (``{"boot", "wall", "awake", "elapsed",
"steady"}``, rewritten every :data:`HEARTBEAT` seconds and at a clean stop: the daemon's
last sign of life) and ``clock`` (the last jump, ``{"kind", "at", "jump"}``).
"""

from __future__ import annotations

import enum
from dataclasses import dataclass
from typing import Any

from corral.schedule.clock import Clock, Reading
from corral.store import Store, Writer
from corral.store.schema import pack, unpack

STEP = 2.0
"""Seconds of disagreement between clocks below which nothing is reported (NTP slews,
scheduling delays between the reads)."""
HEARTBEAT = 5.0
"""Seconds of steady time between two records of the daemon's sign of life."""
ALIVE, LAST_JUMP = b"alive", b"clock"


class JumpKind(enum.StrEnum):
    STEP = "step"
    """The wall clock was set: ``jump`` is signed, negative when it went back."""
    WAKE = "wake"
    """The machine slept: ``jump`` is how long."""


@dataclass(frozen=True)
class Jump:
    """One step of the wall clock or one sleep, noticed at wall time ``at``."""

    kind: JumpKind
    at: float
    jump: float

    def to_dict(self) -> dict[str, Any]:
        return {"kind": self.kind.value, "at": self.at, "jump": self.jump}

    def describe(self) -> str:
        """``stepped back 1d 2h`` or ``slept 8h 3m``, for the status line."""
        size = _span(abs(self.jump))
        if self.kind is JumpKind.WAKE:
            return f"slept {size}"
        return f"stepped {'back' if self.jump < 0 else 'forward'} {size}"


def _span(seconds: float) -> str:
    """``45.2s``, ``2d 1h``, ``3h``: the two largest units, the smaller one rounded."""
    if seconds < 59.95:
        return f"{seconds:.1f}s"
    units = (("d", 86400), ("h", 3600), ("m", 60), ("s", 1))
    value = float(round(seconds))
    for _ in range(2):  # rounding may carry into the next unit up: pick the units again
        index = next(i for i, (_, size) in enumerate(units) if value >= size)
        value = round(value / units[index + 1][1]) * units[index + 1][1]
    (big, big_size), (small, small_size) = units[index], units[index + 1]
    whole, rest = divmod(int(value), big_size)
    return f"{whole}{big}" + (f" {rest // small_size}{small}" if rest else "")


def between(before: Reading, after: Reading) -> list[Jump]:
    """The sleep and the step between two readings of one boot (none across boots).

    A jump's ``at`` is the earliest wall time, on the clock as it reads after the jump,
    at which it can have happened: ``after``'s wall time less the awake time between.
    """
    if before.boot != after.boot:
        return []
    elapsed = after.elapsed - before.elapsed
    awake = after.awake - before.awake
    at = after.wall - max(0.0, awake)
    found = []
    if elapsed - awake > STEP:
        found.append(Jump(JumpKind.WAKE, at, elapsed - awake))
    stepped = (after.wall - before.wall) - elapsed
    if abs(stepped) > STEP:
        found.append(Jump(JumpKind.STEP, at, stepped))
    return found


def read_last_jump(store: Store, txn: Any) -> dict[str, Any] | None:
    """The last jump on record, for ``corral status`` (with or without a daemon)."""
    raw = txn.get(LAST_JUMP, db=store.dbs["meta"])
    return unpack(bytes(raw)) if raw else None


@dataclass(frozen=True)
class Downtime:
    """What :meth:`Timeline.start` learnt from the last sign of life."""

    dead_for: float | None
    """Seconds since the daemon was last alive: real elapsed time within one boot, the
    wall-clock gap (at least 0) across a reboot; None on a store that never had one."""
    jumps: list[Jump]
    """A step or a sleep that happened while the daemon was down (within one boot), or a
    wall clock found behind the last sign of life after a reboot."""


class Timeline:
    """Reads the clocks for the scheduler: steady time, jumps, and the sign of life."""

    def __init__(self, clock: Clock, store: Store, writer: Writer, log: Any) -> None:
        self.clock = clock
        self.log = log
        self._db = store.dbs["meta"]
        self._store = store
        self._writer = writer
        self._offset = 0.0
        self._last_reading: Reading | None = None
        self._beat_at: float | None = None
        self.last_jump: Jump | None = None
        self.live_from = float("-inf")
        """The wall time, on the clock as it reads now, since which time has passed awake
        and unstepped up to the last reading: a fire time due after it came due live, one due
        before it (and after the previous reading) was jumped over by a step or a sleep."""
        self._unsaved = False

    async def start(self) -> Downtime:
        """Continue steady time from the last sign of life and record a new one."""
        reading = self.clock.read()
        with self._store.read() as txn:
            raw = txn.get(ALIVE, db=self._db)
            alive = unpack(bytes(raw)) if raw else None
        jumps: list[Jump] = []
        if alive is None:
            self._offset, dead_for = reading.wall - reading.elapsed, None
        elif reading.boot and alive.get("boot") == reading.boot:
            was = Reading(alive["wall"], alive["awake"], alive["elapsed"], alive["boot"])
            self._offset, dead_for = alive["steady"] - alive["elapsed"], reading.elapsed - was.elapsed
            jumps = between(was, reading)
        else:
            gap = reading.wall - alive["wall"]
            self._offset, dead_for = alive["steady"] + max(0.0, gap) - reading.elapsed, max(0.0, gap)
            if gap < -STEP:
                jumps = [Jump(JumpKind.STEP, reading.wall, gap)]
        self._last_reading = reading
        for jump in jumps:
            self._noticed(jump, while_down=True)
        await self.beat(reading)
        return Downtime(dead_for, jumps)

    def steady(self, reading: Reading) -> float:
        """Steady time at ``reading``."""
        return reading.elapsed + self._offset

    def observe(self) -> tuple[Reading, list[Jump]]:
        """Read the clocks; what jumped since the last reading is logged and returned."""
        reading = self.clock.read()
        before = self._last_reading
        jumps = between(before, reading) if before is not None else []
        if before is not None and before.boot == reading.boot:
            self.live_from = reading.wall - max(0.0, reading.awake - before.awake)
        else:
            self.live_from = reading.wall
        self._last_reading = reading
        for jump in jumps:
            self._noticed(jump, while_down=False)
        return reading, jumps

    def _noticed(self, jump: Jump, while_down: bool) -> None:
        self.last_jump, self._unsaved = jump, True
        event = "woke from sleep" if jump.kind is JumpKind.WAKE else "clock stepped"
        fields: dict[str, Any] = {"slept": round(jump.jump, 3)} if jump.kind is JumpKind.WAKE else {}
        self.log.warning(
            event, jump=round(jump.jump, 3), what=jump.describe(), while_daemon_down=while_down or None, **fields
        )

    async def beat(self, reading: Reading, *, now: bool = False) -> None:
        """Record the sign of life (and a new last jump) if :data:`HEARTBEAT` has passed, or ``now``."""
        steady = self.steady(reading)
        if not (now or self._unsaved or self._beat_at is None or steady - self._beat_at >= HEARTBEAT):
            return
        alive = {
            "boot": reading.boot,
            "wall": reading.wall,
            "awake": reading.awake,
            "elapsed": reading.elapsed,
            "steady": steady,
        }
        jump = self.last_jump.to_dict() if self._unsaved and self.last_jump is not None else None
        db = self._db

        def job(txn: Any) -> None:
            txn.put(ALIVE, pack(alive), db=db)
            if jump is not None:
                txn.put(LAST_JUMP, pack(jump), db=db)

        await self._writer.run(job)
        self._beat_at, self._unsaved = steady, False
