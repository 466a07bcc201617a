"""A model step is stored as the messages its conversation added since the step before
(core/store/conversations.py): the journal of a long conversation grows with its length,
not with its square. A step read alone is whole; a whole journal is read as stored, so no
reader holds more than is stored (tests/e2e/test_journal_readers.py)."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from corral.store import Records, Store, Writer, conversations, new_run_id, schema
from corral.store.conversations import CHECKPOINT, SHARED
from corral.store.schema import unpack
from corral.wire import fingerprint

Stores = tuple[Store, Writer, Records]


@pytest.fixture
def store(tmp_path: Path) -> Iterator[Stores]:
    s = Store.open(tmp_path / "store", map_mb=4)
    w = Writer(s)
    yield s, w, Records(s.dbs)
    w.close()
    s.close()


def _message(role: str, text: str) -> dict[str, Any]:
    return {"role": role, "text": text, "tool_calls": [], "tool_call_id": None, "is_error": False}


def _model(seq: int, messages: list[dict[str, Any]], status: str = "done") -> dict[str, Any]:
    args = {"messages": messages, "tools": [], "options": {"max_tokens": None}, "door": "openai"}
    entry = {"seq": seq, "kind": "model", "name": "fake", "args": args, "fp": fingerprint("model", "fake", args)}
    return (
        entry | {"status": status, "value": {"text": f"answer {seq}"}}
        if status == "done"
        else entry | {"status": status}
    )


def _put(w: Writer, records: Records, run_id: str, entry: dict[str, Any]) -> int:
    size: int = w.call(lambda txn: records.put_step(txn, run_id, entry))
    return size


def _conversation(w: Writer, records: Records, run_id: str, turns: int) -> list[dict[str, Any]]:
    """``turns`` model steps of one conversation, each written started then done as the
    journal does, with a tool step and a state step between some of them; returns every
    entry as written."""
    written, history, seq = [], [_message("system", "be brief")], 0
    for turn in range(turns):
        history = [*history, _message("user", f"question {turn} " + "x" * 2000)]
        seq += 1
        _put(w, records, run_id, _model(seq, history, "started"))
        written.append(_model(seq, history))
        _put(w, records, run_id, written[-1])
        history = [*history, _message("assistant", f"answer {turn}")]
        if turn % 3 == 1:
            seq += 1
            tool = {"seq": seq, "kind": "tool", "name": "word_count", "args": {"text": "a b"}, "status": "done"}
            written.append(tool | {"fp": fingerprint("tool", "word_count", tool["args"]), "value": 2})
            _put(w, records, run_id, written[-1])
    return written


def _stored(s: Store, run_id: str) -> list[dict[str, Any]]:
    prefix = schema.journal_prefix(run_id)
    with s.read() as txn:
        cursor = txn.cursor(db=s.dbs["journal"])
        cursor.set_range(prefix)
        return [unpack(bytes(value)) for key, value in cursor if bytes(key).startswith(prefix)]


def test_a_long_conversation_is_read_back_whole_and_stored_in_a_fraction(store: Stores) -> None:
    s, w, records = store
    run_id = new_run_id()
    written = _conversation(w, records, run_id, 100)
    with s.read() as txn:
        assert [records.get_step(txn, run_id, e["seq"]) for e in written] == written
        assert list(records.steps(txn, run_id)) == _stored(s, run_id)
        assert records.last_step(txn, run_id) == _stored(s, run_id)[-1]
        steps, size = records.journal_size(txn, run_id)
    stored = _stored(s, run_id)
    by_seq = {entry["seq"]: entry for entry in stored}
    assert [conversations.whole(by_seq, entry["seq"]) for entry in written] == written
    assert steps == len(written) == len(stored)
    whole = sum(len(schema.pack(entry)) for entry in written)
    assert size < whole / 10, f"{size} bytes stored for {whole} whole"
    shared = [entry[SHARED] for entry in stored if SHARED in entry]
    assert len(shared) > 90 and max(depth for _, _, depth in shared) == CHECKPOINT - 1
    assert all(entry["fp"] == whole_entry["fp"] for entry, whole_entry in zip(stored, written, strict=True))


def test_a_step_replaced_by_another_request_leaves_the_steps_built_on_it_whole(store: Stores) -> None:
    """A live divergence writes another request at a step; a later step of the old attempt,
    stored as what it added to the old one, is stored whole first. So is one whose base is
    deleted."""
    s, w, records = store
    run_id = new_run_id()
    written = _conversation(w, records, run_id, 6)
    models = [entry for entry in written if entry["kind"] == "model"]
    _put(w, records, run_id, _model(models[2]["seq"], [_message("user", "another question")]))
    w.call(lambda txn: records.delete_step(txn, run_id, models[4]["seq"]))
    with s.read() as txn:
        after = {entry["seq"]: records.get_step(txn, run_id, entry["seq"]) for entry in records.steps(txn, run_id)}
    assert after[models[3]["seq"]] == models[3], "built on the replaced step: its messages are still its own"
    assert after[models[5]["seq"]] == models[5], "built on the deleted step"
    assert after[models[2]["seq"]]["args"]["messages"] == [_message("user", "another question")]
    assert models[4]["seq"] not in after


def test_a_fork_copies_entries_as_stored(store: Stores) -> None:
    s, w, records = store
    parent, child = new_run_id(), new_run_id()
    written = _conversation(w, records, parent, 8)

    def copy(txn: Any) -> None:
        for entry in list(records.steps(txn, parent))[:-1]:
            records.copy_step(txn, child, {**entry, "forked_from": parent})

    w.call(copy)
    with s.read() as txn:
        copied = [records.get_step(txn, child, entry["seq"]) for entry in written[:-1]]
    assert copied == [{**entry, "forked_from": parent} for entry in written[:-1]]
    assert sum(SHARED in entry for entry in _stored(s, child)) == sum(e["kind"] == "model" for e in written[:-1]) - 1


@pytest.mark.parametrize(("before", "after"), [(1, True), (True, 1), (1, 1.0), (0.0, -0.0), (0, False)])
def test_a_history_equal_only_by_python_equality_is_stored_whole(store: Stores, before: Any, after: Any) -> None:
    """``True == 1 == 1.0`` in Python; a step whose earlier messages differ from the step
    before's only so (a tool call's arguments ``{"n": 1}`` then ``{"n": true}``) is stored as
    it was sent, not as sharing the earlier step's messages."""
    s, w, records = store
    run_id = new_run_id()
    call = {"id": "c1", "name": "count", "arguments": {"n": before}}
    first = [_message("user", "count"), {**_message("assistant", ""), "tool_calls": [call]}]
    sent = [first[0], {**first[1], "tool_calls": [{**call, "arguments": {"n": after}}]}, _message("user", "again")]
    _put(w, records, run_id, _model(1, first))
    _put(w, records, run_id, _model(2, sent))
    assert SHARED not in _stored(s, run_id)[1]
    with s.read() as txn:
        stored_args = records.get_step(txn, run_id, 2)["args"]["messages"][1]["tool_calls"][0]["arguments"]
    assert type(stored_args["n"]) is type(after) and repr(stored_args["n"]) == repr(after)
