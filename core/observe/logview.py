"""Reading corral's JSON-lines logs back, for ``corral logs [-f] AGENT``.

The files are written by :mod:`corral.observe.logs`; this module only reads them, so it works on a
copied log directory with no daemon running. A log is never trusted to be well formed:
a bad line becomes an ``unreadable log line`` event instead of an exception, and every
string reaching the terminal has its control characters, bidirectional controls included,
escaped (:func:`printable`) so a log line can neither drive the operator's terminal nor
reorder what it shows.
"""

from __future__ import annotations

import json
import os
import re
import time
import types
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass
from datetime import UTC, datetime
from fnmatch import fnmatchcase
from pathlib import Path
from typing import Any, BinaryIO, NamedTuple

LEVELS = ("debug", "info", "warning", "error", "critical")
"""Log levels from least to most severe."""

UNREADABLE = "unreadable log line"
"""The ``event`` of the marker yielded in place of a line that is not a JSON object."""

_RANK = types.MappingProxyType({name: rank for rank, name in enumerate(LEVELS)})
_ALIASES = types.MappingProxyType({"warn": "warning", "fatal": "critical", "exception": "error"})
_SHOWN = frozenset({"timestamp", "level", "agent", "run_id", "trace_id", "event", "exception"})
"""Shown in the line's head, or left to ``--json`` (the trace id is for machines)."""
_RAW_KEPT = 500  # how much of an unreadable line the marker keeps

BIDI_CONTROLS = (0x061C, 0x200E, 0x200F, *range(0x202A, 0x202F), *range(0x2066, 0x206A))
"""Code points that reorder the text around them on a terminal (Trojan Source, CVE-2021-42574)."""

# C0 and C1 controls (ESC, CSI...) as \xNN; bidirectional controls and the Unicode line and
# paragraph separators (a new line on some terminals) as \uNNNN: shown, never obeyed.
_CONTROLS = types.MappingProxyType(
    {
        **{code: f"\\x{code:02x}" for code in (*range(0x20), *range(0x7F, 0xA0))},
        **{code: f"\\u{code:04x}" for code in (*BIDI_CONTROLS, 0x2028, 0x2029)},
    }
)
_RESET = "\x1b[0m"
_DIM = "\x1b[2m"
_BOLD = "\x1b[1m"
_LEVEL_COLORS = types.MappingProxyType(
    {
        "debug": "\x1b[2m",
        "info": "\x1b[32m",
        "warning": "\x1b[33m",
        "error": "\x1b[31m",
        "critical": "\x1b[1;31m",
    }
)
_AGENT_COLOR = "\x1b[34m"
_RUN_COLOR = "\x1b[35m"
_KEY_COLOR = "\x1b[36m"


def log_files(path: Path) -> list[Path]:
    """The current file and its rotated backups, oldest first: ``path.N`` … ``path.1``, ``path``.

    Backups are found by listing the directory, so a gap left by a crash mid-rotation does
    not hide the older ones.
    """
    pattern = re.compile(re.escape(path.name) + r"\.(\d+)")
    try:
        names = os.listdir(path.parent)
    except FileNotFoundError:
        names = []
    backups = sorted(
        ((int(m[1]), path.parent / name) for name in names if (m := pattern.fullmatch(name))),
        reverse=True,
    )
    return [backup for _, backup in backups] + [path]


def read_events(path: Path, *, last: int | None = None) -> Iterator[dict[str, Any]]:
    """Yield the events of ``path`` and its rotated backups, oldest first.

    With ``last``, only the final ``last`` events, read backwards from the files' end
    (:func:`last_lines`). A line that is not a JSON object is yielded as an :data:`UNREADABLE`
    marker naming file and line number; an unterminated final line of the current file is
    skipped unless it parses, since the daemon may be mid-write. Reading races with
    rotation, so an event may be missed or seen twice while the daemon rotates.
    """
    if last is not None and last < 0:
        raise ValueError(f"last must be >= 0, not {last}")
    files = log_files(path)
    if last is None:
        for file in files:
            yield from _read_file(file, current=file == path)
        return
    lines = last_lines(path, last)
    events = [line.parsed() for line in lines]
    unreadable = [line for line, event in zip(lines, events, strict=True) if event is None]
    numbers = _line_numbers(unreadable)
    for line, event in zip(lines, events, strict=True):
        yield event if event is not None else _marker(line.raw, line.file, numbers.get(line, 0))


