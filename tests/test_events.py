"""The durable event stream on a real store: an event exists exactly when its change was
committed, is delivered in order, and survives a process that died before delivering it."""

from __future__ import annotations

import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import pytest

from corral.observe.events import Event, EventStream
from corral.run.engine import change_state
from corral.states import EventKind, RunState
from corral.store import Records, Store, Writer


class Log:
    def __init__(self) -> None:
        self.errors: list[dict[str, Any]] = []

    def error(self, event: str, **fields: Any) -> None:
        self.errors.append({"event": event, **fields})


def open_home(path: Path) -> tuple[Store, Records, Writer]:
    store = Store.open(path)
    return store, Records(store.dbs), Writer(store)


def stream(store: Store, records: Records, writer: Writer, heard: list[Event], log: Log | None = None) -> EventStream:
    later = ThreadPoolExecutor(max_workers=1)
    events = EventStream(store, records, writer, lambda func, *args: later.submit(func, *args), log or Log())
    events.subscribe("test", heard.append)
    return events


def a_run(records: Records, writer: Writer, run_id: str = "01a0000000000000aaaa") -> dict[str, Any]:
    run = {"id": run_id, "agent": "a", "state": "queued", "created": 1.0, "attempt": 0}
    writer.call(lambda txn: records.put_run(txn, run))
    return run


def test_events_committed_before_a_crash_are_delivered_after_it_in_order(tmp_path: Path) -> None:
    store, records, writer = open_home(tmp_path / "store")
    run = a_run(records, writer)
    writer.call(lambda txn: change_state(records, txn, run, RunState.RUNNING))
    step = {"seq": 1, "kind": "state", "name": "set", "status": "done", "ok": True, "value": None}
    writer.call(lambda txn: records.put_step(txn, run["id"], step))
    writer.call(lambda txn: change_state(records, txn, run, RunState.SUCCEEDED))
    writer.close()
    store.close()  # nobody delivered them: the daemon died

    store, records, writer = open_home(tmp_path / "store")
    heard: list[Event] = []
    removed = stream(store, records, writer, heard).deliver(forget=True)
    assert removed is not None
    removed.result(5)
    assert [(e.kind, e.run["state"], e.step.get("seq")) for e in heard] == [
        (EventKind.RUN_CHANGED, "running", None),
        (EventKind.STEP_DONE, "succeeded", 1),
        (EventKind.RUN_CHANGED, "succeeded", None),
    ]
    assert heard[0].old is RunState.QUEUED and not heard[0].ended and heard[2].ended
    again: list[Event] = []
    assert stream(store, records, writer, again).deliver() is None and again == [], "delivered once"
    writer.close()
    store.close()


def test_a_change_that_was_undone_is_never_announced(tmp_path: Path) -> None:
    store, records, writer = open_home(tmp_path / "store")
    run = a_run(records, writer)

    def undone(txn: Any) -> None:
        change_state(records, txn, dict(run), RunState.RUNNING)
        raise RuntimeError("the job failed after the change")

    with pytest.raises(RuntimeError):
        writer.call(undone)
    heard: list[Event] = []
    assert stream(store, records, writer, heard).deliver() is None and heard == []
    writer.close()
    store.close()


def test_a_write_has_its_delivery_queued_before_it_returns(tmp_path: Path) -> None:
    """Whoever waited for a write may queue work behind that write's events on the same
    background thread (a foreground run flushing its alerts): the delivery is queued first."""
    store, records, writer = open_home(tmp_path / "store")
    run = a_run(records, writer)
    queued: list[str] = []
    events = EventStream(store, records, writer, lambda func, *args: queued.append(func.__name__), Log())

    def committed_slowly() -> None:  # a busy machine: the writer thread is descheduled here
        time.sleep(0.3)
        events.committed()

    writer.after_commit = committed_slowly
    writer.call(lambda txn: change_state(records, txn, run, RunState.RUNNING))
    queued.append("after the write")
    assert queued == ["deliver", "after the write"]
    writer.close()
    store.close()


def test_an_observer_that_fails_does_not_starve_the_others(tmp_path: Path) -> None:
    store, records, writer = open_home(tmp_path / "store")
    run = a_run(records, writer)
    writer.call(lambda txn: change_state(records, txn, run, RunState.RUNNING))
    heard: list[Event] = []
    log = Log()
    events = stream(store, records, writer, [], log)

    def broken(event: Event) -> None:
        raise ValueError("observer bug")

    events.subscribe("broken", broken)
    events.subscribe("after", heard.append)
    removed = events.deliver(forget=True)
    assert removed is not None
    removed.result(5)
    assert len(heard) == 1 and log.errors[0]["observer"] == "broken"
    writer.close()
    store.close()


