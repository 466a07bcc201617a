"""Quotas of one run: its workdir on disk, and what it may put into the store.

The disk quota is measured from outside the sandbox, by the daemon, off the event loop:
:func:`measure` walks the agent's workdir the way ``du`` does (blocks actually
allocated, symlinks not followed, a hard-linked file's blocks counted once) and counts
every name in it, files and folders alike. The walk stops as soon as the count passes
``limits.disk_files``, so a scan never costs more than that many ``lstat`` calls however
many files an agent made, and :func:`next_scan` spaces scans so they use a small share
of one core. The store quotas (:class:`QuotaExceeded`) are checked on the step path by
:mod:`corral.run.journal`, before anything reaches the store.
"""

from __future__ import annotations

import math
import os
import stat
import time
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path

from corral.errors import CorralError

MiB = 2**20
SCAN_INTERVAL = 1.0
"""Seconds between two scans of a workdir that is quick to scan."""
SCAN_SHARE = 0.05
"""Largest share of one core the scans of one run may use: a scan that took 50 ms waits
at least 1 s for the next, one that took 0.2 s (about 50,000 names) waits 4 s."""


class QuotaExceeded(CorralError):
    """Operator: one run tried to put more into the store than its limits allow; the run
    ends with kind ``limit`` and nothing of the refused step is written. The message names
    the key to raise."""


@dataclass(frozen=True)
class DiskUse:
    """What a workdir holds, as one scan found it."""

    bytes: int
    """Bytes of disk allocated (``st_blocks`` x 512), each inode once."""
    files: int
    """Names under the workdir (files, folders, links); the walk stops one past the limit."""
    seconds: float
    """How long the scan took."""
    unreadable: str | None = None
    """A folder the daemon could not list (its contents are not counted), relative to the workdir."""


def held_deleted(pids: Iterable[int]) -> int:
    """Bytes allocated to regular files that ``pids`` hold open after they were deleted: they
    fill the disk as surely as the workdir's files, and no walk of it finds them."""
    seen: set[tuple[int, int]] = set()
    total = 0
    for pid in pids:
        try:
            fds = os.listdir(f"/proc/{pid}/fd")
        except OSError:
            continue
        for fd in fds:
            try:
                st = os.stat(f"/proc/{pid}/fd/{fd}")
            except OSError:
                continue
            if stat.S_ISREG(st.st_mode) and st.st_nlink == 0 and (st.st_dev, st.st_ino) not in seen:
                seen.add((st.st_dev, st.st_ino))
                total += st.st_blocks * 512
    return total


def measure(root: Path, max_files: int | None = None, holders: Iterable[int] = ()) -> DiskUse:
    """Walk ``root`` without following symlinks; stop once more than ``max_files`` names are seen.
    Deleted files that ``holders`` (the run's processes) keep open count too."""
    started = time.monotonic()
    total = files = 0
    linked: set[tuple[int, int]] = set()
    unreadable: str | None = None
    stack = [str(root)]
    stop = max_files + 1 if max_files is not None else None
    while stack and files != stop:
        folder = stack.pop()
        try:
            entries = os.scandir(folder)
        except FileNotFoundError:
            continue  # removed while we walked
        except OSError:
            unreadable = unreadable or os.path.relpath(folder, root)
            continue
        with entries:
            for entry in entries:
                try:
                    st = entry.stat(follow_symlinks=False)
                except OSError:
                    continue  # removed while we walked
                files += 1
                if stat.S_ISDIR(st.st_mode):
                    stack.append(entry.path)
                elif st.st_nlink > 1:
                    inode = (st.st_dev, st.st_ino)
                    if inode in linked:
                        continue
                    linked.add(inode)
                total += st.st_blocks * 512
                if files == stop:
                    break
    total += held_deleted(holders)
    return DiskUse(total, files, time.monotonic() - started, unreadable)


def excess(usage: DiskUse, disk_mb: int | None, disk_files: int | None, *, starting: bool = False) -> str | None:
    """Why ``usage`` is over the quota, naming the key to raise; None when it is within.
    ``starting``: found before the agent was started, which the message says."""
    when = "; the agent was not started" if starting else ""
    if disk_mb is not None and usage.bytes > disk_mb * MiB:
        held, key = f"{math.ceil(usage.bytes / MiB)} MiB > {disk_mb} MiB", "disk_mb"
    elif disk_files is not None and usage.files > disk_files:
        held, key = f"more than {disk_files} files and folders", "disk_files"
    elif usage.unreadable is not None and (disk_mb is not None or disk_files is not None):
        key = "disk_mb" if disk_mb is not None else "disk_files"
        return (
            f"disk quota cannot be checked: the daemon cannot list {usage.unreadable!r} in the workdir "
            f"(limits.{key}){when}; make that folder readable to the daemon again (chmod u+rx)"
        )
    else:
        return None
    return (
        f"disk quota exceeded: the workdir holds {held} (limits.{key}){when}; "
        f"delete files from the workdir or raise limits.{key}"
    )


def next_scan(usage: DiskUse, disk_mb: int | None, disk_files: int | None) -> float:
    """Seconds to wait before scanning again: :data:`SCAN_INTERVAL`, a quarter of it once the
    workdir is past half its quota (a fast writer gets less time past the limit), and never
    so often that scans use more than :data:`SCAN_SHARE` of a core."""
    fill = max(
        usage.bytes / (disk_mb * MiB) if disk_mb is not None else 0.0,
        usage.files / disk_files if disk_files is not None else 0.0,
    )
    wait = SCAN_INTERVAL / 4 if fill > 0.5 else SCAN_INTERVAL
    return max(wait, usage.seconds / SCAN_SHARE)