class Line(NamedTuple):
    """One line of a log, not yet parsed: where it is, and its bytes (a tuple: a page makes
    thousands of these a second)."""

    file: Path
    offset: int
    raw: bytes

    def parsed(self) -> dict[str, Any] | None:
        """The line as an event, or None when it is not a JSON object."""
        return _json_object(self.raw)


def last_lines(path: Path, last: int, *, having: bytes = b"", most: int | None = None) -> list[Line]:
    """Of the last ``last`` lines of ``path`` and its backups, those containing ``having``,
    oldest first and unparsed; with ``most``, from the last ``most`` bytes at most.

    They are read backwards from the end, a block at a time: a page showing an agent's
    latest lines reads those, not its whole 10 MB log, and parses only those it shows (one
    run's lines, found by its id in their bytes). ``most`` bounds what one page reads when
    the lines are long (an agent's line may be a megabyte)."""
    found: list[Line] = []
    wanted, budget = last, most
    for file in reversed(log_files(path)):
        if wanted == 0 or budget == 0:
            break
        for offset, raw in _tail(file, wanted, current=file == path, most=budget):
            wanted -= 1
            if having in raw:
                found.append(Line(file, offset, raw))
        if budget is not None and wanted:  # the file was read back to its start or to the budget
            budget = max(0, budget - _size(file))
    return found[::-1]


def _size(file: Path) -> int:
    try:
        return file.stat().st_size
    except FileNotFoundError:
        return 0


def _line_numbers(lines: list[Line]) -> dict[Line, int]:
    """The line number of each of ``lines``, counted in one read of each file up to the last
    of them (only unreadable lines need one: their marker names it). A file rotated away
    meanwhile leaves its lines without one."""
    numbers: dict[Line, int] = {}
    by_file: dict[Path, list[Line]] = {}
    for line in lines:
        by_file.setdefault(line.file, []).append(line)
    for file, among in by_file.items():
        among.sort(key=lambda line: line.offset)
        try:
            with open(file, "rb") as handle:
                counted, at = 1, 0
                for line in among:
                    counted += handle.read(line.offset - at).count(b"\n")
                    at = line.offset
                    numbers[line] = counted
        except OSError:
            continue
    return numbers


def follow(
    path: Path,
    *,
    poll: float = 0.2,
    stop: Callable[[], bool] = lambda: False,
    ready: Callable[[], None] = lambda: None,
) -> Iterator[dict[str, Any]]:
    """Yield events appended to ``path`` from now on, like ``tail -F``; return once stop() is
    true. ``ready`` is called once "now" is fixed (the file's end found, or found missing).

    If the file exists it is followed from its current end; a file that appears later, or
    replaces it on rotation (new inode), is read from its start after the rest of the old one
    is drained. Truncation (the file shrinks below the read position) restarts at offset 0.
    ``stop`` is checked every ``poll`` seconds, also while nothing is written. As with
    ``tail -F``, if the file rotates twice within one poll the middle file is missed.
    """
    handle: BinaryIO | None = None
    identity: tuple[int, int] | None = None
    pending = b""
    skip_partial = False
    first_look = True
    try:
        while True:
            if handle is None:
                try:
                    handle = open(path, "rb")  # noqa: SIM115 - held open across polls
                except FileNotFoundError:
                    pass
                else:
                    stat = os.fstat(handle.fileno())
                    identity = (stat.st_dev, stat.st_ino)
                    pending = b""
                    skip_partial = False
                    if first_look and stat.st_size:
                        skip_partial = _ends_mid_line(handle, stat.st_size)
                        handle.seek(stat.st_size)
            if first_look:
                ready()
            first_look = False
            if handle is not None:
                pending, skip_partial, events = _drain(handle, path, pending, skip_partial)
                yield from events
                latest: os.stat_result | None
                try:
                    latest = os.stat(path)
                except FileNotFoundError:
                    latest = None
                if latest is None or (latest.st_dev, latest.st_ino) != identity:
                    # Rotated or removed: whatever was written before the rename is still
                    # readable through our handle, so finish it before switching.
                    pending, skip_partial, events = _drain(handle, path, pending, skip_partial)
                    yield from events
                    if pending.strip():
                        yield _parse(pending, path, 0)
                    handle.close()
                    handle = None
                    if latest is not None:
                        continue
                elif latest.st_size < handle.tell():
                    handle.seek(0)
                    pending = b""
                    skip_partial = False
            if stop():
                return
            time.sleep(poll)
    finally:
        if handle is not None:
            handle.close()


