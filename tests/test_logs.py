"""corral.observe.logs writes JSON-line files; corral.observe.logview reads, follows, filters and renders them."""

from __future__ import annotations

import io
import json
import logging
import random
import re
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import structlog

from corral.observe.logs import DAEMON_LOG, MAX_FIELD_CHARS, LogFiles, log_path
from corral.observe.logview import (
    UNREADABLE,
    Filter,
    follow,
    last_lines,
    log_files,
    printable,
    printable_json,
    read_events,
    render,
)
from corral.secrets import Redaction

ISO_MS_UTC = re.compile(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3}Z")
ANSI = re.compile(r"\x1b\[[0-9;]*m")
WAIT = 10.0  # upper bound for anything cross-thread; tests normally finish in milliseconds


def lines(path: Path) -> list[dict[str, Any]]:
    return [json.loads(line) for line in path.read_text().splitlines()]


@pytest.fixture
def logs(tmp_path: Path) -> Iterator[LogFiles]:
    with LogFiles(tmp_path / "logs") as files:
        yield files


# --- writing -------------------------------------------------------------------------


def test_agent_lines_are_json_with_required_keys(logs: LogFiles) -> None:
    logs.logger("alpha", run_id="r-1").info("run started", attempt=2)
    logs.close()

    [line] = lines(logs.directory / "alpha.log")
    assert ISO_MS_UTC.fullmatch(line["timestamp"])
    assert line["level"] == "info"
    assert line["event"] == "run started"
    assert line["agent"] == "alpha"
    assert line["run_id"] == "r-1"
    assert line["attempt"] == 2
    assert list(line)[:3] == ["timestamp", "level", "event"]


def test_daemon_log_has_no_agent_and_its_own_file(logs: LogFiles) -> None:
    logs.logger().warning("store opened", path="/x")
    logs.close()

    assert log_path(logs.directory, None) == logs.directory / DAEMON_LOG
    [line] = lines(logs.directory / DAEMON_LOG)
    assert line["event"] == "store opened"
    assert line["level"] == "warning"
    assert "agent" not in line
    assert not (logs.directory / "alpha.log").exists()


def test_binding_carries_into_every_line(logs: LogFiles) -> None:
    run = logs.logger("alpha", run_id="r-1").bind(trace_id="t-9")
    run.info("step", seq=1)
    run.bind(seq=2).debug("step")
    run.info("step", seq=3)
    logs.close()

    got = lines(logs.directory / "alpha.log")
    assert [(line["trace_id"], line["run_id"], line["seq"]) for line in got] == [
        ("t-9", "r-1", 1),
        ("t-9", "r-1", 2),
        ("t-9", "r-1", 3),
    ]
    assert [line["level"] for line in got] == ["info", "debug", "info"]


def test_exception_is_rendered_into_a_string_field(logs: LogFiles) -> None:
    log = logs.logger("alpha")
    tools: dict[str, int] = {}
    try:
        tools["missing"]
    except KeyError:
        log.exception("tool crashed")
    logs.close()

    [line] = lines(logs.directory / "alpha.log")
    assert line["level"] == "error"
    assert isinstance(line["exception"], str)
    assert line["exception"].startswith("Traceback (most recent call last):")
    assert "KeyError: 'missing'" in line["exception"]


def test_values_json_cannot_hold_are_written_as_repr(logs: LogFiles) -> None:
    class Opaque:
        def __repr__(self) -> str:
            return "<opaque thing>"

    class Broken:
        def __repr__(self) -> str:
            raise RuntimeError("no repr for you")

    cycle: list[Any] = []
    cycle.append(cycle)
    logs.logger("alpha").info(
        "odd values",
        opaque=Opaque(),
        broken=Broken(),
        tuple_keys={(1, 2): "v"},
        cycle=cycle,
        huge=10**5000,
        path=Path("/tmp/x"),
    )
    logs.close()

    [line] = lines(logs.directory / "alpha.log")
    assert line["opaque"] == "<opaque thing>"
    assert line["broken"] == "<unrepresentable Broken>"
    assert line["tuple_keys"] == {"(1, 2)": "v"}
    assert "[...]" in json.dumps(line["cycle"])
    assert line["huge"].startswith("<int of ")
    assert line["path"] == repr(Path("/tmp/x"))


