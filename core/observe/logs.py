"""Where corral's structured logs go: JSON lines, one rotated file per agent plus the daemon's.

Each file is a :class:`_RotatingFile` written through structlog's ``BytesLogger`` (its
per-file lock makes writes and rotation thread-safe) behind a structlog filtering bound
logger, rendered by orjson. The daemon writes a line per journaled step, so the stdlib's
logging machinery (a ``LogRecord``, a caller lookup and two ``stat()`` calls per line,
about 80 µs here) is left out, and so is the stdlib's ``json`` (orjson, which structlog's
performance guide recommends, takes a line from about 50 to about 15 µs); rotation keeps
``RotatingFileHandler``'s naming (``.1`` newest). Nothing is
configured process-wide (no ``structlog.configure()``, no stdlib loggers), so several
:class:`LogFiles` can live in one process and a library calling
``logging.config.dictConfig`` cannot silence them. :mod:`corral.observe.logview` reads them back.
"""

from __future__ import annotations

import functools
import logging
import os
import threading
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from types import TracebackType
from typing import Any, TextIO

import orjson
import structlog
from structlog.typing import EventDict, FilteringBoundLogger, Processor, WrappedLogger

from corral.observe.logview import at_least, render
from corral.secrets import Redaction

DAEMON_LOG = "corral.log"
"""File name of the daemon's own log; no agent may be called ``corral``."""

MAX_FIELD_CHARS = 16 * 1024
"""Longest string value written; longer ones are cut and end with a truncation marker."""

_MAX_DEPTH = 8  # nested containers deeper than this are written as their repr
_MAX_INT_BITS = 14_000  # Python refuses to print ints of more than 4300 digits
_JSON_INT_BITS = 63  # orjson holds 64-bit integers; bigger ones are written as strings
_FIRST_KEYS = ("timestamp", "level", "event")  # so a raw file reads well with less/grep
_FORBIDDEN_IN_NAMES = ("/", "\\", "\0")

# Every level reaches the file; filtering is for readers (corral.observe.logview.Filter).
_Wrapper = structlog.make_filtering_bound_logger(logging.DEBUG)


def log_path(directory: Path, agent: str | None) -> Path:
    """The current log file of ``agent`` (``None``: the daemon) under ``directory``.

    Raises ValueError for a name that would escape ``directory`` or collide with the
    daemon's log; agent names are validated at config load, this is the last guard.
    """
    if agent is None:
        return directory / DAEMON_LOG
    if (
        not agent
        or agent in (".", "..")
        or any(bad in agent for bad in _FORBIDDEN_IN_NAMES)
        or f"{agent}.log" == DAEMON_LOG
    ):
        raise ValueError(f"{agent!r} cannot be used as a log file name")
    return directory / f"{agent}.log"


class _RotatingFile:
    """A text file that appends whole lines and rotates by size, ``RotatingFileHandler``-style.

    A line that would take the file past ``max_bytes`` goes to a fresh file after the old
    ones shift up (``<name>.1`` is the newest backup, ``<name>.<backups>`` is dropped); 0
    for either number disables rotation. The file is opened on the first line. Each call
    holds the file's own lock, so the several loggers of one file never cut a line in half.
    """

    def __init__(self, path: Path, max_bytes: int, backups: int) -> None:
        self.path = path
        self.max_bytes = max_bytes
        self.backups = backups
        self._file: Any = None
        self._size = 0
        self._lock = threading.Lock()

    def write(self, data: bytes) -> None:
        with self._lock:
            if self._file is None:
                self._open()
            if self.max_bytes and self.backups and self._size and self._size + len(data) > self.max_bytes:
                self._rotate()
            self._file.write(data)
            self._size += len(data)

    def flush(self) -> None:
        with self._lock:
            if self._file is not None:
                self._file.flush()

    def append(self, data: bytes) -> None:
        """Write one line and flush it (a line handed over, written later)."""
        self.write(data)
        self.flush()

    def close(self) -> None:
        with self._lock:
            self._close()

    def _close(self) -> None:
        if self._file is not None:
            self._file.close()
            self._file = None

    def _open(self) -> None:
        self._file = open(self.path, "ab")  # noqa: SIM115 - kept open for the daemon's life
        self._size = self._file.tell()

    def _rotate(self) -> None:
        self._close()
        for index in range(self.backups - 1, 0, -1):
            older = self.path.with_name(f"{self.path.name}.{index}")
            if older.exists():
                older.replace(self.path.with_name(f"{self.path.name}.{index + 1}"))
        self.path.replace(self.path.with_name(f"{self.path.name}.1"))
        self._open()


