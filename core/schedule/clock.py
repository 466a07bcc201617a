"""The daemon's clocks, and the seam tests move by hand.

Three clocks, because the wall clock alone misleads an always-on host in two ways:

- ``wall`` (``CLOCK_REALTIME``) is what cron times, budgets' days and logs mean, and it
  *steps*: NTP corrections, a manual change, a Mac's clock set after a dead battery.
- ``awake`` stops while the machine sleeps: ``CLOCK_MONOTONIC`` on Linux,
  ``CLOCK_UPTIME_RAW`` on macOS (the ``clock_gettime`` form of ``mach_absolute_time``).
  It is the clock asyncio's timers and ``time.monotonic()`` run on.
- ``elapsed`` keeps counting through sleep: ``CLOCK_BOOTTIME`` on Linux,
  ``CLOCK_MONOTONIC_RAW`` on macOS (the form of ``mach_continuous_time``).

Neither monotonic clock steps, so ``wall - elapsed`` changes only when the wall clock is
stepped, and ``elapsed - awake`` grows only while the machine sleeps: that is how
:mod:`corral.schedule.timeline` tells a step from a wake. Both monotonic clocks restart
at boot; ``boot`` names the boot their values belong to.

The scheduler sleeps through :meth:`Clock.wait`, which never waits longer than
:data:`TICK` (an asyncio timeout does not move with the wall clock, and stops in sleep),
so a test's :class:`ManualClock` can step, suspend or advance time by hand.
"""

from __future__ import annotations

import asyncio
import ctypes
import ctypes.util
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass
from functools import cache
from pathlib import Path
from typing import Any

TICK = 1.0
"""The longest the scheduler waits without reading the clocks again (seconds)."""


@dataclass(frozen=True)
class Reading:
    """The three clocks read together (seconds)."""

    wall: float
    awake: float
    elapsed: float
    boot: str
    """This boot's identity ("" when unknown): ``awake`` and ``elapsed`` compare only within one boot."""


@dataclass(frozen=True)
class Sources:
    """Which system clocks stand for ``awake`` and ``elapsed`` on a platform."""

    awake: str
    elapsed: str
    sleep_visible: bool
    """Whether the two differ across a sleep, so a wake can be told from a clock step."""


def sources(platform: str = sys.platform) -> Sources:
    """The clock ids corral reads on ``platform`` (names of :mod:`time` constants)."""
    if platform.startswith("linux"):
        return Sources("CLOCK_MONOTONIC", "CLOCK_BOOTTIME", True)
    if platform == "darwin":
        return Sources("CLOCK_UPTIME_RAW", "CLOCK_MONOTONIC_RAW", True)
    return Sources("CLOCK_MONOTONIC", "CLOCK_MONOTONIC", False)


def _linux_boot_id(path: Path = Path("/proc/sys/kernel/random/boot_id")) -> str:
    try:
        return path.read_text().strip()
    except OSError:
        return ""


def _darwin_boot_id(libc: Any = None) -> str:
    """``sysctl kern.bootsessionuuid`` through ``sysctlbyname`` (new at every boot)."""
    try:
        libc = libc or ctypes.CDLL(ctypes.util.find_library("c"), use_errno=True)
        name = b"kern.bootsessionuuid"
        size = ctypes.c_size_t(0)
        if libc.sysctlbyname(name, None, ctypes.byref(size), None, ctypes.c_size_t(0)) != 0 or not size.value:
            return ""
        buffer = ctypes.create_string_buffer(size.value)
        if libc.sysctlbyname(name, buffer, ctypes.byref(size), None, ctypes.c_size_t(0)) != 0:
            return ""
        return buffer.value.decode("ascii", "replace")
    except (OSError, AttributeError, TypeError):
        return ""


def boot_id(platform: str = sys.platform) -> str:
    """This boot's identity, or "" where the platform does not say."""
    if platform.startswith("linux"):
        return _linux_boot_id()
    if platform == "darwin":
        return _darwin_boot_id()
    return ""


@cache
def this_boot() -> str:
    """:func:`boot_id` of the running system, read once per process."""
    return boot_id()


