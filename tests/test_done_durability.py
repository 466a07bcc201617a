"""When a tool's ``done`` becomes durable, and what happens when it cannot be journaled.

The runs drive the real engine against a child whose side of the wire is scripted frame
by frame (tests/scripted_child.py), so the timing that matters (``done`` alone, ``done``
glued to the next frame, EOF right after ``done``) is exact instead of left to the
scheduler. The only thing injected is a journal write that fails once, standing in for a
disk that is full at that moment; the attempt sees the same exception the writer
delivers for a failed commit.

Tests whose docstring says "Bug at <commit>" failed against that commit and pass since
the fixes that followed; the others pin down behaviour that was checked and found correct.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from corral.errors import StoreError
from corral.run.journal import Journal
from tests.scripted_child import DONE1, FINISH, HELLO, LOG, START, STEP1, STEP2, engine_for, run_once


@pytest.fixture
def fail_done_once(monkeypatch: pytest.MonkeyPatch) -> Callable[[Exception], list[int]]:
    """Make the next journal write of a tool's outcome fail once with ``error``."""

    def arm(error: Exception) -> list[int]:
        calls: list[int] = []
        real = Journal.done

        def done(self: Journal, txn: Any, seq: int, ok: bool, value: Any, err: Any) -> Any:
            calls.append(seq)
            if len(calls) == 1:
                raise error
            return real(self, txn, seq, ok, value, err)

        monkeypatch.setattr(Journal, "done", done)
        return calls

    return arm


# --------------------------------------------------------------------------- a done that cannot be journaled

DISK_FULL = StoreError("store write failed (mdb_put: No space left on device); simulated")
UNSTORABLE = ValueError("a value the journal cannot hold; simulated")

# done alone, then finish after a pause: the done goes out in the background flush
SEPARATE = [*START, ["send", DONE1], ["sleep", 0.5], ["send", FINISH], ["wait_close"]]
# done and finish read together: the done is left for _settle to write
TOGETHER = [*START, ["burst", [DONE1, FINISH]], ["wait_close"]]


@pytest.mark.parametrize(
    ("error", "script"),
    [
        pytest.param(DISK_FULL, SEPARATE, id="store-error-background-flush"),
        pytest.param(UNSTORABLE, SEPARATE, id="journal-error-background-flush"),
        pytest.param(UNSTORABLE, TOGETHER, id="journal-error-written-by-settle"),
        pytest.param(DISK_FULL, TOGETHER, id="store-error-written-by-settle"),
    ],
)
def test_a_run_never_succeeds_while_its_last_done_failed_to_journal(
    tmp_path: Path, fail_done_once: Any, error: Exception, script: list[Any]
) -> None:
    """Bug at 171d862: Attempt._settle awaited the background flush with asyncio.wait (which
    drops its exception) and swallowed _Stop from its own write, so after a failed outcome
    write the run was recorded succeeded with its last tool step still 'started'."""
    calls = fail_done_once(error)
    # a retried attempt (after a store error) finds step 1 'started' and runs it again
    with engine_for(tmp_path, [script]) as engine:
        final, steps, _ = run_once(engine)
    assert calls, "the done reached the journal"
    if final["state"] == "succeeded":
        assert steps[1]["status"] == "done", (
            f"run {final['state']} (attempt {final['attempt']}) but step 1 is {steps[1]['status']!r}: "
            "the tool's outcome was received and then lost"
        )
    else:
        assert final["state"] in ("failed", "interrupted"), final


def test_a_failed_background_flush_is_not_an_unretrieved_task_exception(tmp_path: Path, fail_done_once: Any) -> None:
    """Bug at 171d862: asyncio reported 'Task exception was never retrieved' for the flush."""
    fail_done_once(DISK_FULL)
    with engine_for(tmp_path, [SEPARATE]) as engine:
        _, _, reports = run_once(engine)
    assert not [r for r in reports if "never retrieved" in r], reports


def test_a_failed_background_flush_fails_the_next_step(tmp_path: Path, fail_done_once: Any) -> None:
    """Checked and correct: a step after a failed flush is not answered and the run is
    interrupted; the outcome the agent reported is journaled when the attempt ends (the
    disk had room again), so the retry replays it instead of running the tool twice."""
    fail_done_once(DISK_FULL)
    script = [*START, ["send", DONE1], ["sleep", 0.5], ["send", STEP2], ["recv"], ["send", FINISH], ["wait_close"]]
    replay = [["send", HELLO], ["recv", "welcome"], ["send", STEP1], ["recv", "result"]]
    retry = [*replay, ["send", STEP2], ["recv", "result"], ["send", FINISH], ["wait_close"]]
    with engine_for(tmp_path, [script, retry]) as engine:
        final, steps, _ = run_once(engine)
    assert final["state"] == "succeeded" and final["attempt"] == 2, final
    assert steps[1]["status"] == "done" and steps[1]["executions"] == 1
    assert steps[2]["status"] == "done"


