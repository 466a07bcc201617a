"""Keep a Mac from idle sleep while any run is active, and let it sleep again when idle.

The assertion is held by ``caffeinate -i -w PID``, PID being the daemon's own. caffeinate
is the documented command-line face of IOKit's power assertions (``man caffeinate``): ``-i``
takes the same idle-sleep assertion ``IOPMAssertionCreateWithName`` would, without
privileges, and ``-w`` makes it exit, releasing the assertion, once the daemon's process is
gone, even after a SIGKILL that runs no cleanup of ours. Calling IOKit through ctypes would
mean hand-written CoreFoundation bindings that no CI here can run; a child process is one
``Popen`` behind a seam that tests drive with a real stand-in process on Linux.

On other systems this is a no-op; :func:`capability` says why, for ``corral doctor``.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from collections.abc import Callable
from typing import Any, Protocol

_REAP_SECONDS = 2.0  # caffeinate exits at once on SIGTERM; never block the daemon longer


class Process(Protocol):
    """The part of ``subprocess.Popen`` the assertion's holder is managed through."""

    def poll(self) -> int | None: ...

    def terminate(self) -> None: ...

    def wait(self, timeout: float | None = None) -> int: ...


def _spawn(argv: list[str]) -> Process:
    """Start caffeinate in its own session, so a Ctrl-C meant for the daemon leaves it alone."""
    return subprocess.Popen(
        argv,
        stdin=subprocess.DEVNULL,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
        start_new_session=True,
    )


def capability(platform: str = sys.platform, which: Callable[[str], str | None] = shutil.which) -> tuple[bool, str]:
    """Whether this machine can be kept awake, and why (or why not), for ``corral doctor``."""
    path, reason = _caffeinate(platform, which)
    return path is not None, reason


def _caffeinate(platform: str, which: Callable[[str], str | None]) -> tuple[str | None, str]:
    """caffeinate's path (None where it cannot be used) and the reason doctor shows."""
    if platform == "darwin":
        path = which("caffeinate")
        if path is None:
            return None, (
                "caffeinate is not on the daemon's PATH (macOS ships it as /usr/bin/caffeinate); "
                "add /usr/bin to PATH, e.g. in the launchd plist's EnvironmentVariables"
            )
        return path, f"caffeinate -i holds an idle-sleep assertion while runs are active ({path})"
    if platform.startswith("linux"):
        return None, (
            "keep_awake is a macOS feature: on Linux corral does not inhibit suspend; turn off suspend on an "
            "always-on host (sudo systemctl mask sleep.target suspend.target hibernate.target hybrid-sleep.target) "
            "or run corral under systemd-inhibit (systemd-inhibit --what=idle:sleep corral up)"
        )
    return None, (
        f"keep_awake is a macOS feature: on {platform} corral does not keep the machine awake; "
        "turn off sleep in the system's power settings"
    )


class KeepAwake:
    """Holds the idle-sleep assertion while :meth:`busy` reports active runs.

    ``enabled`` is ``[corral] keep_awake``; ``log`` the daemon's logger; ``pid`` the process
    whose end releases the assertion (None: this one, read when constructed rather than at
    import). ``platform``, ``which`` and ``spawn`` are the seams tests replace.
    """

    def __init__(
        self,
        enabled: bool,
        log: Any,
        *,
        platform: str = sys.platform,
        which: Callable[[str], str | None] = shutil.which,
        spawn: Callable[[list[str]], Process] = _spawn,
        pid: int | None = None,
    ) -> None:
        self._log = log
        self._spawn = spawn
        self._active = 0
        self._holder: Process | None = None
        self._warned: set[str] = set()
        path, reason = _caffeinate(platform, which)
        owner = os.getpid() if pid is None else pid
        self._argv = None if path is None or not enabled else [path, "-i", "-w", str(owner)]
        # Elsewhere than on a Mac doctor says why and the log stays quiet; a Mac that cannot is news.
        self._cannot = reason if enabled and platform == "darwin" and path is None else None

    def plan(self) -> list[str] | None:
        """The command that holds the assertion, or None when none will be held."""
        return None if self._argv is None else list(self._argv)

    def busy(self, active: int) -> None:
        """The number of active runs changed: hold the assertion above 0, release it at 0.

        Calling it again with the same state changes nothing, except that a holder found dead
        while runs are active is started again.
        """
        self._active = active
        if active <= 0:
            self._release()
            return
        if self._holder is not None:
            code = self._holder.poll()
            if code is None:
                return
            self._holder = None
            self._warn_once("keep-awake assertion lost; taking it again", returncode=code)
        self._take()

    def close(self) -> None:
        """Release the assertion: the daemon is stopping."""
        self._release()

    def _take(self) -> None:
        if self._argv is None:
            if self._cannot is not None:
                self._warn_once("cannot keep the machine awake", reason=self._cannot)
            return
        try:
            self._holder = self._spawn(self._argv)
        except OSError as exc:
            self._warn_once("cannot keep the machine awake", reason=f"{self._argv[0]} did not start: {exc}")
            return
        self._log.info("keeping the machine awake", active=self._active, command=" ".join(self._argv))

    def _release(self) -> None:
        holder, self._holder = self._holder, None
        if holder is None:
            return
        if holder.poll() is None:
            holder.terminate()
            try:
                holder.wait(timeout=_REAP_SECONDS)
            except subprocess.TimeoutExpired:
                self._log.warning("keep-awake holder did not exit on SIGTERM; it ends with the daemon")
        self._log.info("machine may sleep again", active=self._active)

    def _warn_once(self, event: str, **fields: Any) -> None:
        """Say it once per daemon: the next run would only repeat it."""
        if event not in self._warned:
            self._warned.add(event)
            self._log.warning(event, **fields)