HandOver = Callable[[str, int | None, Callable[[], None]], None]
"""Takes the writing of one line of a run, with the run's id and the line's ``seq`` (the
step the agent last asked for, if it says), to do it in order (:meth:`LogFiles.hand_over`)."""


class _AgentFile:
    """What an agent's loggers write to. A line of a run is handed over to be written in
    order, once the log files are told where (:meth:`LogFiles.hand_over`); any other line,
    and every line of a ``direct`` logger, is written at once."""

    def __init__(self, file: _RotatingFile, logs: LogFiles, *, direct: bool) -> None:
        self._file = file
        self._logs = logs
        self._direct = direct

    def msg(self, data: bytes, run: str | None = None, seq: int | None = None) -> None:
        hand_over = None if self._direct else self._logs.handed_to
        if hand_over is None or run is None:
            self._file.append(data + b"\n")
        else:
            hand_over(run, seq, functools.partial(self._file.append, data + b"\n"))

    log = debug = info = warn = warning = msg
    fatal = failure = err = error = critical = exception = msg


@dataclass
class _Sink:
    """One file and what its structlog loggers write to: ``writer`` for every line (for an
    agent's file, handed over once :meth:`LogFiles.hand_over` is set), ``direct`` for the
    lines written where their order is made (the event stream's observers)."""

    writer: WrappedLogger
    direct: WrappedLogger
    file: _RotatingFile | None
    processors: list[Processor]


