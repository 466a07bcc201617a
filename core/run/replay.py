"""Replay: run an agent's code again against a run's journal, and see whether it takes the
same path.

Every request the code makes (a tool call, a model call, a ``ctx.state`` change) is
answered from the run's journal, as a resume answers the steps it has already done; none
is executed, journaled or sent upstream, and no event is posted. The first request that the
journal does not have at its place is the *divergence*: the code asked for something else
there (changed code, or code that is not deterministic), or asked for more than a run that
ended by its own code (succeeded, or failed with the agent's exception) did. A replay that
reaches the end of the journal of a run that stopped for another reason (interrupted,
held, cancelled, a limit, a model that stayed down) took the same path as far as the run
went. The code runs in the agent's sandbox as it would, in a fresh empty workdir.

:class:`ReplayPath` is the step path a replay attempt serves instead of
:class:`corral.run.steps.Steps`; :class:`ReplayReport` says what happened.
"""

from __future__ import annotations

import json
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from corral.errors import ProtocolError
from corral.run.childwire import ChildWire, StepPath
from corral.run.journal import Answer
from corral.run.outcome import Outcome, RunEnded, failure
from corral.run.steps import answer
from corral.states import RunState
from corral.store import Records
from corral.wire import fingerprint

if TYPE_CHECKING:
    from collections.abc import Callable

    from corral.store.writer import Callback, Job


@dataclass(frozen=True)
class Divergence:
    """Where the code left the journal's path: at step ``seq`` the journal has ``journal``,
    the code asked for ``asked``."""

    seq: int
    journal: str
    asked: str

    def message(self) -> str:
        return f"replay diverged at step {self.seq}: the journal has {self.journal}, the code asked for {self.asked}"


@dataclass
class ReplayReport:
    """How a replay went. ``same`` is the verdict: no divergence, and the code ended as
    the run did (or, for a run that never finished, reached the end of its journal)."""

    run_id: str
    agent: str
    steps: int
    """Requests answered from the journal."""
    journaled: int
    """Steps in the run's journal."""
    same: bool = False
    divergence: Divergence | None = None
    reached_end: bool = False
    """The code followed the journal to where the run stopped (a run that did not end by its own code)."""
    ended: str = ""
    """What the code did at the end: ``finished ok``, ``failed: TYPE: message``, ``stopped
    at the end of the journal``, or why the replay could not go on."""
    original: str = ""
    """How the run itself ended."""
    notes: list[str] = field(default_factory=list)

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


SHOWN = 200
"""Characters of a request's arguments a report shows (around where two differ)."""


