"""Built-in file tools: read, write, list and search files in the agent's workdir.

Every path goes through :mod:`corral.sandbox.paths`, so nothing outside the workdir is
read or written whatever the model asks, and each tool caps what it reads and returns.
``.corral/`` in the workdir is corral's own bookkeeping (``write_file``'s append
markers); listing and searching skip it.
"""

from __future__ import annotations

import errno
import fnmatch
import hashlib
import json
import os
import stat
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Annotated, Any, TypedDict

import corral
from corral.errors import ToolCallError
from corral.sandbox.paths import inside_workdir, open_inside, open_parent, refused

READ_DEFAULT = 64 * 1024
READ_MAX = 1024 * 1024
"""Bytes ``read_file`` returns by default, and at most."""
LIST_MAX = 1000
"""Entries ``list_files`` returns at most."""
SEARCH_MAX_RESULTS = 1000
SEARCH_FILE_MAX = 4 * 1024 * 1024
SEARCH_SECONDS = 10.0
SEARCH_LINE_CHARS = 300
"""``search_files``: most matches, largest file searched, default time budget, characters of a matched line."""
BOOKKEEPING = ".corral"
"""Top-level folder of the workdir where corral's tools keep their own records."""
SCRATCH = ".tmp"
"""Top-level folder of the workdir that is the agent's ``TMPDIR`` (corral.sandbox.policy):
not the agent's work, so ``list_files`` and ``search_files`` leave it out."""


def _relative(real: Path) -> str:
    """``real`` as the model should name it: relative to the workdir, '/'-separated."""
    return real.relative_to(Path.cwd().resolve()).as_posix() or "."


@corral.tool(read_only=True)
def read_file(path: str, max_bytes: int = READ_DEFAULT, offset: int = 0) -> dict[str, Any]:
    """Read a text file in the agent's workdir.

    Returns ``content`` (UTF-8; undecodable bytes become U+FFFD), the file's total
    ``size`` in bytes, and ``truncated``: true when bytes after the returned ones
    remain (read them with a larger ``offset``).

    Args:
        path: File path relative to the workdir, e.g. "notes/today.md".
        max_bytes: Most bytes to return, 1 to 1048576.
        offset: Byte position to start reading at (0 for the beginning).
    """
    if not 1 <= max_bytes <= READ_MAX:
        raise refused(f"max_bytes must be from 1 to {READ_MAX}; read a large file in parts with offset")
    if offset < 0:
        raise refused("offset must be 0 or more")
    real = inside_workdir(path)
    fd = open_inside(path, os.O_RDONLY)
    try:
        info = os.fstat(fd)
        if not stat.S_ISREG(info.st_mode):
            raise ToolCallError(f"path {path!r} is not a regular file; list_files shows what it is", kind="failed")
        data = os.pread(fd, max_bytes, offset)
    finally:
        os.close(fd)
    return {
        "path": _relative(real),
        "content": data.decode("utf-8", errors="replace"),
        "size": info.st_size,
        "truncated": offset + len(data) < info.st_size,
    }


@corral.tool(idempotent=True)
def write_file(path: str, content: str, idempotency_key: str, append: bool = False) -> dict[str, Any]:
    """Write a text file in the agent's workdir, creating missing folders.

    Without ``append`` the file is replaced as a whole, atomically: a reader sees the
    old or the new content, never a mix. With ``append`` the content is added at the
    end; repeating the same call (after a crash) does not add it twice. Add newlines
    yourself where you want them. Returns the ``path``, ``bytes_written`` and the
    file's ``size`` afterwards.

    Args:
        path: File path relative to the workdir, e.g. "reports/summary.md".
        content: The text to write (UTF-8).
        append: Add to the end of the file instead of replacing it.
    """
    real = inside_workdir(path)
    data = content.encode("utf-8")
    if append:
        size = _append(path, _relative(real), data, idempotency_key)
    else:
        _replace(path, data, idempotency_key)
        size = len(data)
    return {"path": _relative(real), "bytes_written": len(data), "size": size}


def _replace(path: str, data: bytes, key: str) -> None:
    """Write a temporary file next to ``path`` and rename it over ``path``."""
    parent, name = open_parent(path, make_parents=True)
    temp = f".{name[:200]}.{key[:12]}.tmp"
    try:
        try:
            os.unlink(temp, dir_fd=parent)  # left by an interrupted try of this same call
        except FileNotFoundError:
            pass
        fd = os.open(temp, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW | os.O_CLOEXEC, 0o644, dir_fd=parent)
        try:
            _write_all(fd, data, 0)
            os.fsync(fd)
        finally:
            os.close(fd)
        try:
            os.replace(temp, name, src_dir_fd=parent, dst_dir_fd=parent)
        except IsADirectoryError:
            os.unlink(temp, dir_fd=parent)
            raise ToolCallError(f"path {path!r} is a folder, not a file", kind="failed") from None
        os.fsync(parent)
    finally:
        os.close(parent)