def _ends_mid_line(handle: BinaryIO, size: int) -> bool:
    handle.seek(size - 1)
    return handle.read(1) != b"\n"


def _drain(
    handle: BinaryIO, path: Path, pending: bytes, skip_partial: bool
) -> tuple[bytes, bool, list[dict[str, Any]]]:
    """Read what is new; return the unterminated rest, the skip flag and the complete events."""
    data = handle.read()
    if not data:
        return pending, skip_partial, []
    pending += data
    if skip_partial:
        # We started following in the middle of a line; its head is not ours to parse.
        cut = pending.find(b"\n")
        if cut < 0:
            return b"", True, []
        pending = pending[cut + 1 :]
        skip_partial = False
    *lines, rest = pending.split(b"\n")
    events = [_parse(line, path, 0) for line in lines if line.strip()]
    return rest, skip_partial, events


def _read_file(file: Path, *, current: bool) -> Iterator[dict[str, Any]]:
    try:
        handle = open(file, "rb")  # noqa: SIM115 - closed by the with below
    except FileNotFoundError:
        return  # rotated away between listing and opening
    with handle:
        for lineno, raw in enumerate(handle, 1):
            if not raw.strip():
                continue
            if current and not raw.endswith(b"\n"):
                event = _parse(raw, file, lineno)
                if event.get("event") != UNREADABLE:
                    yield event
                return
            yield _parse(raw, file, lineno)


TAIL_BLOCK = 1 << 16
"""Bytes read at a time, backwards from a log's end, by :func:`_tail`."""


def _tail(file: Path, wanted: int, *, current: bool, most: int | None) -> Iterator[tuple[int, bytes]]:
    """The last ``wanted`` lines of ``file`` that :func:`_read_file` would read, newest first,
    each with the offset it starts at: blank ones left out, the current file's unterminated
    last line only if it parses (the daemon may be writing it). With ``most``, only from
    its last ``most`` bytes."""
    if wanted <= 0:
        return
    try:
        handle = open(file, "rb")  # noqa: SIM115 - closed by the with below
    except FileNotFoundError:
        return
    with handle:
        end = handle.seek(0, os.SEEK_END)
        floor = 0 if most is None else max(0, end - most)
        for offset, raw in _backwards(handle, end, floor):
            if not raw.strip():
                continue
            if current and not raw.endswith(b"\n") and _json_object(raw) is None:
                continue
            yield offset, raw
            wanted -= 1
            if wanted == 0:
                return


def _backwards(handle: BinaryIO, end: int, floor: int) -> Iterator[tuple[int, bytes]]:
    """Every line of the file from the last to the first (each with its newline, but a last
    one that has none), with its offset, reading a block at a time back to ``floor``, where
    a line cut by it is left out. Each byte is split once, so any file costs its size."""
    pos, head, head_ends = end, b"", False  # head: a line's end whose start lies before pos
    while pos > floor:
        step = min(pos - floor, TAIL_BLOCK)
        pos -= step
        handle.seek(pos)
        parts = (handle.read(step) + head).split(b"\n")
        at = pos + len(parts[0]) + 1
        starts = []
        for part in parts[1:]:
            starts.append(at)
            at += len(part) + 1
        for index in range(len(parts) - 1, 0, -1):
            last = index == len(parts) - 1
            yield starts[index - 1], parts[index] + (b"\n" if head_ends or not last else b"")
        head_ends = head_ends or len(parts) > 1
        head = parts[0]
    if pos == 0 and head:
        yield 0, head + (b"\n" if head_ends else b"")


def _json_object(raw: bytes) -> dict[str, Any] | None:
    """``raw`` as a JSON object, or None when it is not one (nested past what the parser
    takes included)."""
    try:
        event = json.loads(raw.decode("utf-8", errors="replace"))
    except (ValueError, RecursionError):
        return None
    return event if isinstance(event, dict) else None


