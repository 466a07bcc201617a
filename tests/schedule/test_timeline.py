"""Telling a clock step from a sleep, and steady time across restarts and reboots: the
pure rules, the platform's clock choice, and the sign of life on a real store."""

from __future__ import annotations

import asyncio
import ctypes
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from corral.schedule.clock import BOOTED, Clock, ManualClock, Reading, _darwin_boot_id, sources
from corral.schedule.timeline import Jump, JumpKind, Timeline, between
from corral.store import Store, Writer


def reading(wall: float, awake: float, elapsed: float, boot: str = "b1") -> Reading:
    return Reading(wall, awake, elapsed, boot)


BEFORE = reading(1000.0, 50.0, 60.0)


def test_a_wall_clock_set_back_is_a_step_with_its_size() -> None:
    [jump] = between(BEFORE, reading(1001.0 - 86400, 51.0, 61.0))
    assert jump.kind is JumpKind.STEP and jump.jump == -86400.0 and jump.describe() == "stepped back 1d"
    assert jump.at == 1000.0 - 86400, "the earliest the step can have happened, on the clock as it reads now"


def test_jump_sizes_read_in_their_two_largest_units_rounded() -> None:
    sizes = {176400.0: "2d 1h", 176399.99: "2d 1h", 86400.0: "1d", 86399.6: "1d", 3599.7: "1h", 7260.0: "2h 1m"}
    for seconds, shown in sizes.items():
        assert Jump(JumpKind.STEP, 0.0, -seconds).describe() == f"stepped back {shown}"
    assert Jump(JumpKind.WAKE, 0.0, 42.25).describe() == "slept 42.2s"


def test_a_sleep_is_a_wake_not_a_step() -> None:
    [jump] = between(BEFORE, reading(1000.0 + 3601, 51.0, 60.0 + 3601))
    assert jump.kind is JumpKind.WAKE and jump.jump == 3600.0 and jump.describe() == "slept 1h"


def test_a_sleep_with_a_clock_correction_after_it_is_both() -> None:
    jumps = between(BEFORE, reading(1000.0 + 3601 + 30, 51.0, 60.0 + 3601))
    assert [(j.kind, j.jump) for j in jumps] == [(JumpKind.WAKE, 3600.0), (JumpKind.STEP, 30.0)]


def test_small_disagreements_and_other_boots_are_not_jumps() -> None:
    assert between(BEFORE, reading(1011.5, 60.0, 70.0)) == [], "1.5 s is within what NTP slews and reads jitter"
    assert between(BEFORE, reading(5.0, 1.0, 1.0, boot="b2")) == []


def test_each_platform_reads_the_clocks_that_stop_and_do_not_stop_in_sleep() -> None:
    linux, mac, other = sources("linux"), sources("darwin"), sources("freebsd14")
    assert (linux.awake, linux.elapsed, linux.sleep_visible) == ("CLOCK_MONOTONIC", "CLOCK_BOOTTIME", True)
    assert (mac.awake, mac.elapsed) == ("CLOCK_UPTIME_RAW", "CLOCK_MONOTONIC_RAW"), "mach_absolute/continuous_time"
    assert not other.sleep_visible
    here = Clock().read()
    assert here.elapsed >= here.awake and abs(here.wall - time.time()) < 5
    assert len(here.boot) == 36, "Linux names its boot in /proc/sys/kernel/random/boot_id"


class SysctlLibc:
    """A C library answering ``sysctlbyname`` as macOS's does: size first, then the value."""

    def __init__(self, value: bytes) -> None:
        self.value = value

    def sysctlbyname(self, name: bytes, buffer: Any, size: Any, new: Any, new_size: Any) -> int:
        if name != b"kern.bootsessionuuid":
            return -1
        size._obj.value = len(self.value) + 1
        if buffer is not None:
            ctypes.memmove(buffer, self.value + b"\0", len(self.value) + 1)
        return 0


def test_macos_boot_session_is_read_with_sysctlbyname() -> None:
    uuid = b"5A0C2F1E-8B7D-4C3A-9E6F-1D2C3B4A5F60"
    assert _darwin_boot_id(SysctlLibc(uuid)) == uuid.decode()
    assert _darwin_boot_id(object()) == "", "no sysctlbyname: the boot is unknown, not an error"


class Log:
    """A logger keeping what it is told, as ``(level, event, fields)``."""

    def __init__(self) -> None:
        self.entries: list[tuple[str, str, dict[str, Any]]] = []

    def warning(self, event: str, **fields: Any) -> None:
        self.entries.append(("warning", event, fields))

    def info(self, event: str, **fields: Any) -> None:
        self.entries.append(("info", event, fields))


@pytest.fixture
def home(tmp_path: Path) -> Iterator[tuple[Store, Writer]]:
    store = Store.open(tmp_path / "store")
    writer = Writer(store)
    yield store, writer
    writer.close()
    store.close()


def start(home: tuple[Store, Writer], clock: ManualClock) -> tuple[Timeline, Any]:
    async def go() -> tuple[Timeline, Any]:
        timeline = Timeline(clock, *home, Log())
        return timeline, await timeline.start()

    return asyncio.run(go())


def test_steady_time_continues_across_a_restart_in_one_boot_whatever_the_wall_clock_did(home) -> None:
    first, downtime = start(home, ManualClock(BOOTED + 1000))
    assert downtime.dead_for is None and first.steady(first.clock.read()) == BOOTED + 1000
    later = ManualClock(BOOTED + 1010)
    later.step(-86400)
    second, downtime = start(home, later)
    assert downtime.dead_for == 10.0, "real time since the last sign of life"
    assert [j.kind for j in downtime.jumps] == [JumpKind.STEP] and downtime.jumps[0].jump == -86400
    assert second.steady(later.read()) == BOOTED + 1010, "steady time did not step"


def test_across_a_reboot_steady_time_moves_by_the_wall_gap_and_never_back(home) -> None:
    start(home, ManualClock(BOOTED + 1000))
    rebooted = ManualClock(BOOTED + 4600, boot="second")
    timeline, downtime = start(home, rebooted)
    assert downtime.dead_for == 3600.0 and timeline.steady(rebooted.read()) == BOOTED + 4600
    behind = ManualClock(BOOTED + 100, boot="third")  # the clock came up wrong after the reboot
    timeline, downtime = start(home, behind)
    assert downtime.dead_for == 0.0 and timeline.steady(behind.read()) == BOOTED + 4600
    assert [(j.kind, j.jump) for j in downtime.jumps] == [(JumpKind.STEP, -4500.0)]


def test_a_jump_is_logged_once_at_warning_and_kept_for_status(home) -> None:
    from corral.schedule.timeline import read_last_jump

    clock = ManualClock(BOOTED + 1000)
    log = Log()

    async def go() -> list[Jump]:
        timeline = Timeline(clock, *home, log)
        await timeline.start()
        clock.suspend(600)
        reading, jumps = timeline.observe()
        await timeline.beat(reading)
        assert timeline.observe()[1] == [], "noticed once"
        return jumps

    [jump] = asyncio.run(go())
    assert jump.kind is JumpKind.WAKE and jump.jump == 600.0
    assert [(level, fields["slept"]) for level, event, fields in log.entries if event == "woke from sleep"] == [
        ("warning", 600.0)
    ]
    store, _ = home
    with store.read() as txn:
        assert read_last_jump(store, txn) == {"kind": "wake", "at": BOOTED + 1600, "jump": 600.0}