def test_long_strings_are_cut_with_a_marker(logs: LogFiles) -> None:
    long = "x" * (MAX_FIELD_CHARS + 100)
    logs.logger("alpha").info(long, output=long, nested={"deep": [long]}, short="ok")
    logs.close()

    [line] = lines(logs.directory / "alpha.log")
    for value in (line["event"], line["output"], line["nested"]["deep"][0]):
        assert value == "x" * MAX_FIELD_CHARS + "...[truncated 100 chars]"
    assert line["short"] == "ok"


def test_extra_processors_run_before_rendering_and_see_the_exception(tmp_path: Path) -> None:
    redact = Redaction()  # a processor of its own, apart from the files' built-in one
    redact.add({"PW": "hunter2"})

    echo = io.StringIO()
    with LogFiles(tmp_path, echo=echo, processors=[redact]) as files:
        try:
            raise ValueError("password hunter2 rejected")
        except ValueError:
            files.logger().exception("login failed", token="hunter2")

    text = (tmp_path / DAEMON_LOG).read_text()
    assert "hunter2" not in text
    assert "hunter2" not in echo.getvalue()
    [line] = lines(tmp_path / DAEMON_LOG)
    assert line["token"] == "[redacted:PW]"
    assert "password [redacted:PW] rejected" in line["exception"]


def test_only_daemon_lines_are_echoed_in_human_form(tmp_path: Path) -> None:
    echo = io.StringIO()
    with LogFiles(tmp_path, echo=echo) as files:
        files.logger().info("daemon ready", agents=2)
        files.logger("alpha").info("agent chatter")

    [echoed] = echo.getvalue().splitlines()
    assert re.fullmatch(r"\d\d:\d\d:\d\d\.\d{3} info     daemon ready agents=2", echoed)


def test_an_unusable_echo_stream_does_not_stop_the_file(tmp_path: Path) -> None:
    echo = io.StringIO()
    echo.close()
    with LogFiles(tmp_path, echo=echo) as files:
        files.logger().info("still written")
    assert lines(tmp_path / DAEMON_LOG)[0]["event"] == "still written"


@pytest.mark.parametrize("name", ["a/b", "..", ".", "", "a\\b", "nul\0", "corral"])
def test_names_that_escape_or_collide_are_refused(logs: LogFiles, name: str) -> None:
    with pytest.raises(ValueError, match="cannot be used as a log file name"):
        logs.logger(name)
    assert list(logs.directory.iterdir()) == []


def test_events_after_close_are_dropped_without_reopening(tmp_path: Path) -> None:
    echo = io.StringIO()
    files = LogFiles(tmp_path, echo=echo)
    early, daemon = files.logger("alpha"), files.logger()
    early.info("before")
    daemon.info("daemon before")
    files.close()
    early.info("after")
    daemon.info("daemon after")
    files.logger("alpha").info("after, new logger")
    files.logger("beta").info("never opened")

    assert [line["event"] for line in lines(tmp_path / "alpha.log")] == ["before"]
    assert [line["event"] for line in lines(tmp_path / DAEMON_LOG)] == ["daemon before"]
    assert "daemon after" not in echo.getvalue()
    assert not (tmp_path / "beta.log").exists()


def test_two_instances_in_one_process_do_not_cross_write(tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.DEBUG)
    registered = set(logging.root.manager.loggerDict)
    with LogFiles(tmp_path / "one") as one, LogFiles(tmp_path / "two") as two:
        one.logger("alpha").info("from one")
        two.logger("alpha").info("from two")
        one.logger().info("daemon one")
        two.logger().info("daemon two")

    assert [e["event"] for e in lines(tmp_path / "one" / "alpha.log")] == ["from one"]
    assert [e["event"] for e in lines(tmp_path / "two" / "alpha.log")] == ["from two"]
    assert [e["event"] for e in lines(tmp_path / "one" / DAEMON_LOG)] == ["daemon one"]
    assert [e["event"] for e in lines(tmp_path / "two" / DAEMON_LOG)] == ["daemon two"]
    assert caplog.records == []  # nothing propagated to the root logger
    assert set(logging.root.manager.loggerDict) == registered
    assert structlog.is_configured() is False


