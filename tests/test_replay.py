"""The replay's rules on their own: what counts as the same path, for each way a run ended."""

from __future__ import annotations

from typing import Any

from corral.run.outcome import Outcome, failure
from corral.run.replay import Judge, ReplayReport, verdict
from corral.states import RunState
from corral.wire import fingerprint


def _entry(seq: int, name: str, args: dict[str, Any], status: str = "done") -> dict[str, Any]:
    return {
        "seq": seq,
        "kind": "tool",
        "name": name,
        "args": args,
        "fp": fingerprint("tool", name, args),
        "status": status,
        "ok": True,
        "value": seq,
    }


def _judged(run: dict[str, Any], asks: list[dict[str, Any]], journal: dict[int, dict[str, Any]]) -> ReplayReport:
    report = ReplayReport(run["id"], "a", 0, len(journal))
    judge = Judge(run, report, lambda value: value)
    for seq, args in enumerate(asks, 1):
        reply = judge.answer(seq, "tool", "t", args, journal.get(seq))
        if reply["t"] == "abort":
            break
    return report


def test_asking_past_the_journal_diverges_only_from_a_run_its_code_ended() -> None:
    journal = {1: _entry(1, "t", {"n": 1})}
    finished = {"id": "r", "state": "succeeded", "result": 1}
    report = _judged(finished, [{"n": 1}, {"n": 2}], journal)
    assert report.divergence is not None and report.divergence.seq == 2
    assert not verdict(report, finished, Outcome(RunState.FAILED, failure("nondeterminism", "x"))).same
    interrupted = {"id": "r", "state": "interrupted", "error": failure("crash", "killed")}
    report = _judged(interrupted, [{"n": 1}, {"n": 2}], journal)
    assert report.divergence is None and report.reached_end
    assert verdict(report, interrupted, Outcome(RunState.FAILED, failure("replayed", "x"))).same


def test_a_step_that_never_finished_is_where_the_replay_stops_with_the_run() -> None:
    journal = {1: _entry(1, "t", {"n": 1}), 2: _entry(2, "t", {"n": 2}, status="awaiting_approval")}
    held = {"id": "r", "state": "on_hold"}
    report = _judged(held, [{"n": 1}, {"n": 2}], journal)
    assert report.steps == 1 and report.reached_end and "never finished (awaiting_approval)" in report.ended
    assert verdict(report, held, Outcome(RunState.FAILED, failure("replayed", "x"))).same


def test_ending_early_returning_otherwise_or_failing_otherwise_is_not_the_same_path() -> None:
    journal = {1: _entry(1, "t", {"n": 1}), 2: _entry(2, "t", {"n": 2})}
    run = {"id": "r", "state": "succeeded", "result": "x"}
    early = _judged(run, [{"n": 1}], journal)
    assert not verdict(early, run, Outcome(RunState.SUCCEEDED, result="x")).same
    assert "ended after 1 of the journal's 2 steps" in early.notes[0]
    other = _judged(run, [{"n": 1}, {"n": 2}], journal)
    assert not verdict(other, run, Outcome(RunState.SUCCEEDED, result="y")).same
    same = _judged(run, [{"n": 1}, {"n": 2}], journal)
    assert verdict(same, run, Outcome(RunState.SUCCEEDED, result="x")).same
    failed = {"id": "r", "state": "failed", "error": {"kind": "agent", "type": "KeyError", "message": "'k'"}}
    again = _judged(failed, [{"n": 1}, {"n": 2}], journal)
    raised = {"kind": "agent", "type": "KeyError", "message": "'k'"}
    assert verdict(again, failed, Outcome(RunState.FAILED, raised)).same
    otherwise = _judged(failed, [{"n": 1}, {"n": 2}], journal)
    assert not verdict(otherwise, failed, Outcome(RunState.FAILED, {**raised, "type": "ValueError"})).same


def test_a_divergence_in_long_arguments_shows_where_they_differ() -> None:
    prompt = "x" * 340
    journal = {1: {**_entry(1, "t", {"p": prompt + "a"})}}
    run = {"id": "r", "state": "succeeded", "result": 1}
    report = _judged(run, [{"p": prompt + "b"}], journal)
    assert report.divergence is not None
    assert report.divergence.journal.endswith('xa"}') and report.divergence.asked.endswith('xb"}')
    assert report.divergence.journal.startswith("tool 't' …x")