def _append(path: str, rel: str, data: bytes, key: str) -> int:
    """Append once per idempotency key: a marker records where this call's bytes start, so
    a rerun of the same call truncates back to there and writes them again."""
    fd = open_inside(path, os.O_WRONLY | os.O_CREAT, make_parents=True)
    try:
        if not stat.S_ISREG(os.fstat(fd).st_mode):
            raise ToolCallError(f"path {path!r} is not a regular file", kind="failed")
        size = os.fstat(fd).st_size
        marker_path = f"{BOOKKEEPING}/appends/{hashlib.sha256(rel.encode()).hexdigest()[:32]}"
        marker = _read_marker(marker_path)
        if marker.get("key") == key and isinstance(marker.get("offset"), int):
            offset = min(marker["offset"], size)
        else:
            offset = size
            _replace(marker_path, json.dumps({"key": key, "offset": offset}).encode(), key)
        os.ftruncate(fd, offset)
        _write_all(fd, data, offset)
        os.fsync(fd)
        return offset + len(data)
    finally:
        os.close(fd)


def _read_marker(path: str) -> dict[str, Any]:
    try:
        fd = open_inside(path, os.O_RDONLY)
    except ToolCallError:
        return {}
    try:
        found = json.loads(os.pread(fd, 4096, 0) or b"{}")
    except ValueError:
        return {}
    finally:
        os.close(fd)
    return found if isinstance(found, dict) else {}


def _write_all(fd: int, data: bytes, offset: int) -> None:
    view = memoryview(data)
    while view:
        written = os.pwrite(fd, view, offset)
        view, offset = view[written:], offset + written


@corral.tool(read_only=True)
def list_files(path: str = ".", pattern: str = "*", recursive: bool = False) -> dict[str, Any]:
    """List the files and folders in a folder of the agent's workdir.

    Returns ``entries`` sorted by path, each with ``path`` (relative to the workdir),
    ``type`` ("file", "folder", "symlink" or "other") and ``size`` in bytes, and
    ``truncated``: true when more than 1000 entries matched and the rest were left out.
    Symlinks are listed but not followed.

    Args:
        path: Folder relative to the workdir; "." is the workdir itself.
        pattern: Shell-style pattern the entry's name must match, e.g. "*.md".
        recursive: Also list everything inside sub-folders.
    """
    real = inside_workdir(path)
    if real.is_file():
        raise ToolCallError(f"path {path!r} is a file, not a folder; read it with read_file", kind="failed")
    entries: list[dict[str, Any]] = []
    truncated = False
    for folder, name, info in _walk(path, recursive):
        if not fnmatch.fnmatchcase(name, pattern):
            continue
        if len(entries) == LIST_MAX:
            truncated = True
            break
        entries.append({"path": _join(real, folder, name), "type": _kind(info.st_mode), "size": info.st_size})
    entries.sort(key=lambda e: str(e["path"]))
    return {"path": _relative(real), "entries": entries, "truncated": truncated}


class SearchSettings(TypedDict, total=False):
    """``[agents.NAME.tool_settings.search_files]``."""

    max_seconds: Annotated[float, "how long one search may take before it is stopped (default 10)"]


@corral.tool(read_only=True)
def search_files(
    pattern: str,
    settings: SearchSettings,
    path: str = ".",
    regex: bool = False,
    ignore_case: bool = False,
    max_results: int = 100,
) -> dict[str, Any]:
    """Search the text files under a folder of the agent's workdir for lines that match.

    Returns ``matches``, each with the file's ``path``, the ``line`` number (from 1) and
    the line's ``text`` (at most 300 characters), and ``truncated``: true when more
    matches exist than were returned. Binary files, files over 4 MiB and symlinks are
    skipped. A search that takes too long (10 s unless the operator set otherwise) stops
    with an error.

    Args:
        pattern: Text to look for; a regular expression when regex is true.
        path: Folder (searched with its sub-folders) or file, relative to the workdir.
        regex: Treat pattern as a regular expression (Python syntax).
        ignore_case: Match regardless of upper and lower case.
        max_results: Most matching lines to return, 1 to 1000.
    """
    if not 1 <= max_results <= SEARCH_MAX_RESULTS:
        raise refused(f"max_results must be from 1 to {SEARCH_MAX_RESULTS}")
    if not pattern:
        raise refused("pattern is empty; give the text to look for")
    seconds = settings.get("max_seconds", SEARCH_SECONDS)
    if isinstance(seconds, bool) or not isinstance(seconds, int | float) or seconds <= 0:
        raise refused(f"the operator's search_files setting max_seconds = {seconds!r} must be a number above 0")
    real = inside_workdir(path)
    deadline = time.monotonic() + seconds
    matches_line = _matcher(pattern, regex, ignore_case, deadline, seconds)
    matches: list[dict[str, Any]] = []
    for rel, text in _text_files(path, real):
        for number, line in enumerate(text.splitlines(), 1):
            if matches_line(line):
                if len(matches) == max_results:
                    return {"matches": matches, "truncated": True}
                matches.append({"path": rel, "line": number, "text": line[:SEARCH_LINE_CHARS]})
        if time.monotonic() > deadline:
            raise _too_slow(seconds)
    return {"matches": matches, "truncated": False}