def test_threads_writing_through_rotation_lose_no_line(tmp_path: Path) -> None:
    threads, each = 8, 150
    with LogFiles(tmp_path, max_bytes=4_000, backups=1_000) as files:

        def write(worker: int) -> None:
            log = files.logger("alpha", worker=worker)
            for seq in range(each):
                log.info("tick", seq=seq)

        pool = [threading.Thread(target=write, args=(n,)) for n in range(threads)]
        for thread in pool:
            thread.start()
        for thread in pool:
            thread.join(WAIT)

    events = list(read_events(tmp_path / "alpha.log"))
    assert all(e["event"] == "tick" for e in events)
    assert len(events) == threads * each
    for worker in range(threads):
        assert [e["seq"] for e in events if e["worker"] == worker] == list(range(each))


# --- rotation and reading back -------------------------------------------------------


def test_rotation_at_max_bytes_and_read_events_spans_backups_in_order(tmp_path: Path) -> None:
    max_bytes = 2_000
    with LogFiles(tmp_path, max_bytes=max_bytes, backups=3) as files:
        log = files.logger("alpha")
        for seq in range(200):
            log.info("tick", seq=seq)

    path = tmp_path / "alpha.log"
    assert log_files(path) == [tmp_path / f"alpha.log.{n}" for n in (3, 2, 1)] + [path]
    assert not (tmp_path / "alpha.log.4").exists()
    for file in log_files(path):
        assert 0 < file.stat().st_size <= max_bytes

    seqs = [e["seq"] for e in read_events(path)]
    assert seqs == list(range(seqs[0], 200))  # contiguous, oldest backup first
    assert seqs[0] > 0  # the oldest lines were rotated out

    in_current = len(lines(path))
    spanning = [e["seq"] for e in read_events(path, last=in_current + 5)]
    assert spanning == list(range(200 - in_current - 5, 200))
    assert [e["seq"] for e in read_events(path, last=3)] == [197, 198, 199]
    assert list(read_events(path, last=0)) == []
    assert [e["seq"] for e in read_events(path, last=10_000)] == seqs


@pytest.mark.parametrize("seed", range(6))
def test_the_last_lines_read_backwards_are_the_full_reads_last(tmp_path: Path, seed: int) -> None:
    """``last=N`` reads from the end (the console's run page asks every second); what it
    yields is what a full read's last N lines are, markers and their line numbers included,
    across backups, blank lines, lines longer than a read block and a half-written last line."""
    rng = random.Random(seed)

    def line(n: int) -> bytes:
        kind = rng.random()
        if kind < 0.1:
            return b"\n"
        if kind < 0.2:
            return b"not json " + str(n).encode() + b"\n"
        size = 200_000 if kind > 0.97 else rng.randrange(0, 300)
        return json.dumps({"event": "tick", "n": n, "run_id": f"run-{n % 3}", "pad": "x" * size}).encode() + b"\n"

    path = tmp_path / "alpha.log"
    counter = iter(range(10**6))
    for name in ("alpha.log.2", "alpha.log.1", "alpha.log"):
        body = b"".join(line(next(counter)) for _ in range(rng.randrange(0, 400)))
        if name == "alpha.log" and seed % 2:
            body += b'{"event": "half-writ'
        (tmp_path / name).write_bytes(body)

    everything = list(read_events(path))
    for last in (0, 1, 2, 7, 50, 399, 401, 900, 5000):
        assert list(read_events(path, last=last)) == (everything[-last:] if last else [])
    wanted = [e for e in everything if e.get("run_id") == "run-1"]
    assert [line.parsed() for line in last_lines(path, 10**6, having=b'"run-1"')] == wanted
    every = last_lines(path, 10**6)
    for most in (0, 1, 5_000, 70_000, 300_000):
        bounded = last_lines(path, 10**6, most=most)
        assert bounded == every[len(every) - len(bounded) :]
        assert sum(len(line.raw) for line in bounded) <= most


