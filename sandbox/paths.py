"""Resolving and opening a path an agent or a tool names, strictly inside the agent's workdir.

Every file-touching tool goes through here, because the path usually comes from a model:
``..`` that climbs out, an absolute path elsewhere, a symlink (even a dangling one, which
a write would create through) that leads out, a NUL byte. :func:`inside_workdir` checks
a path; :func:`open_inside` and :func:`open_parent` also open it without a race: they
walk from the workdir's descriptor one component at a time with ``O_NOFOLLOW``, so a
symlink swapped in between the check and the open cannot lead out (the open fails
instead). A regular file with more than one hard link is refused too: it may be the same
file as one outside. Every refusal is a :class:`corral.ToolCallError` of kind
``refused`` whose message tells the model what to pass instead.
"""

from __future__ import annotations

import errno
import os
import stat
from pathlib import Path

from corral.errors import ToolCallError

_DIR_FLAGS = os.O_RDONLY | os.O_DIRECTORY | os.O_NOFOLLOW | os.O_CLOEXEC


def refused(message: str) -> ToolCallError:
    """A refusal the model can act on."""
    return ToolCallError(message, kind="refused")


def inside_workdir(path: str, workdir: Path | None = None) -> Path:
    """The real path of ``path`` under ``workdir`` (default: the current directory).

    ``path`` may be relative to the workdir or absolute inside it, and may not exist yet.
    Refuses NUL bytes, and any path whose real location, after every symlink is followed
    (a dangling one included), is not the workdir or under it.
    """
    root = (workdir or Path.cwd()).resolve()
    if not isinstance(path, str):
        raise refused(f"path must be a string, not {type(path).__name__}")
    if "\x00" in path:
        raise refused("path contains a NUL byte; pass a plain path relative to the agent's workdir")
    try:
        real = Path(os.path.realpath(root / path))
    except OSError as exc:  # a part of it vanished or changed while it was resolved
        raise ToolCallError(f"path {path!r} cannot be resolved: {exc.strerror or exc}", kind="failed") from None
    if real != root and root not in real.parents:
        what = "is absolute and outside" if Path(path).is_absolute() else "leads outside"
        raise refused(f"path {path!r} {what} the agent's workdir; use a path relative to the workdir, inside it")
    return real


def open_parent(path: str, *, workdir: Path | None = None, make_parents: bool = False) -> tuple[int, str]:
    """A descriptor of the folder that holds ``path``, and the last component's name.

    For creating, renaming or listing relative to that folder (``dir_fd=``) without
    following anything; the caller closes the descriptor. ``make_parents`` creates
    missing folders on the way. The workdir itself has no parent here: it is refused.
    """
    root = (workdir or Path.cwd()).resolve()
    parts = inside_workdir(path, root).relative_to(root).parts
    if not parts:
        raise refused(f"path {path!r} is the workdir itself; name a file inside it")
    fd = os.open(root, _DIR_FLAGS)
    for part in parts[:-1]:
        fd = _step_into(fd, part, path, make_parents)  # closes the folder it steps out of
    return fd, parts[-1]


def open_inside(
    path: str,
    flags: int = os.O_RDONLY,
    mode: int = 0o644,
    *,
    workdir: Path | None = None,
    make_parents: bool = False,
) -> int:
    """``os.open`` of ``path`` inside the workdir, never through a symlink; returns the descriptor.

    ``flags`` as for ``os.open`` (``O_NOFOLLOW`` and ``O_CLOEXEC`` are added); the
    workdir itself may be opened with ``O_DIRECTORY``. Refuses a regular file with more
    than one hard link.
    """
    root = (workdir or Path.cwd()).resolve()
    if not inside_workdir(path, root).relative_to(root).parts:
        return os.open(root, flags | os.O_NOFOLLOW | os.O_CLOEXEC)
    parent, name = open_parent(path, workdir=root, make_parents=make_parents)
    try:
        fd = os.open(name, flags | os.O_NOFOLLOW | os.O_CLOEXEC, mode, dir_fd=parent)
    except OSError as exc:
        raise _explain(exc, path) from None
    finally:
        os.close(parent)
    info = os.fstat(fd)
    if stat.S_ISREG(info.st_mode) and info.st_nlink > 1:
        os.close(fd)
        raise refused(f"path {path!r} has other hard links, which may lead outside the workdir; use another file")
    return fd


def _step_into(fd: int, part: str, path: str, make: bool) -> int:
    """The descriptor of folder ``part`` inside folder ``fd`` (which is closed either way)."""
    try:
        try:
            return os.open(part, _DIR_FLAGS, dir_fd=fd)
        except FileNotFoundError:
            if not make:
                raise
            try:
                os.mkdir(part, 0o755, dir_fd=fd)
            except FileExistsError:
                pass  # made by someone else meanwhile: open it, still without following
            return os.open(part, _DIR_FLAGS, dir_fd=fd)
    except OSError as exc:
        if exc.errno == errno.ENOTDIR and _is_link(part, fd):
            exc = OSError(errno.ELOOP, "a symlink")  # O_DIRECTORY reports a symlink as "not a directory"
        raise _explain(exc, path) from None
    finally:
        os.close(fd)


def _is_link(name: str, dir_fd: int) -> bool:
    try:
        return stat.S_ISLNK(os.lstat(name, dir_fd=dir_fd).st_mode)
    except OSError:
        return False


def _explain(exc: OSError, path: str) -> ToolCallError:
    """An OSError met while opening, as something the model can act on."""
    if exc.errno in (errno.ELOOP, errno.EMLINK):
        return refused(f"path {path!r} changed into a symlink while it was opened; corral never follows one")
    if exc.errno == errno.ENOTDIR:
        return ToolCallError(f"path {path!r}: a part of it is not a folder", kind="failed")
    if exc.errno == errno.ENOENT:
        return ToolCallError(f"path {path!r} does not exist in the agent's workdir", kind="not_found")
    if exc.errno == errno.EISDIR:
        return ToolCallError(f"path {path!r} is a folder, not a file", kind="failed")
    return ToolCallError(f"path {path!r}: {exc.strerror or exc}", kind="failed")