def _parse(raw: bytes, file: Path, lineno: int) -> dict[str, Any]:
    """One line as an event, or the marker that stands in for it."""
    event = _json_object(raw)
    return event if event is not None else _marker(raw, file, lineno)


def _marker(raw: bytes, file: Path, lineno: int) -> dict[str, Any]:
    """What stands in for a line that is not a JSON object (``lineno`` 0: not known)."""
    marker: dict[str, Any] = {"event": UNREADABLE, "level": "warning", "file": str(file)}
    if lineno:
        marker["lineno"] = lineno
    marker["line"] = raw.decode("utf-8", errors="replace").strip()[:_RAW_KEPT]
    return marker


def _level(value: Any) -> str:
    name = str(value).lower() if value is not None else ""
    return _ALIASES.get(name, name)


def at_least(level: Any, least: str) -> bool:
    """Whether an event's ``level`` is ``least`` or more severe; a missing or unknown level counts as info."""
    return _RANK.get(_level(level), _RANK["info"]) >= _RANK[least]


@dataclass(frozen=True)
class Filter:
    """Which events ``corral logs`` shows; a field left as None does not filter.

    ``run`` matches a run id by prefix or suffix, so the last 8 characters that :func:`render` prints
    can be pasted back. ``min_level`` keeps events at or above that level (``warn`` and
    ``fatal`` are accepted as aliases); events with a missing or unknown level count as
    ``info``. ``event`` is an exact event name or an :mod:`fnmatch` glob (case-sensitive),
    matched against the name as :func:`shown_event` writes it: an agent's own line (``source``
    ``agent``, from ``ctx.log`` or the door's log API) as ``agent:NAME``, so ``run ended``
    finds corral's lines only, never an agent's line of that name (``agent:run ended`` finds those).
    ``since`` and ``until`` (epoch seconds, both included) keep events whose ``timestamp``
    lies between; an event without a readable one is left out when either is set.
    """

    @property
    def narrows(self) -> bool:
        """Whether any filter is set (so the last N events must be looked for among all)."""
        return any(value is not None for value in (self.run, self.min_level, self.event, self.since, self.until))

    run: str | None = None
    min_level: str | None = None
    event: str | None = None
    since: float | None = None
    until: float | None = None

    def __post_init__(self) -> None:
        if self.min_level is not None:
            level = _level(self.min_level)
            if level not in _RANK:
                raise ValueError(f"unknown log level {self.min_level!r}; use one of {', '.join(LEVELS)}")
            object.__setattr__(self, "min_level", level)

    def matches(self, ev: Mapping[str, Any]) -> bool:
        """True if ``ev`` passes every filter that is set."""
        if self.run is not None:
            run_id = ev.get("run_id")
            if not isinstance(run_id, str) or not (run_id.startswith(self.run) or run_id.endswith(self.run)):
                return False
        if self.min_level is not None and not at_least(ev.get("level"), self.min_level):
            return False
        if self.event is not None:
            name = shown_event(ev)
            if name != self.event and not fnmatchcase(name, self.event):
                return False
        if self.since is not None or self.until is not None:
            at = epoch(ev.get("timestamp"))
            if (
                at is None
                or (self.since is not None and at < self.since)
                or (self.until is not None and at > self.until)
            ):
                return False
        return True


def epoch(timestamp: Any) -> float | None:
    """An event's ``timestamp`` (ISO 8601, UTC when it names no zone, or epoch seconds) as
    epoch seconds; None when it is not a time."""
    moment = _moment(timestamp)
    return None if moment is None else moment.timestamp()


def _moment(timestamp: Any) -> datetime | None:
    try:
        if isinstance(timestamp, int | float) and not isinstance(timestamp, bool):
            return datetime.fromtimestamp(timestamp, UTC)
        if not isinstance(timestamp, str):
            return None
        moment = datetime.fromisoformat(timestamp)
    except (ValueError, OverflowError, OSError):
        return None
    return moment if moment.tzinfo is not None else moment.replace(tzinfo=UTC)  # corral writes UTC


AGENT_MARK = "agent:"
"""What precedes an agent's own event name wherever corral shows or matches it."""