def test_reading_back_costs_a_files_size_whatever_its_lines(tmp_path: Path) -> None:
    """Blank lines and unreadable ones cost the reader a pass, not a pass each: 200,000 blank
    lines before 3 events, and 2,000 unreadable lines whose markers each name their line."""
    path = tmp_path / "alpha.log"
    path.write_bytes(b'{"event": "first"}\n' + b"\n" * 200_000 + b"".join(b'{"n": %d}\n' % n for n in range(3)))
    assert [e.get("n") for e in read_events(path, last=4)] == [None, 0, 1, 2]
    path.write_bytes(b"".join(b"junk %d\n" % n for n in range(2_000)))
    markers = list(read_events(path, last=2_000))
    assert [m["lineno"] for m in markers] == list(range(1, 2_001))
    assert markers[-1]["line"] == "junk 1999"


def test_read_events_on_a_missing_log_yields_nothing(tmp_path: Path) -> None:
    assert list(read_events(tmp_path / "nope" / "alpha.log")) == []
    with pytest.raises(ValueError):
        list(read_events(tmp_path / "alpha.log", last=-1))


def test_malformed_lines_become_markers(tmp_path: Path) -> None:
    path = tmp_path / "alpha.log"
    (tmp_path / "alpha.log.1").write_bytes(b'{"event": "old"}\nnot json at all\n')
    path.write_bytes(
        b'{"event": "first"}\n\n[1, 2, 3]\n{"event": "bad \xff bytes"}\n{"event": "last"}\n{"event": "half-writ'
    )

    events = list(read_events(path))
    assert [e["event"] for e in events] == [
        "old",
        UNREADABLE,
        "first",
        UNREADABLE,
        "bad \ufffd bytes",
        "last",
    ]
    marker = events[1]
    assert marker["file"] == str(tmp_path / "alpha.log.1")
    assert marker["lineno"] == 2
    assert marker["line"] == "not json at all"
    assert events[3]["lineno"] == 3
    assert [e["event"] for e in read_events(path, last=2)] == ["bad \ufffd bytes", "last"]
    path.write_bytes(b"[" * 100_000 + b"]" * 100_000 + b"\n" + b'{"event": "after"}\n')  # past json's recursion
    assert [e["event"] for e in read_events(path, last=2)] == [UNREADABLE, "after"]
    assert [e["event"] for e in read_events(path)][-2:] == [UNREADABLE, "after"]


# --- following -----------------------------------------------------------------------


class Follower:
    """Runs follow() on a thread; `ready` is set once follow has taken its first look."""

    def __init__(self, path: Path) -> None:
        self.events: list[dict[str, Any]] = []
        self.ready = threading.Event()
        self.done = threading.Event()
        self._changed = threading.Condition()
        self._deadline = time.monotonic() + WAIT
        self._thread = threading.Thread(target=self._run, args=(path,), daemon=True)

    def __enter__(self) -> Follower:
        self._thread.start()
        assert self.ready.wait(WAIT), "follow() never polled"
        return self

    def __exit__(self, *exc: object) -> None:
        self.done.set()
        self._thread.join(WAIT)
        assert not self._thread.is_alive(), "follow() ignored stop()"

    def _stop(self) -> bool:
        self.ready.set()
        return self.done.is_set() or time.monotonic() > self._deadline

    def _run(self, path: Path) -> None:
        for event in follow(path, poll=0.005, stop=self._stop):
            with self._changed:
                self.events.append(event)
                self._changed.notify_all()

    def wait_for(self, count: int) -> list[dict[str, Any]]:
        with self._changed:
            self._changed.wait_for(lambda: len(self.events) >= count, timeout=WAIT)
            return list(self.events)


def test_follow_yields_appended_lines_not_earlier_ones(tmp_path: Path) -> None:
    path = tmp_path / "alpha.log"
    path.write_text('{"event": "before"}\n{"event": "half')
    with Follower(path) as follower:
        with path.open("a") as file:
            file.write('-written"}\n{"event": "new", "seq": 1}\n')
            file.flush()
            file.write('{"event": "new", "seq": 2}\n{"event": "not yet')
            file.flush()
            got = follower.wait_for(2)
            file.write('"}\n')
        got = follower.wait_for(3)
    assert [(e["event"], e.get("seq")) for e in got] == [("new", 1), ("new", 2), ("not yet", None)]


def test_follow_waits_for_a_file_that_does_not_exist_yet(tmp_path: Path) -> None:
    with Follower(tmp_path / "logs" / "alpha.log") as follower:
        with LogFiles(tmp_path / "logs") as files:
            files.logger("alpha").info("hello")
            files.logger("alpha").info("again")
            got = follower.wait_for(2)
    assert [e["event"] for e in got] == ["hello", "again"]