def test_a_done_still_lingering_when_the_stream_ends_is_journaled(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Bug at f62b1dd: a done held for the next step (DONE_LINGER) was dropped when the child's
    stream ended before the linger passed: step 1 stayed 'started' and the retry ran it again."""
    monkeypatch.setattr("corral.run.steps.DONE_LINGER", 0.5)
    second = [["send", HELLO], ["recv", "welcome"], ["send", STEP1], ["recv", "result"], ["send", FINISH]]
    with engine_for(tmp_path, [[*START, ["send", DONE1], ["exit"]], [*second, ["wait_close"]]]) as engine:
        final, steps, _ = run_once(engine)
    assert final["state"] == "succeeded" and final["attempt"] == 2, final
    assert steps[1]["status"] == "done" and steps[1]["executions"] == 1


# --------------------------------------------------------------------------- when a done becomes durable


def _status_while_agent_thinks(tmp_path: Path, after_done: list[dict[str, Any]]) -> str:
    """Step 1's status 1.5 s after its done arrived, while the agent computes for 4 s."""
    script = [*START, ["burst", [DONE1, *after_done]], ["sleep", 4], ["send", FINISH], ["wait_close"]]
    with engine_for(tmp_path, [script]) as engine:

        async def main() -> str:
            run = await engine.create_run("a")
            task = asyncio.create_task(engine.execute(run["id"]))
            records = engine.records
            while (await engine.writer.run(lambda txn: records.get_step(txn, run["id"], 1))) is None:
                await asyncio.sleep(0.02)  # exec is sent right after 'started' commits; done follows at once
            await asyncio.sleep(1.5)
            status = (await engine.writer.run(lambda txn: records.get_step(txn, run["id"], 1)))["status"]
            final = await task
            assert final["state"] == "succeeded", final
            return str(status)

        return asyncio.run(main())


def test_a_done_alone_is_durable_while_the_agent_thinks(tmp_path: Path) -> None:
    """Checked and correct: nothing buffered behind the done, so it is flushed at once."""
    assert _status_while_agent_thinks(tmp_path, []) == "done"


def test_a_done_followed_by_a_log_is_durable_while_the_agent_thinks(tmp_path: Path) -> None:
    """Bug at 171d862: _on_done skipped the flush whenever FrameReader.has_frame() was true, but
    a buffered 'log' is followed by no write: the done waited, not durable, for as long as the
    agent thought (a kill -9 of the daemon in that window lost it)."""
    assert _status_while_agent_thinks(tmp_path, [LOG]) == "done"


@pytest.mark.parametrize("together", [False, True], ids=["done-then-step", "done-and-step-in-one-read"])
def test_done_is_durable_before_the_next_step_is_answered(tmp_path: Path, together: bool) -> None:
    """Checked and correct: the child itself reads the store when step 2's result arrives."""
    probe = tmp_path / "probe.txt"
    store = str(tmp_path / "home" / "store")
    send = [["burst", [DONE1, STEP2]]] if together else [["send", DONE1], ["sleep", 0.3], ["send", STEP2]]
    script = [*START, *send, ["recv", "result"], ["probe", store, 1, str(probe)], ["send", FINISH], ["wait_close"]]
    with engine_for(tmp_path, [script]) as engine:
        final, steps, reports = run_once(engine)
    assert final["state"] == "succeeded", final
    assert probe.read_text() == "done"
    assert steps[1]["status"] == "done" and steps[2]["status"] == "done" and not reports


@pytest.mark.parametrize("together", [False, True], ids=["done-then-finish", "done-and-finish-in-one-read"])
def test_the_last_done_is_durable_before_the_run_succeeds(tmp_path: Path, together: bool) -> None:
    send = [["burst", [DONE1, FINISH]]] if together else [["send", DONE1], ["sleep", 0.3], ["send", FINISH]]
    with engine_for(tmp_path, [[*START, *send, ["wait_close"]]]) as engine:
        final, steps, reports = run_once(engine)
    assert final["state"] == "succeeded" and final["steps"] == 1
    assert steps[1]["status"] == "done" and steps[1]["value"] == {"a": 1, "b": 1} and not reports


@pytest.mark.parametrize("together", [False, True], ids=["done-then-exit", "done-and-eof-together"])
def test_a_child_dying_right_after_done_keeps_the_done(tmp_path: Path, together: bool) -> None:
    """Checked and correct: EOF after done is a crash, the done is settled before the run is
    interrupted, and the resumed attempt gets the result from the journal (tool not re-run)."""
    first = [*START, ["send", DONE1], *([] if together else [["sleep", 0.2]]), ["exit"]]
    second = [
        ["send", HELLO],
        ["recv", "welcome"],
        ["send", STEP1],
        ["recv", "result"],
        ["send", FINISH],
        ["wait_close"],
    ]
    with engine_for(tmp_path, [first, second]) as engine:
        final, steps, reports = run_once(engine)
    assert final["state"] == "succeeded" and final["attempt"] == 2, final
    assert steps[1]["status"] == "done" and steps[1]["executions"] == 1 and steps[1]["attempt"] == 1
    assert not reports
