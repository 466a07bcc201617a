"""A daemon whose wall clock a test steps while its monotonic and boot-time clocks run on.

``corral up`` runs with the ``libfaketime`` shim preloaded (the PyPI wheel ``libfaketime``
ships it prebuilt). The shim reads the offset file on every wall-clock read
(``FAKETIME_NO_CACHE``), so writing ``-86400`` to it moves the running daemon's
``time.time()`` back a day at once, as NTP or an operator stepping the clock would;
``FAKETIME_DONT_FAKE_MONOTONIC`` keeps ``CLOCK_MONOTONIC`` and ``CLOCK_BOOTTIME`` real, as
they stay through a real step. The CLI a test runs is not faked: it reads the real clock.
Agents are not faked either: corral builds their environment, and ``LD_PRELOAD`` is not in it.
"""

from __future__ import annotations

import importlib.util
import os
import platform
import subprocess
import sys
import time
from pathlib import Path

from corral.testing import CorralProject, DaemonProcess

PROBE = """
import sys, time
clocks = lambda: (time.time(), time.monotonic(), time.clock_gettime(time.CLOCK_BOOTTIME))
before = clocks()
with open(sys.argv[1] + ".tmp", "w") as f:
    f.write("-86400\\n")
import os; os.replace(sys.argv[1] + ".tmp", sys.argv[1])
after = clocks()
print(*(round(b - a) for a, b in zip(before, after)))
"""
"""Steps its own clock back a day and prints how far each clock moved: ``-86400 0 0`` when the shim works."""


def library() -> Path | None:
    """The shim the ``libfaketime`` wheel ships, found without importing the package (its
    import patches time in this process)."""
    if sys.platform != "linux" or platform.machine() != "x86_64":
        return None
    spec = importlib.util.find_spec("libfaketime")
    if spec is None or spec.origin is None:
        return None
    path = Path(spec.origin).parent / "vendor" / "libfaketime" / "src" / "libfaketime.so.1"
    return path if path.is_file() else None


class WallClock:
    """The offset file of a faked process: its wall clock is the real one plus :attr:`offset` seconds."""

    def __init__(self, path: Path, shim: Path) -> None:
        self.path = path
        self.shim = shim
        self.offset = 0.0
        self.set(0.0)

    def set(self, offset: float) -> None:
        """Put the faked wall clock ``offset`` seconds from the real one, at once (the file is
        replaced whole, so a reader never sees half an offset)."""
        temporary = self.path.with_suffix(".tmp")
        temporary.write_text(f"{offset:+.3f}\n")
        os.replace(temporary, self.path)
        self.offset = offset

    def step(self, seconds: float) -> None:
        """Step the faked wall clock by ``seconds`` (negative: back)."""
        self.set(self.offset + seconds)

    def now(self) -> float:
        """The faked process's ``time.time()`` now."""
        return time.time() + self.offset

    @property
    def env(self) -> dict[str, str]:
        return {
            "LD_PRELOAD": str(self.shim),
            "FAKETIME_TIMESTAMP_FILE": str(self.path),
            "FAKETIME_DONT_FAKE_MONOTONIC": "1",
            "FAKETIME_NO_CACHE": "1",
        }


def forget_shared_memory(pid: int) -> None:
    """Remove the semaphore and shared memory the shim creates per process (named after its
    pid) and leaves behind when the process exits or is killed."""
    for name in (f"sem.faketime_sem_{pid}", f"faketime_shm_{pid}"):
        Path("/dev/shm", name).unlink(missing_ok=True)


def unavailable() -> str | None:
    """Why a faked daemon cannot run here, or None: the shim must be found, load, and step
    ``time.time()`` while ``time.monotonic()`` and ``CLOCK_BOOTTIME`` stay real."""
    shim = library()
    if shim is None:
        return "needs Linux x86_64 and the libfaketime wheel (pip install -e '.[test]')"
    folder = Path(os.environ.get("TMPDIR", "/tmp"))
    offsets = folder / f"corral-faketime-probe-{os.getpid()}"
    clock = WallClock(offsets, shim)
    try:
        env = {k: v for k, v in os.environ.items() if not k.startswith("FAKETIME")} | clock.env
        probe = subprocess.Popen(
            [sys.executable, "-c", PROBE, str(offsets)], env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE
        )
        out, err = probe.communicate(timeout=30)
        forget_shared_memory(probe.pid)
    finally:
        offsets.unlink(missing_ok=True)
    if out.split() != [b"-86400", b"0", b"0"]:
        return f"libfaketime did not step only the wall clock: {out!r} {err[-500:]!r}"
    return None


class FakedProject(CorralProject):
    """A CorralProject whose daemons run under :class:`WallClock`; its CLI reads the real clock."""

    def __init__(self, root: Path, clock: WallClock) -> None:
        super().__init__(root)
        self.clock = clock
        self._faking = False

    @property
    def env(self) -> dict[str, str]:
        env = {k: v for k, v in super().env.items() if not k.startswith("FAKETIME")}
        if self._faking:
            env.update(self.clock.env)
        return env

    def start_daemon(self, *, write_config: bool = True) -> DaemonProcess:
        self._faking = True
        try:
            return super().start_daemon(write_config=write_config)
        finally:
            self._faking = False

    def close(self) -> None:
        super().close()
        for daemon in self.daemons:
            forget_shared_memory(daemon.pid)