def _matcher(pattern: str, regex: bool, ignore_case: bool, deadline: float, seconds: float) -> Callable[[str], bool]:
    if not regex:
        needle = pattern.casefold() if ignore_case else pattern
        return (lambda line: needle in line.casefold()) if ignore_case else (lambda line: needle in line)
    import regex as re  # a per-call timeout, so a pattern that backtracks forever cannot hang the run

    try:
        compiled = re.compile(pattern, re.IGNORECASE if ignore_case else 0)
    except re.error as exc:
        raise refused(f"pattern is not a valid regular expression: {exc}; fix it or pass regex=false") from None

    def search(line: str) -> bool:
        try:
            return compiled.search(line, timeout=max(deadline - time.monotonic(), 0.001)) is not None
        except TimeoutError:
            raise _too_slow(seconds) from None

    return search


def _too_slow(seconds: float) -> ToolCallError:
    return ToolCallError(
        f"the search took longer than {seconds:g} s and was stopped; use a simpler pattern or a narrower path",
        kind="timeout",
    )


def _text_files(path: str, real: Path) -> Iterator[tuple[str, str]]:
    """(relative path, text) of each searchable file at or under ``path``."""
    if real.is_file():
        fd = open_inside(path, os.O_RDONLY)
        text = _text(fd)
        if text is not None:
            yield _relative(real), text
        return
    for folder, name, info in _walk(path, recursive=True, dir_fds=True):
        if not stat.S_ISREG(info.st_mode) or info.st_size > SEARCH_FILE_MAX:
            continue
        folder_rel, dir_fd = folder
        try:
            fd = os.open(name, os.O_RDONLY | os.O_NOFOLLOW | os.O_CLOEXEC | os.O_NONBLOCK, dir_fd=dir_fd)
        except OSError:
            continue  # gone or replaced meanwhile
        text = _text(fd)
        if text is not None:
            yield _join(real, folder_rel, name), text


def _text(fd: int) -> str | None:
    """The file's text, or None for a binary, hard-linked, odd or oversized file (fd is closed)."""
    try:
        info = os.fstat(fd)
        if not stat.S_ISREG(info.st_mode) or info.st_nlink > 1 or info.st_size > SEARCH_FILE_MAX:
            return None
        data = os.pread(fd, SEARCH_FILE_MAX, 0)
    finally:
        os.close(fd)
    if b"\x00" in data[:8192]:
        return None
    return data.decode("utf-8", errors="replace")


def _walk(path: str, recursive: bool, dir_fds: bool = False) -> Iterator[tuple[Any, str, os.stat_result]]:
    """(folder, name, lstat) of every entry under ``path``, never following a symlink.

    ``folder`` is the path below ``path`` ('' at the top); with ``dir_fds`` it is
    (that path, the folder's descriptor), valid until the next item.
    """
    top = open_inside(path, os.O_RDONLY | os.O_DIRECTORY)
    try:
        at_workdir = inside_workdir(path) == Path.cwd().resolve()
        for folder, dirs, files, dir_fd in os.fwalk(".", dir_fd=top, follow_symlinks=False):
            rel = "" if folder == "." else folder[2:]
            if not rel and at_workdir:
                dirs[:] = [name for name in dirs if name not in (BOOKKEEPING, SCRATCH)]
            for name in sorted(dirs + files):
                try:
                    info = os.stat(name, dir_fd=dir_fd, follow_symlinks=False)
                except OSError as exc:
                    if exc.errno == errno.ENOENT:
                        continue
                    raise
                yield ((rel, dir_fd) if dir_fds else rel), name, info
            if not recursive:
                break
    finally:
        os.close(top)


def _join(real: Path, folder: str, name: str) -> str:
    base = _relative(real)
    parts = [p for p in (base if base != "." else "", folder, name) if p]
    return "/".join(parts)


def _kind(mode: int) -> str:
    if stat.S_ISLNK(mode):
        return "symlink"
    if stat.S_ISDIR(mode):
        return "folder"
    return "file" if stat.S_ISREG(mode) else "other"


@corral.hookimpl
def corral_register_tools(register: Callable[..., Any]) -> None:
    for func in (read_file, write_file, list_files, search_files):
        register(func)