def test_every_edge_of_the_run_life_cycle_is_announced_exactly_once(tmp_path: Path) -> None:
    """Each transition the life cycle allows, made by the one function that changes state,
    yields exactly one event, and a run end (``corral_run_finished``) exactly when it enters
    a state that hook reports."""
    from corral.observe.events import ENDED
    from corral.states import _ALLOWED

    store, records, writer = open_home(tmp_path / "store")
    edges = [(old, new) for old, targets in _ALLOWED.items() for new in sorted(targets)]
    for number, (old, new) in enumerate(edges):
        run = a_run(records, writer, f"01a{number:017x}")
        run["state"] = old.value
        writer.call(lambda txn, run=run: records.put_run(txn, run))
        writer.call(lambda txn, run=run, new=new: change_state(records, txn, run, new))
    heard: list[Event] = []
    removed = stream(store, records, writer, heard).deliver(forget=True)
    assert removed is not None
    removed.result(5)
    assert [(e.old, RunState(e.run["state"])) for e in heard] == edges, "one event per change, in order"
    assert [e.ended for e in heard] == [new in ENDED for _, new in edges]
    assert {new for _, new in edges if new in ENDED} == set(ENDED), "every state the hook reports is reachable"
    writer.close()
    store.close()


def test_only_the_one_function_changes_a_runs_state() -> None:
    """No code assigns a run's state but ``change_state`` (which posts the event): a path
    that set it by hand would change a run without anyone hearing of it."""
    import re

    root = Path(__file__).resolve().parent.parent
    assignments = re.compile(r"""\brun\w*\[["']state["']\]\s*=(?!=)|\brun\w*\.update\(.*\bstate=""")
    found = [
        f"{path.relative_to(root)}:{number}"
        for folder in ("core", "sandbox", "plugins")
        for path in (root / folder).rglob("*.py")
        for number, line in enumerate(path.read_text().splitlines(), 1)
        if assignments.search(line)
    ]
    assert found == ["core/run/engine.py:" + str(_line_of_change_state(root))], found


def _line_of_change_state(root: Path) -> int:
    lines = (root / "core" / "run" / "engine.py").read_text().splitlines()
    start = next(i for i, line in enumerate(lines) if line.startswith("def change_state("))
    return next(i for i, line in enumerate(lines[start:], start + 1) if "state=new.value" in line)


def test_approvals_and_alerts_are_announced_by_the_store_writes_that_make_them(tmp_path: Path) -> None:
    """A request, a decision and an expiry each post their event in the commit that stores
    them; an alert stored for delivery posts one, a repeat held back does not."""
    from corral.alerts import Alert, Severity
    from corral.alerts.outbox import Outbox
    from corral.run.approvals import Approvals

    store, records, writer = open_home(tmp_path / "store")
    run = a_run(records, writer)
    approvals, outbox = Approvals(records), Outbox(records)
    ask = {"run": run, "tool": "pay", "args": {}, "fp": "f", "reason": "money", "guardrail": "g", "timeout": 60.0}
    first = writer.call(lambda txn: approvals.request(txn, seq=1, **ask))
    second = writer.call(lambda txn: approvals.request(txn, seq=2, now=0.0, **ask))
    writer.call(lambda txn: approvals.decide(txn, first["id"], True, "fine"))
    writer.call(lambda txn: approvals.expire(txn))
    alert = Alert(key="disk", severity=Severity.WARNING, title="disk full", run_id=run["id"])
    for _ in range(2):
        writer.call(lambda txn: outbox.accept(txn, alert, ("log",), repeat_after=3600.0))
    heard: list[Event] = []
    removed = stream(store, records, writer, heard).deliver(forget=True)
    assert removed is not None
    removed.result(5)
    assert [(e.kind, e.data["key"] if "key" in e.data else e.data["id"], e.data.get("state")) for e in heard] == [
        (EventKind.APPROVAL_REQUESTED, first["id"], "pending"),
        (EventKind.APPROVAL_REQUESTED, second["id"], "pending"),
        (EventKind.APPROVAL_DECIDED, first["id"], "approved"),
        (EventKind.APPROVAL_DECIDED, second["id"], "expired"),
        (EventKind.ALERT_RAISED, "disk", None),
    ]
    assert all(e.run["id"] == run["id"] for e in heard), "each carries the run it is about"
    writer.close()
    store.close()


