"""Linux-only protections: parent-death signal, subreaper, a memory no child can read, and cgroup v2 runs.

Each function reports whether it applied, so the run can record what it actually got.
"""

from __future__ import annotations

import ctypes
import os
import signal
import time
from pathlib import Path

PR_SET_PDEATHSIG = 1
PR_SET_DUMPABLE = 4
PR_SET_CHILD_SUBREAPER = 36


def _prctl(option: int, value: int) -> bool:
    try:
        libc = ctypes.CDLL(None, use_errno=True)
    except OSError:
        return False
    return libc.prctl(option, value, 0, 0, 0) == 0


def set_parent_death_signal(expected_parent: int) -> bool:
    """Die with SIGKILL when the daemon does; exit now if it already has.

    The getppid() check closes the race where the parent died before prctl ran.
    """
    if not _prctl(PR_SET_PDEATHSIG, signal.SIGKILL):
        return False
    if os.getppid() != expected_parent:
        os._exit(70)
    return True


def become_subreaper() -> bool:
    """Orphaned descendants reparent to us, so a double fork cannot escape the tree."""
    return _prctl(PR_SET_CHILD_SUBREAPER, 1)


def keep_memory_private() -> bool:
    """Make this process non-dumpable: its ``/proc/PID/mem``, ``maps``, ``environ`` and ``fd``
    then belong to root (0400/0500) and a ptrace-mode check needs ``CAP_SYS_PTRACE``, which
    the sandbox drops, so the agent's subprocesses, its command and its stdio MCP servers (all
    our children, same uid) cannot read the door's token or a tool's secrets from our memory.

    The process itself keeps every ``/proc/self`` entry but ``environ`` (the kernel lets a
    thread group into its own entries); a child's ``execve`` makes the child dumpable again,
    which it should be: it holds nothing of ours. Call it after the uid is final, since a
    change of credentials resets the flag.
    """
    return _prctl(PR_SET_DUMPABLE, 0)


def cgroup2_root() -> Path | None:
    """This process's own cgroup v2 directory, if the unified hierarchy is mounted."""
    try:
        mounts = Path("/proc/self/mountinfo").read_text().splitlines()
        own = next(
            line.split("::", 1)[1]
            for line in Path("/proc/self/cgroup").read_text().splitlines()
            if line.startswith("0::")
        )
    except (OSError, StopIteration):
        return None
    for line in mounts:
        left, _, right = line.partition(" - ")
        if right.split(" ", 1)[0] == "cgroup2":
            mount_point = left.split()[4]
            return Path(mount_point) / own.lstrip("/")
    return None


def enable_controllers(parent: Path, wanted: tuple[str, ...] = ("memory", "pids")) -> list[str]:
    """Turn on ``wanted`` controllers for the runs' cgroups under ``parent``, where offered.

    A child cgroup only has ``memory.max`` and ``pids.max`` when its parent lists the
    controller in ``cgroup.subtree_control``; ``parent`` holds no process of its own (each
    run joins its own child), so the kernel allows it. Returns the controllers enabled.
    """
    try:
        offered = (parent / "cgroup.controllers").read_text().split()
    except OSError:
        return []
    enabled = []
    for name in wanted:
        if name not in offered:
            continue
        try:
            (parent / "cgroup.subtree_control").write_text(f"+{name}")
            enabled.append(name)
        except OSError:
            continue
    return enabled


def create_run_cgroup(
    parent: Path, run_id: str, memory_bytes: int | None, max_pids: int | None
) -> tuple[Path | None, list[str]]:
    """A cgroup for one run under ``parent``; limits set where the controllers allow."""
    applied: list[str] = []
    path = parent / f"run-{run_id}"
    try:
        path.mkdir(exist_ok=True)
    except OSError:
        return None, applied
    applied.append("cgroup.kill")
    for filename, value in (("memory.max", memory_bytes), ("pids.max", max_pids)):
        if value is None or not (path / filename).exists():
            continue
        try:
            (path / filename).write_text(str(value))
            applied.append(filename)
        except OSError:
            pass
    return path, applied


def remove_stale_cgroups(root: Path) -> list[Path]:
    """Remove ``corral-<pid>`` folders left by daemons that were killed (their pid is gone).

    A cgroup folder can only be removed once empty: any process still inside is killed
    first, since its daemon is dead and its run will be resumed.
    """
    removed = []
    for parent in root.glob("corral-*"):
        pid = parent.name.removeprefix("corral-")
        if not pid.isdigit() or Path(f"/proc/{pid}").exists():
            continue
        runs = list(parent.glob("run-*"))
        for run in runs:
            kill_cgroup(run)
        deadline = time.monotonic() + 2.0  # start-up only: the killed processes leave within ms
        while not all(remove_cgroup(run) for run in runs) and time.monotonic() < deadline:
            time.sleep(0.02)
        if remove_cgroup(parent):
            removed.append(parent)
    return removed


def join_cgroup(path: str) -> bool:
    try:
        Path(path, "cgroup.procs").write_text(str(os.getpid()))
    except OSError:
        return False
    return True


def kill_cgroup(path: Path) -> None:
    """Kill every process in the run's cgroup at once (removal comes once it is empty)."""
    try:
        (path / "cgroup.kill").write_text("1")
    except OSError:
        pass


def remove_cgroup(path: Path) -> bool:
    """Remove an emptied cgroup folder; False while processes are still leaving it."""
    try:
        path.rmdir()
    except FileNotFoundError:
        return True
    except OSError:
        return False
    return True