def awake_stamp() -> list[Any]:
    """A mark of now that :func:`awake_since` measures from (storable: ``[boot, awake]``)."""
    return [this_boot(), time.monotonic()]


def awake_since(stamp: list[Any] | None, wall_since: float, now: float) -> float:
    """Seconds the machine was awake since ``stamp`` (``time.monotonic`` stops in sleep and
    never steps); from a stamp of another boot, or none, the wall-clock time since ``wall_since``."""
    boot, awake = stamp or ("", 0.0)
    if boot and boot == this_boot():
        return max(0.0, time.monotonic() - awake)
    return max(0.0, now - wall_since)


def _reader(name: str) -> Callable[[], float]:
    clock_id = getattr(time, name, None)
    if clock_id is None:
        return time.monotonic
    return lambda: time.clock_gettime(clock_id)


class Clock:
    """The system's clocks, and waits bounded by :data:`TICK`."""

    def __init__(self, platform: str = sys.platform) -> None:
        found = sources(platform)
        self.sources = found
        self._awake = _reader(found.awake)
        self._elapsed = _reader(found.elapsed)

    def now(self) -> float:
        """Wall-clock seconds since the epoch."""
        return time.time()

    def read(self) -> Reading:
        return Reading(time.time(), self._awake(), self._elapsed(), this_boot())

    async def wait(self, until: float, wake: asyncio.Event) -> None:
        """Return at ``until`` (wall-clock epoch seconds), when ``wake`` is set, or after at
        most :data:`TICK`, whichever is first; callers read the clocks again and loop."""
        delay = min(until - self.now(), TICK)
        if delay <= 0:
            return
        try:
            await asyncio.wait_for(wake.wait(), delay)
        except TimeoutError:
            pass


BOOTED = 1_700_000_000.0
"""The wall time at which every :class:`ManualClock`'s machine booted: two clocks made in one
test (a daemon restarted) share a boot, and their monotonic clocks agree."""


class ManualClock(Clock):
    """Time that moves only when a test says: :meth:`advance` (time passes), :meth:`step`
    (the wall clock is set), :meth:`suspend` (the machine sleeps)."""

    def __init__(self, start: float = 1_800_000_000.0, boot: str = "manual") -> None:
        super().__init__()
        self.sources = Sources("manual", "manual", True)
        self._wall_now = start
        self._elapsed_now = start - BOOTED
        self._awake_now = start - BOOTED
        self.boot = boot
        self._moved = asyncio.Event()

    def now(self) -> float:
        return self._wall_now

    def read(self) -> Reading:
        return Reading(self._wall_now, self._awake_now, self._elapsed_now, self.boot)

    def set(self, moment: float) -> None:
        """Let time pass until the wall clock reads ``moment``."""
        self.advance(moment - self._wall_now)

    def advance(self, seconds: float) -> None:
        """Let ``seconds`` pass, awake."""
        self._move(seconds, seconds, seconds)

    def step(self, seconds: float) -> None:
        """Set the wall clock ``seconds`` ahead (negative: back), as NTP or a person does."""
        self._move(seconds, 0.0, 0.0)

    def suspend(self, seconds: float) -> None:
        """Sleep for ``seconds``: the wall and elapsed clocks move on, the awake clock does not."""
        self._move(seconds, 0.0, seconds)

    def _move(self, wall: float, awake: float, elapsed: float) -> None:
        self._wall_now += wall
        self._awake_now += awake
        self._elapsed_now += elapsed
        self._moved.set()
        self._moved = asyncio.Event()

    async def wait(self, until: float, wake: asyncio.Event) -> None:
        """Return when the clock moves (any way) or ``wake`` is set."""
        if self._wall_now >= until or wake.is_set():
            return
        moved = asyncio.ensure_future(self._moved.wait())
        woken = asyncio.ensure_future(wake.wait())
        try:
            await asyncio.wait({moved, woken}, return_when=asyncio.FIRST_COMPLETED)
        finally:
            moved.cancel()
            woken.cancel()