class LogFiles:
    """The log directory of one daemon: ``<agent>.log`` per agent and ``corral.log``.

    A file rotates once it would reach ``max_bytes``, keeping ``backups`` old files
    (``<name>.log.1`` is the newest); as in the stdlib, 0 for either disables rotation.
    Lines are JSON objects with ``timestamp`` (UTC ISO 8601, milliseconds), ``level``,
    ``event``, the bound values and, when logged with ``exc_info``, an ``exception``
    string. Values that JSON cannot hold are written as their ``repr``; strings are cut
    at :data:`MAX_FIELD_CHARS`.

    ``processors`` run on every event after the timestamp, level and ``exception`` string
    are added and before anything is written, including the ``echo`` copy; this is where
    secret redaction goes. They are called on the logging thread and must not raise.

    ``echo`` receives the daemon log's events at info and above (not the agents', not
    debug) as readable lines, for ``corral up``'s terminal and stderr under supervisord; in
    colour on a terminal, unless ``NO_COLOR`` is set. Use one ``LogFiles`` per directory:
    two writers on one file would rotate it under each other. After :meth:`close`, events
    are dropped.
    """

    def __init__(
        self,
        directory: Path,
        *,
        max_bytes: int = 10 * 2**20,
        backups: int = 5,
        echo: TextIO | None = None,
        processors: Sequence[Processor] = (),
    ) -> None:
        self.directory = Path(directory)
        self.directory.mkdir(parents=True, exist_ok=True)
        self._max_bytes = max_bytes
        self._backups = backups
        self._echo = echo
        self._extra = tuple(processors)
        self.redaction = Redaction()
        """Granted secrets, hidden from every line of every file (``Redaction.add``)."""
        self._lock = threading.Lock()
        self._sinks: dict[str | None, _Sink] = {}
        self._closed = False
        self.handed_to: HandOver | None = None
        """Where agents' lines go to be written (:meth:`hand_over`); None: at once."""

    def hand_over(self, hand_over: HandOver | None) -> None:
        """From now on, hand the writing of each agent's line to ``hand_over`` (None: write
        at once again). The composition root passes the event stream's order
        (:class:`corral.observe.lines.InOrder`), so a step's line, written by the stream's
        observer, comes before the agent's lines logged after the step, as it happened."""
        self.handed_to = hand_over

    def logger(self, agent: str | None = None, *, direct: bool = False, **bind: Any) -> FilteringBoundLogger:
        """A logger writing to ``agent``'s file (``None``: the daemon's), with ``bind`` bound.

        For an agent, ``agent`` is bound too. Callers bind ``run_id``, ``trace_id`` and
        ``seq`` as they learn them, here or with ``.bind()``. ``direct`` writes at once even
        where lines are handed over: for the event stream's observers, which write in order.
        """
        sink = self._sink(agent)
        if agent is not None:
            bind = {"agent": agent, **bind}
        proxy = structlog.wrap_logger(
            sink.direct if direct else sink.writer,
            processors=sink.processors,
            wrapper_class=_Wrapper,
            context_class=dict,
            cache_logger_on_first_use=False,
            **bind,
        )
        bound: FilteringBoundLogger = proxy.bind()
        return bound

    def close(self) -> None:
        """Flush and close every file; later events, from any logger, are dropped."""
        with self._lock:
            self._closed = True
            sinks = list(self._sinks.values())
        for sink in sinks:
            if sink.file is not None:
                sink.file.close()  # under the file's lock: no line is cut in half

    def __enter__(self) -> LogFiles:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.close()

    def _sink(self, agent: str | None) -> _Sink:
        path = log_path(self.directory, agent)
        with self._lock:
            sink = self._sinks.get(agent)
            if sink is not None:
                return sink
            file = None if self._closed else _RotatingFile(path, self._max_bytes, self._backups)
            writer: WrappedLogger
            direct: WrappedLogger
            if file is None or agent is None:
                writer = direct = structlog.BytesLogger(file)  # type: ignore[arg-type]
            else:
                writer, direct = _AgentFile(file, self, direct=False), _AgentFile(file, self, direct=True)
            sink = _Sink(writer, direct, file, self._processors(agent))
            if self._closed:
                return sink
            self._sinks[agent] = sink
            return sink

    def _processors(self, agent: str | None) -> list[Processor]:
        chain: list[Processor] = [
            self._drop_if_closed,
            structlog.processors.add_log_level,
            _Clock(),
            structlog.processors.format_exc_info,
            self.redaction,
            *self._extra,
            _json_ready,
        ]
        if agent is None and self._echo is not None:
            chain.append(_Echo(self._echo))
        chain.append(_SafeJSONRenderer() if agent is None else _RoutedRenderer())
        return chain

    def _drop_if_closed(self, logger: WrappedLogger, name: str, event_dict: EventDict) -> EventDict:
        if self._closed:
            raise structlog.DropEvent
        return event_dict


class _Clock:
    """UTC ISO 8601 with milliseconds and a ``Z``; the part up to the second is formatted
    once per second (structlog's TimeStamper gives microseconds or strftime, not ms)."""

    def __init__(self) -> None:
        self._second = -1
        self._prefix = ""

    def __call__(self, logger: WrappedLogger, name: str, event_dict: EventDict) -> EventDict:
        now = time.time()
        second = int(now)
        if second != self._second:  # two threads may both reformat the same second: harmless
            self._prefix = time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(second))
            self._second = second
        event_dict["timestamp"] = f"{self._prefix}.{int((now - second) * 1000):03d}Z"
        return event_dict


