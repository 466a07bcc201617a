"""The journal's decisions, step by step, on a real store."""

from __future__ import annotations

import contextlib
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from corral.run.journal import Journal
from corral.store import Records, Store, Writer


@pytest.fixture
def env(tmp_path: Path):
    store = Store.open(tmp_path / "store")
    writer = Writer(store)
    yield writer, Records(store.dbs)
    writer.close()
    store.close()


def test_a_tool_step_is_started_then_done_then_replayed(env) -> None:
    writer, records = env
    first = Journal(records, "run1", "agent", attempt=1)
    decision = writer.call(lambda t: first.tool(t, 1, "add", {"a": 1}, idempotent=False, can_reconcile=False))
    assert decision.action == "exec" and decision.entry["status"] == "started"
    key = decision.entry["key"]
    writer.call(lambda t: first.done(t, 1, True, 2, None))
    again = Journal(records, "run1", "agent", attempt=2)
    replay = writer.call(lambda t: again.tool(t, 1, "add", {"a": 1}, idempotent=False, can_reconcile=False))
    assert replay.action == "replay" and replay.entry["value"] == 2 and replay.entry["key"] == key
    assert replay.entry["attempt"] == 1 and replay.entry["executions"] == 1


def test_a_different_request_at_a_journaled_seq_is_non_determinism(env) -> None:
    writer, records = env
    journal = Journal(records, "run1", "agent", attempt=1)
    writer.call(lambda t: journal.tool(t, 1, "add", {"a": 1}, idempotent=True, can_reconcile=False))
    other_args = writer.call(lambda t: journal.tool(t, 1, "add", {"a": 9}, idempotent=True, can_reconcile=False))
    assert other_args.action == "mismatch" and "with different arguments" in other_args.message
    other_tool = writer.call(lambda t: journal.tool(t, 1, "sub", {"a": 1}, idempotent=True, can_reconcile=False))
    assert other_tool.action == "mismatch" and "journal has tool 'add'" in other_tool.message


def test_interrupted_idempotent_step_runs_again_with_the_same_key(env) -> None:
    writer, records = env
    first = Journal(records, "run1", "agent", attempt=1)
    started = writer.call(lambda t: first.tool(t, 1, "get", {}, idempotent=True, can_reconcile=False))
    second = Journal(records, "run1", "agent", attempt=2)
    again = writer.call(lambda t: second.tool(t, 1, "get", {}, idempotent=True, can_reconcile=False))
    assert again.action == "exec" and again.entry["key"] == started.entry["key"]
    assert again.entry["executions"] == 2 and again.entry["attempt"] == 2


def test_interrupted_non_idempotent_step_is_held_or_reconciled(env) -> None:
    writer, records = env
    writer.call(lambda t: Journal(records, "r", "a", 1).tool(t, 1, "pay", {}, idempotent=False, can_reconcile=False))
    held = writer.call(
        lambda t: Journal(records, "r", "a", 2).tool(t, 1, "pay", {}, idempotent=False, can_reconcile=False)
    )
    assert held.action == "hold" and "corral release r" in held.message
    assert writer.call(lambda t: records.get_step(t, "r", 1))["status"] == "unknown"

    writer.call(lambda t: Journal(records, "s", "a", 1).tool(t, 1, "pay", {}, idempotent=False, can_reconcile=True))
    journal = Journal(records, "s", "a", 2)
    asked = writer.call(lambda t: journal.tool(t, 1, "pay", {}, idempotent=False, can_reconcile=True))
    assert asked.action == "reconcile"
    happened = writer.call(lambda t: journal.reconciled(t, 1, "happened", "receipt"))
    assert happened.action == "result" and happened.entry["value"] == "receipt" and happened.entry["status"] == "done"


def test_reconcile_not_happened_runs_again_and_unknown_holds(env) -> None:
    writer, records = env
    writer.call(lambda t: Journal(records, "r", "a", 1).tool(t, 1, "pay", {}, idempotent=False, can_reconcile=True))
    journal = Journal(records, "r", "a", 2)
    writer.call(lambda t: journal.tool(t, 1, "pay", {}, idempotent=False, can_reconcile=True))
    assert writer.call(lambda t: journal.reconciled(t, 1, "not_happened", None)).action == "exec"
    writer.call(lambda t: Journal(records, "u", "a", 1).tool(t, 1, "pay", {}, idempotent=False, can_reconcile=True))
    unsure = Journal(records, "u", "a", 2)
    writer.call(lambda t: unsure.tool(t, 1, "pay", {}, idempotent=False, can_reconcile=True))
    assert writer.call(lambda t: unsure.reconciled(t, 1, "unknown", None)).action == "hold"


def test_state_changes_apply_once_even_when_replayed(env) -> None:
    writer, records = env
    journal = Journal(records, "r", "agent", 1)
    writer.call(lambda t: journal.state(t, 1, "set", {"key": "n", "value": 1}))
    writer.call(lambda t: records.set_state(t, "agent", "n", 5))  # a later run moved on
    replay = writer.call(lambda t: Journal(records, "r", "agent", 2).state(t, 1, "set", {"key": "n", "value": 1}))
    assert replay.action == "replay"
    assert writer.call(lambda t: records.agent_state(t, "agent")) == {"n": 5}


def test_refusals_are_journaled_and_replayed_the_same(env) -> None:
    writer, records = env
    refused = writer.call(lambda t: Journal(records, "r", "a", 1).refuse(t, 1, "tool", "nope", {}, "not granted"))
    assert refused.action == "result" and refused.entry["error"]["kind"] == "refused"
    again = writer.call(lambda t: Journal(records, "r", "a", 2).refuse(t, 1, "tool", "nope", {}, "not granted"))
    assert again.action == "replay"


def test_an_outcome_that_failed_to_journal_is_recorded_from_the_store_later(env) -> None:
    # done() takes the entry it started from memory; when writing the outcome fails, the
    # transaction is undone and a later done (the attempt's settle) reads the store instead.
    writer, records = env
    journal = Journal(records, "run1", "agent", attempt=1)
    writer.call(lambda t: journal.tool(t, 1, "add", {"a": 1}, idempotent=True, can_reconcile=False))
    with pytest.raises(TypeError):
        writer.call(lambda t: journal.done(t, 1, True, object(), None))
    with records_read(writer, records) as entry:
        assert entry["status"] == "started"
    finished = writer.call(lambda t: journal.done(t, 1, True, 2, None))
    assert finished is not None and finished["value"] == 2 and finished["executions"] == 1
    with records_read(writer, records) as entry:
        assert entry["status"] == "done" and entry["value"] == 2
    assert writer.call(lambda t: journal.done(t, 1, True, 3, None)) is None  # only once


@contextlib.contextmanager
def records_read(writer: Writer, records: Records) -> Iterator[dict[str, Any]]:
    with writer.store.read() as txn:
        entry = records.get_step(txn, "run1", 1)
        assert entry is not None
        yield entry