def test_each_kind_of_event_is_posted_in_one_place() -> None:
    """An event kind posted from two places is two paths that can disagree (or one that
    forgets); a step's end and its replay both go through ``Records.post_step``."""
    import re

    root = Path(__file__).resolve().parent.parent
    posting = re.compile(r"\.post(?:_event)?\(\s*txn,\s*(?:\{\s*\"kind\":\s*)?EventKind\.(\w+)", re.S)
    sites: dict[str, list[str]] = {}
    for path in sorted((root / "core").rglob("*.py")):
        for found in posting.finditer(path.read_text()):
            sites.setdefault(found.group(1), []).append(str(path.relative_to(root)))
    assert {kind: len(where) for kind, where in sites.items()} == {kind.name: 1 for kind in EventKind}, sites


def test_the_run_machinery_imports_none_of_its_observers() -> None:
    """core/run/ posts events; logs, alerts, metrics, telemetry and the daemon follow them.
    An import the other way (even for typing, or inside a function) is a cycle waiting."""
    import ast

    root = Path(__file__).resolve().parent.parent
    outside = ("corral.observe", "corral.alerts", "corral.daemon", "corral.cli")
    found = []
    for path in sorted((root / "core" / "run").rglob("*.py")):
        for node in ast.walk(ast.parse(path.read_text())):
            names = [node.module or ""] if isinstance(node, ast.ImportFrom) else []
            names += [alias.name for alias in node.names] if isinstance(node, ast.Import) else []
            found += [f"{path.name}: {name}" for name in names if name.startswith(outside)]
    assert found == [], found


def test_events_posted_after_the_leftovers_were_removed_are_still_delivered(tmp_path: Path) -> None:
    """A restarted daemon delivers what the last one left, removes it, and only then posts its
    first event: that event must not be numbered from 1 again, below what was delivered."""
    store, records, writer = open_home(tmp_path / "store")
    run = a_run(records, writer)
    writer.call(lambda txn: change_state(records, txn, run, RunState.RUNNING))
    for seq in (1, 2, 3):
        step = {"seq": seq, "kind": "state", "name": "set", "status": "done", "ok": True, "value": None}
        writer.call(lambda txn, step=step: records.put_step(txn, run["id"], step))
    writer.close()
    store.close()  # the daemon died before it delivered them

    store, records, writer = open_home(tmp_path / "store")
    heard: list[Event] = []
    events = stream(store, records, writer, heard)
    removed = events.deliver(forget=True)
    assert removed is not None
    removed.result(5)  # the leftovers are gone before this process posts anything
    writer.call(lambda txn: change_state(records, txn, run, RunState.SUCCEEDED))
    events.deliver()
    events.stop()  # no timer left to remove what was delivered after the test
    assert [(e.kind, e.run["state"]) for e in heard][-1] == (EventKind.RUN_CHANGED, "succeeded")
    assert len(heard) == 5
    writer.close()
    store.close()


def test_an_observer_that_exits_or_cannot_be_described_stops_nothing(tmp_path: Path) -> None:
    """sys.exit() in a plugin's hook, or an exception whose str() fails, is logged; every
    other observer hears every event, and delivery goes on."""

    class Unprintable(Exception):
        def __str__(self) -> str:
            raise RuntimeError("no")

    store, records, writer = open_home(tmp_path / "store")
    run = a_run(records, writer)
    writer.call(lambda txn: change_state(records, txn, run, RunState.RUNNING))
    writer.call(lambda txn: change_state(records, txn, run, RunState.SUCCEEDED))
    heard: list[Event] = []
    log = Log()
    events = stream(store, records, writer, [], log)

    def leaving(event: Event) -> None:
        raise SystemExit(3)

    def unprintable(event: Event) -> None:
        raise Unprintable

    events.subscribe("leaving", leaving)
    events.subscribe("unprintable", unprintable)
    events.subscribe("after", heard.append)
    events.deliver()
    assert len(heard) == 2
    assert [e["error"] for e in log.errors[:2]] == ["SystemExit: 3", "Unprintable: (its message could not be read)"]
    writer.close()
    store.close()