def describe(kind: str, name: str, args: dict[str, Any], around: int = 0) -> str:
    """A request in one line for a report: ``tool 'word_count' {"text": "one two"}``; long
    arguments are cut to :data:`SHOWN` characters around position ``around``."""
    shown = _json(args)
    if len(shown) > SHOWN:
        start = max(0, min(around - SHOWN // 2, len(shown) - SHOWN))
        shown = ("…" if start else "") + shown[start : start + SHOWN] + ("…" if start + SHOWN < len(shown) else "")
    what = f"{kind} {name!r}" if name or kind != "model" else "model (the agent's default)"
    return f"{what} {shown}"


def _differ_at(a: dict[str, Any], b: dict[str, Any]) -> int:
    """Where the two requests' arguments first differ, as :func:`describe` prints them."""
    left, right = _json(a), _json(b)
    return next((i for i, (x, y) in enumerate(zip(left, right, strict=False)) if x != y), min(len(left), len(right)))


def _json(args: dict[str, Any]) -> str:
    """Arguments as the operator wrote them: JSON, not Python's repr."""
    return json.dumps(args, ensure_ascii=False, default=str, sort_keys=True)


def _described(entry: dict[str, Any], around: int = 0) -> str:
    return describe(entry["kind"], entry["name"], entry.get("args") or {}, around)


def shown(entry: dict[str, Any] | None, fp: str) -> bool:
    """Whether the judge shows ``entry``'s request (so needs it whole): the code asked for
    another (a divergence) or it never finished. A step answered needs only its outcome,
    so a replay reads the journal as stored and expands no conversation it follows."""
    return entry is not None and (entry["fp"] != fp or entry["status"] != "done")


class Judge:
    """Answers each request of a replay from the journal, and keeps the report."""

    def __init__(self, run: dict[str, Any], report: ReplayReport, redact: Callable[[Any], Any]) -> None:
        self.report = report
        self.redact = redact
        self.ended_by_code = ended_by_code(run)
        """The run ended by its own code: a step beyond its journal is a divergence, not its end."""
        self.over = False

    def answer(
        self, seq: int, kind: str, name: str, args: dict[str, Any], entry: dict[str, Any] | None
    ) -> dict[str, Any]:
        """The message for step ``seq`` (``args`` already redacted), given what the journal
        has there: its recorded result, or ``abort`` where the replay ends."""
        asked = describe(kind, name, args)
        if entry is None and self.ended_by_code:
            return self._diverged(Divergence(seq, "no step there (the run ended before it)", asked))
        if entry is None:
            return self._end_of_journal(f"step {seq} is past the end of the journal")
        if entry["fp"] != fingerprint(kind, name, args):
            at = _differ_at(entry.get("args") or {}, args)
            return self._diverged(Divergence(seq, _described(entry, at), describe(kind, name, args, at)))
        if entry["status"] != "done":
            return self._end_of_journal(f"step {seq}, {_described(entry)}, never finished ({entry['status']})")
        self.report.steps += 1
        message = answer(seq, Answer("replay", entry))
        assert message is not None, "a done entry always has an answer"
        return message

    def _end_of_journal(self, where: str) -> dict[str, Any]:
        """The run stopped here (a step that never finished, or nothing more journaled), and
        so does the replay: the same path as far as the run went."""
        self.report.reached_end = True
        self.report.ended = f"stopped where the run did: {where}"
        return self._abort(self.report.ended)

    def _diverged(self, divergence: Divergence) -> dict[str, Any]:
        self.report.divergence = divergence
        return self._abort(divergence.message())

    def _abort(self, why: str) -> dict[str, Any]:
        self.over = True
        return {"t": "abort", "reason": why}

    def outcome(self) -> Outcome:
        """How the replay ends when the judge stopped it."""
        kind = "replayed" if self.report.reached_end else "nondeterminism"
        return Outcome(RunState.FAILED, failure(kind, self.report.ended or "replay stopped"))


class ReplayPath(StepPath):
    """The step-path frames of a replay, answered from the journal by read-only writer jobs."""

    HANDLES = frozenset({"step", "done", "reconciled"})

    def __init__(
        self,
        wire: ChildWire,
        records: Records,
        run: dict[str, Any],
        report: ReplayReport,
        redact: Callable[[Any], Any],
    ) -> None:
        self.wire = wire
        self.records = records
        self.run_id = run["id"]
        self.judge = Judge(run, report, redact)
        self.open = False  # set by the attempt once the hello is checked, before the welcome
        self.next_seq = 1
        self.unjournaled: list[Any] = []  # nothing is ever journaled; the attempt's end asks

    def take(self, message: dict[str, Any]) -> list[tuple[Job, Callback]]:
        if self.judge.over:
            return []
        if not self.open:
            raise ProtocolError(f"{message['t']!r} before the welcome")
        if message["t"] != "step":
            raise ProtocolError(f"{message['t']!r} in a replay, where no tool is ever told to run")
        seq, kind, name = message["seq"], message["kind"], message["name"]
        args = self.judge.redact(message["args"])
        if seq != self.next_seq:
            raise ProtocolError(f"step {seq} out of order; expected step {self.next_seq}")
        self.next_seq += 1
        records, run_id, fp = self.records, self.run_id, fingerprint(kind, name, args)

        def job(txn: Any) -> dict[str, Any] | None:
            entry = records.stored_step(txn, run_id, seq)
            return records.get_step(txn, run_id, seq) if shown(entry, fp) else entry

        def callback(ok: bool, entry: Any) -> None:
            if not ok:
                self.judge.report.ended = f"the journal could not be read at step {seq}: {entry}"
                self.judge.over = True
                self.wire.send({"t": "abort", "reason": self.judge.report.ended})
                self.wire.forward(RunEnded(Outcome(RunState.FAILED, failure("store", self.judge.report.ended))))
                return
            reply = self.judge.answer(seq, kind, name, args, entry)
            self.wire.send(reply)
            if self.judge.over:
                self.wire.forward(RunEnded(self.judge.outcome()))

        return [(job, callback)]

    def last_seq(self) -> int:
        return self.next_seq - 1

    def flush(self, *, now: float | None = None) -> list[tuple[Job, Callback]]:
        return []

    def deadline(self) -> float | None:
        return None

    def settle(self, txn: Any) -> None:
        """Nothing to write at the end of a replay."""

    def after_step(self, entry: dict[str, Any]) -> Outcome | None:
        return None


def ended_by_code(run: dict[str, Any]) -> bool:
    """Whether the run ended because its code did: it returned, or raised."""
    error = run.get("error") or {}
    return run["state"] == RunState.SUCCEEDED.value or (
        run["state"] == RunState.FAILED.value and error.get("kind") == "agent"
    )


def verdict(report: ReplayReport, run: dict[str, Any], outcome: Outcome) -> ReplayReport:
    """Fill in how the code ended against how the run did, and whether that is the same path."""
    error = run.get("error") or {}
    report.original = run["state"] + (f" ({error.get('kind')}: {error.get('message', '')})" if error else "")
    if report.divergence is not None:
        report.ended = report.divergence.message()
        return report
    if report.reached_end:
        report.same = True
        return report
    mine = outcome.error or {}
    if outcome.state is RunState.SUCCEEDED:
        report.ended = "finished ok"
    elif mine.get("kind") == "agent":
        report.ended = f"failed: {mine.get('type', 'Exception')}: {mine.get('message', '')}"
    else:  # the replay itself could not go on: a limit, a crash, the protocol
        report.ended = f"the replay stopped: {mine.get('message', outcome.state.value)}"
        return report
    if report.steps < report.journaled:
        report.notes.append(f"the code ended after {report.steps} of the journal's {report.journaled} steps")
        return report
    if not ended_by_code(run):
        report.notes.append(f"the run itself stopped ({report.original}); the code went on to its end")
        report.same = True
    elif outcome.state is RunState.SUCCEEDED:
        report.same = run["state"] == RunState.SUCCEEDED.value and outcome.result == run.get("result")
        if not report.same:
            report.notes.append("the run " + ("returned another value" if run["state"] == "succeeded" else "failed"))
    else:
        report.same = (mine.get("type"), mine.get("message")) == (error.get("type"), error.get("message"))
        if not report.same:
            report.notes.append("the run " + ("failed otherwise" if run["state"] == "failed" else "succeeded"))
    return report


@contextmanager
def workdir(home: Path, run_id: str) -> Iterator[Path]:
    """A fresh, empty workdir for one replay of ``run_id`` under ``home``'s ``replays``
    folder, removed afterwards."""
    folder = home / "replays"
    folder.mkdir(mode=0o700, exist_ok=True)
    with tempfile.TemporaryDirectory(prefix=f"{run_id}-", dir=folder) as made:
        yield Path(made)