def test_follow_survives_rotation(tmp_path: Path) -> None:
    count = 60
    with LogFiles(tmp_path, max_bytes=600, backups=2) as files:
        log = files.logger("alpha")
        log.info("already there")
        with Follower(tmp_path / "alpha.log") as follower:

            def write() -> None:
                # In step with the reader: tail -F cannot see a file that rotates
                # twice between two polls, and that is not what this test is about.
                for seq in range(count):
                    log.info("tick", seq=seq)
                    follower.wait_for(seq + 1)

            writer = threading.Thread(target=write)
            writer.start()
            writer.join(WAIT)
            got = follower.wait_for(count)

    assert (tmp_path / "alpha.log.2").exists(), "the writer should have rotated several times"
    assert [e.get("seq") for e in got] == list(range(count))


def test_follow_sees_a_burst_across_one_rotation(tmp_path: Path) -> None:
    with LogFiles(tmp_path, max_bytes=2_000, backups=5) as files:  # 31 lines of ~90 bytes
        log = files.logger("alpha")
        log.info("already there")
        with Follower(tmp_path / "alpha.log") as follower:
            writer = threading.Thread(target=lambda: [log.info("tick", seq=seq) for seq in range(30)])
            writer.start()
            writer.join(WAIT)
            got = follower.wait_for(30)

    assert (tmp_path / "alpha.log.1").exists() and not (tmp_path / "alpha.log.2").exists()
    assert [e["seq"] for e in got] == list(range(30))


def test_follow_restarts_after_truncation(tmp_path: Path) -> None:
    path = tmp_path / "alpha.log"
    path.write_text("".join(f'{{"event": "old", "seq": {n}}}\n' for n in range(20)))
    with Follower(path) as follower:
        with path.open("a") as file:
            file.write('{"event": "appended"}\n')
        follower.wait_for(1)
        path.write_text('{"event": "after truncate"}\n')
        got = follower.wait_for(2)
    assert [e["event"] for e in got] == ["appended", "after truncate"]


def test_follow_returns_when_stopped_even_if_nothing_is_written(tmp_path: Path) -> None:
    calls = 0

    def stop_on_third() -> bool:
        nonlocal calls
        calls += 1
        return calls >= 3

    started = time.monotonic()
    assert list(follow(tmp_path / "never.log", poll=0.01, stop=stop_on_third)) == []
    assert calls == 3
    assert time.monotonic() - started < WAIT


# --- filtering -----------------------------------------------------------------------


@pytest.mark.parametrize(
    ("flt", "expected"),
    [
        (Filter(), ["a", "b", "c", "d", "e"]),
        (Filter(min_level="warning"), ["c", "d"]),
        (Filter(min_level="WARN"), ["c", "d"]),
        (Filter(min_level="info"), ["b", "c", "d", "e"]),  # e has no level: counts as info
        (Filter(min_level="critical"), []),
        (Filter(run="0123abcd"), ["a", "c"]),
        (Filter(run="0123abcd-full-id"), ["c"]),
        (Filter(event="tool.*"), ["b", "c"]),
        (Filter(event="tool.called"), ["b"]),
        (Filter(event="tool"), []),
        (Filter(run="0123", min_level="error", event="tool.*"), ["c"]),
    ],
)
def test_filter(flt: Filter, expected: list[str]) -> None:
    events = [
        {"id": "a", "level": "debug", "event": "started", "run_id": "0123abcd"},
        {"id": "b", "level": "info", "event": "tool.called", "run_id": "ffff0000"},
        {"id": "c", "level": "error", "event": "tool.failed", "run_id": "0123abcd-full-id"},
        {"id": "d", "level": "warning", "event": UNREADABLE},
        {"id": "e", "event": "no level"},
    ]
    assert [ev["id"] for ev in events if flt.matches(ev)] == expected


def test_filter_rejects_an_unknown_level() -> None:
    with pytest.raises(ValueError, match="unknown log level 'loud'"):
        Filter(min_level="loud")
    assert Filter(min_level="Fatal").min_level == "critical"