def shown_event(ev: Mapping[str, Any]) -> str:
    """An event's name as corral shows it: an agent's own line (``source`` ``agent``: the
    agent wrote its name and fields) marked ``agent:``, so it cannot pass for corral's."""
    name = str(ev.get("event", ""))
    return AGENT_MARK + name if ev.get("source") == "agent" else name


def render(ev: Mapping[str, Any], *, color: bool) -> str:
    """One event as a line a person reads; the exception, if any, indented on lines below.

    Layout: local ``HH:MM:SS.mmm``, level padded to 8, agent, the last 8 characters of
    ``run_id``, the event (:func:`shown_event`: an agent's own ``agent:NAME``), then
    ``key=value`` for the remaining fields in file order.
    Strings are quoted only when empty or containing whitespace; other values are JSON.
    """

    def paint(code: str, text: str) -> str:
        return f"{code}{text}{_RESET}" if color else text

    level = _level(ev.get("level", "?")) or "?"
    parts = [
        paint(_DIM, _clock(ev.get("timestamp"))),
        paint(_LEVEL_COLORS.get(level, ""), printable(level).ljust(8)),
    ]
    if ev.get("agent") is not None:
        parts.append(paint(_AGENT_COLOR, printable(str(ev["agent"]))))
    run_id = ev.get("run_id")
    if run_id is not None:
        parts.append(paint(_RUN_COLOR, printable(str(run_id)[-8:])))
    parts.append(paint(_BOLD, printable(shown_event(ev))))
    parts.extend(
        f"{paint(_KEY_COLOR, printable(str(key)))}={_moment_value(key, value)}"
        for key, value in ev.items()
        if key not in _SHOWN
    )
    line = " ".join(parts)
    exception = ev.get("exception")
    if exception:
        text = exception if isinstance(exception, str) else _value(exception)
        for row in text.rstrip("\n").split("\n"):
            line += "\n" + paint(_LEVEL_COLORS["error"], "    " + printable(row.expandtabs()))
    return line


def _clock(timestamp: Any) -> str:
    """Local wall-clock time with milliseconds; the raw value if it is not a timestamp."""
    if timestamp is None:
        return "??:??:??.???"
    moment = _moment(timestamp)
    if moment is None:
        return printable(str(timestamp))
    local = moment.astimezone()
    return f"{local:%H:%M:%S}.{local.microsecond // 1000:03d}"


TIME_FIELDS = frozenset({"until", "since", "at", "created", "due", "next_fire", "expires"})
"""Fields that hold epoch seconds: shown as a local time with its zone (the file keeps the number)."""


def _moment_value(key: Any, value: Any) -> str:
    if key in TIME_FIELDS and isinstance(value, int | float) and not isinstance(value, bool) and value > 1e8:
        moment = _moment(value)
        if moment is not None:
            return moment.astimezone().strftime("%Y-%m-%dT%H:%M:%S%z")
    return _value(value)


def _value(value: Any) -> str:
    if isinstance(value, str):
        if not value or any(char.isspace() for char in value):
            return printable(json.dumps(value, ensure_ascii=False))
        return printable(value)
    try:
        return printable(json.dumps(value, ensure_ascii=False, default=str))
    except (TypeError, ValueError, RecursionError):
        try:
            return printable(repr(value))
        except Exception:  # a broken __repr__, or an int too long to print
            return f"<{type(value).__name__}>"


_JSON_CONTROLS = types.MappingProxyType(
    {code: f"\\u{code:04x}" for code in (*range(0x7F, 0xA0), *BIDI_CONTROLS, 0x2028, 0x2029)}
)


def printable_json(text: str) -> str:
    """JSON text (``json.dumps(..., ensure_ascii=False)``) safe to print on a terminal and still
    the same JSON: DEL, C1 controls, bidirectional controls and U+2028/U+2029 become ``\\uNNNN``
    escapes, which can only stand inside strings (json.dumps escapes C0 itself)."""
    return text.translate(_JSON_CONTROLS)


def printable(text: str) -> str:
    """``text`` safe to print on a terminal: C0 and C1 controls (newlines included) shown as
    ``\\xNN``, bidirectional controls and U+2028/U+2029 as ``\\uNNNN``; nothing else changes."""
    return text.translate(_CONTROLS)
