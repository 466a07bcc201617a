"""The console's rendered rows (core/console/rows.py): a row comes from memory only when
everything it is rendered from is the same, and stays escaped."""

from __future__ import annotations

import json

from corral.console import reads
from corral.console.app import templates
from corral.console.rows import Rows

STEP = {"seq": 3, "attempt": 1, "kind": "tool", "name": "fetch", "status": "started", "args": {"url": "<b>x</b>"}}


def test_a_row_is_rendered_once_for_the_same_values_and_again_when_they_change() -> None:
    row = Rows(templates())
    started = row("step", "run-1", 1, STEP)
    assert row("step", "run-1", 1, dict(STEP)) is started  # from memory: equal values, another dict
    done = row("step", "run-1", 1, {**STEP, "status": "done", "value": 7})
    assert done is not started and "done" in done and "started" not in done
    replayed = row("step", "run-1", 2, {**STEP, "status": "done", "value": 7})
    assert "replayed" in replayed and "replayed" not in done  # the run's attempt is part of the row
    assert "&lt;b&gt;x&lt;/b&gt;" in started and "<b>x</b>" not in started


def test_values_msgpack_cannot_hold_are_rendered_each_time() -> None:
    row = Rows(templates())
    line = {"event": "big", "n": 2**70, "note": "<script>"}
    first = row("log_line", line)
    assert str(2**70) in first and "&lt;script&gt;" in first
    assert row("log_line", line) == first


def test_the_rows_asked_for_least_lately_go_first() -> None:
    row = Rows(templates(), kept=2)
    a = row("log_line", {"event": "a"})
    b = row("log_line", {"event": "b"})
    assert row("log_line", {"event": "a"}) is a  # a is now the latest asked for
    row("log_line", {"event": "c"})  # b goes
    assert row("log_line", {"event": "a"}) is a
    assert row("log_line", {"event": "b"}) is not b


def test_rows_are_kept_to_an_amount_of_memory_too() -> None:
    row = Rows(templates(), kept_bytes=64 * 450)
    big = row("log_line", {"event": "x" * 300})
    assert row("log_line", {"event": "x" * 300}) is big
    huge = row("log_line", {"event": "y" * 1000})  # over a 64th of what is kept: never kept
    assert row("log_line", {"event": "y" * 1000}) is not huge
    wide = row("log_line", {"event": "\U0001f600" * 300})  # 300 characters, 4 bytes each
    assert row("log_line", {"event": "\U0001f600" * 300}) is not wide
    for n in range(100):
        row("log_line", {"event": "z" * 250, "n": n})  # 100 rows of about 420 bytes
    assert row("log_line", {"event": "x" * 300}) is not big  # pushed out by memory, not count


def test_a_huge_value_is_shown_cut_with_what_is_left_said() -> None:
    row = Rows(templates())
    answer = {"text": "word " * 400_000}  # a model's 2 MB answer
    html = row("step", "run-1", 1, {**STEP, "status": "done", "kind": "model", "value": answer})
    assert len(html) < reads.SHOWN + 5_000
    whole = len(json.dumps(answer, indent=2))
    assert f"{whole - reads.SHOWN:,} more characters not shown here" in reads.shown(answer)
    assert "more characters not shown here" in html
    assert reads.shown("short") == "short" and reads.shown({"a": 1}) == '{"a": 1}'


def test_a_model_step_is_named_by_the_model_that_answered() -> None:
    row = Rows(templates())
    step = {**STEP, "kind": "model", "name": "", "model": "local", "failed_over": [{"model": "fake"}]}
    assert "<b>local (after fake)</b>" in row("step", "run-1", 1, step)
    assert "<b>default</b>" in row("step", "run-1", 1, {**STEP, "kind": "model", "name": ""})