def _json_ready(logger: WrappedLogger, name: str, event_dict: EventDict) -> EventDict:
    """Reduce every value to what JSON holds, cut long strings, put the key fields first."""
    ready: EventDict = {key: None for key in _FIRST_KEYS if key in event_dict}  # fixes their order
    for key, value in event_dict.items():
        kind = type(value)
        if kind is str:
            plain = len(value) <= MAX_FIELD_CHARS
        elif kind is int:
            plain = value.bit_length() <= _JSON_INT_BITS
        else:
            plain = kind in _PLAIN
        ready[key] = value if plain else _ready(value, 0)
    return ready


_PLAIN = frozenset({bool, float, type(None)})  # written as they are (str and int are checked first)


def _ready(value: Any, depth: int) -> Any:
    if isinstance(value, str):
        return _cut(value)
    if isinstance(value, int) and value.bit_length() > _MAX_INT_BITS:
        return f"<int of {value.bit_length()} bits>"
    if isinstance(value, int) and not isinstance(value, bool) and value.bit_length() > _JSON_INT_BITS:
        return str(value)
    if value is None or isinstance(value, bool | int | float):
        return value
    if depth < _MAX_DEPTH:
        if isinstance(value, dict):
            return {
                key if isinstance(key, str) else _safe_repr(key): _ready(item, depth + 1) for key, item in value.items()
            }
        if isinstance(value, list | tuple):
            return [_ready(item, depth + 1) for item in value]
    return _safe_repr(value)


def _cut(text: str) -> str:
    if len(text) <= MAX_FIELD_CHARS:
        return text
    return f"{text[:MAX_FIELD_CHARS]}...[truncated {len(text) - MAX_FIELD_CHARS} chars]"


def _safe_repr(value: Any) -> str:
    try:
        return _cut(repr(value))
    except Exception:  # a broken __repr__, or an int too long to print
        return f"<unrepresentable {type(value).__name__}>"


class _SafeJSONRenderer:
    """orjson rendering that falls back to repr for anything the encoder still refuses."""

    def __call__(self, logger: WrappedLogger, name: str, event_dict: EventDict) -> bytes:
        try:
            return orjson.dumps(event_dict, default=_safe_repr)
        except (TypeError, ValueError, RecursionError):  # orjson.JSONEncodeError is a TypeError
            flat = {key: value if isinstance(value, str) else _safe_repr(value) for key, value in event_dict.items()}
            return orjson.dumps(flat, option=orjson.OPT_NON_STR_KEYS)


ECHOED = "info"
"""The least level :class:`LogFiles`' ``echo`` shows: debug lines (a run queued, started)
stay in the file, so ``corral up``'s terminal shows one line per run and what needs a person."""


class _RoutedRenderer(_SafeJSONRenderer):
    """For an agent's file: the line, and the run and ``seq`` it is about (:class:`_AgentFile`)."""

    def __call__(self, logger: WrappedLogger, name: str, event_dict: EventDict) -> Any:
        run, seq = event_dict.get("run_id"), event_dict.get("seq")
        route = {
            "run": run if isinstance(run, str) else None,
            "seq": seq if isinstance(seq, int) and not isinstance(seq, bool) else None,
        }
        return (super().__call__(logger, name, event_dict),), route


class _Echo:
    """Copy each event at :data:`ECHOED` or above to a text stream in corral.observe.logview's human form."""

    def __init__(self, stream: TextIO) -> None:
        self._stream = stream
        self._lock = threading.Lock()
        try:
            self._color = stream.isatty() and not os.environ.get("NO_COLOR")
        except (AttributeError, ValueError, OSError):
            self._color = False

    def __call__(self, logger: WrappedLogger, name: str, event_dict: EventDict) -> EventDict:
        if not at_least(event_dict.get("level"), ECHOED):
            return event_dict
        try:
            line = render(event_dict, color=self._color) + "\n"
            with self._lock:
                self._stream.write(line)
                self._stream.flush()
        except Exception:  # noqa: BLE001 - a broken stderr must not stop the file log
            pass
        return event_dict