# --- rendering -----------------------------------------------------------------------


@pytest.fixture
def utc_plus_two(monkeypatch: pytest.MonkeyPatch) -> Iterator[None]:
    """Local time two hours ahead of UTC, without needing tz data installed."""
    monkeypatch.setenv("TZ", "XYZ-2")
    time.tzset()
    yield
    monkeypatch.undo()
    time.tzset()


EVENT = {
    "timestamp": "2024-05-01T12:34:56.789Z",
    "level": "warning",
    "event": "tool failed",
    "agent": "alpha",
    "run_id": "0123456789abcdef",
    "tool": "search",
    "query": "two words",
    "empty": "",
    "n": 3,
    "ok": False,
    "args": {"k": [1, None]},
    "exception": 'Traceback (most recent call last):\n  File "x.py", line 1\nValueError: no\n',
}
PLAIN = (
    '14:34:56.789 warning  alpha 89abcdef tool failed tool=search query="two words" '
    'empty="" n=3 ok=false args={"k": [1, null]}\n'
    "    Traceback (most recent call last):\n"
    '      File "x.py", line 1\n'
    "    ValueError: no"
)


def test_render_plain(utc_plus_two: None) -> None:
    assert render(EVENT, color=False) == PLAIN


def test_render_color_is_the_plain_line_painted_by_level(utc_plus_two: None) -> None:
    painted = render(EVENT, color=True)
    assert ANSI.sub("", painted) == PLAIN
    assert "\x1b[33mwarning " in painted
    assert "\x1b[31mwarning" not in painted
    assert "\x1b[31m" in render({**EVENT, "level": "error"}, color=True)
    assert "\x1b" not in render({**EVENT, "level": "error"}, color=False)


def test_render_copes_with_sparse_and_hostile_events(utc_plus_two: None) -> None:
    assert render({"event": "x"}, color=False) == "??:??:??.??? ?        x"
    assert render({"timestamp": "yesterday", "level": "info", "event": "x"}, color=False) == ("yesterday info     x")
    assert render({"timestamp": "2024-05-01T12:00:00", "event": "naive"}, color=False).startswith("14:00:00.000")
    hostile = render({"level": "info", "event": "\x1b[2Jclear", "k": "a\x9bb"}, color=False)
    assert "\x1b" not in hostile and "\x9b" not in hostile
    assert "\\x1b[2Jclear" in hostile and "k=a\\x9bb" in hostile


@pytest.mark.parametrize(
    "code", [0x061C, 0x200E, 0x200F, *range(0x202A, 0x202F), *range(0x2066, 0x206A), 0x2028, 0x2029]
)
def test_bidirectional_controls_and_line_separators_are_shown_escaped(code: int, utc_plus_two: None) -> None:
    char = chr(code)
    line = render({"level": "info", "event": f"ev{char}", f"k{char}": f"a{char}b", "n": [f"x{char}"]}, color=True)

    assert char not in line
    escape = f"\\u{code:04x}"
    assert f"ev{escape}" in line and f"k{escape}" in line and f"a{escape}b" in line and f'["x{escape}"]' in line
    assert printable(f"plain é ☃ {char}\x1b\n") == f"plain é ☃ {escape}\\x1b\\x0a"


def test_json_for_a_terminal_escapes_the_same_characters_and_stays_the_same_json() -> None:
    value = {"k\u202e": ["a\u2066b\u200f", "\x9b[2J", "\u2028", "é ☃"]}

    text = printable_json(json.dumps(value, ensure_ascii=False))

    assert json.loads(text) == value
    assert all(
        ord(char) < 0x7F or (ord(char) >= 0xA0 and ord(char) not in (0x202E, 0x2066, 0x200F, 0x2028)) for char in text
    )
    assert "\\u202e" in text and "é ☃" in text


def test_logged_events_round_trip_through_read_and_render(tmp_path: Path, utc_plus_two: None) -> None:
    with LogFiles(tmp_path) as files:
        files.logger("alpha", run_id="abcdef0123").info("hello", who="you all")
    [event] = read_events(tmp_path / "alpha.log")
    rendered = render(event, color=False)
    assert re.fullmatch(r"\d\d:\d\d:\d\d\.\d{3} info     alpha cdef0123 hello who=\"you all\"", rendered)
