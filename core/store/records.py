"""Reading and writing runs, journal entries and agent state inside a transaction.

Every function takes the transaction it works in, so the daemon's writer can group
many of them into one commit and the CLI can use the same code read-only.
"""

from __future__ import annotations

import itertools
import secrets
import threading
import time
from collections.abc import Iterable, Iterator
from typing import Any

import lmdb

from corral.states import FINISHED, EventKind, RunState
from corral.store import conversations, schema
from corral.store.schema import pack, unpack

BASE_SEARCH = 64
"""How many entries back a model step looks for the model step its conversation continues."""


def new_run_id(at_least_ms: int = 0) -> str:
    """Sortable by creation time (milliseconds, but not below ``at_least_ms``: the caller's
    newest id, so a wall clock set back keeps the order), unique by 32 random bits."""
    return f"{max(int(time.time() * 1000), at_least_ms):012x}{secrets.token_hex(4)}"


def _rows(rows: Iterable[Any]) -> Iterator[tuple[bytes, bytes]]:
    """Cursor rows as bytes (the transactions here never ask for buffers)."""
    for key, value in rows:
        yield bytes(key), bytes(value)


def _keys(keys: Iterable[Any]) -> Iterator[bytes]:
    for key in keys:
        yield bytes(key)


class Records:
    """Typed access to the named databases of one store."""

    def __init__(self, dbs: dict[str, Any]) -> None:
        self.dbs = dbs
        self._event_seq: int | None = None  # the last event's number; only the writer thread posts
        self._fresh: dict[int, dict[str, Any]] = {}  # event number -> its step's entry, until delivered
        self._fresh_lock = threading.Lock()
        self.events_posted = False
        """Set when an event is posted; the event stream clears it after each commit."""

    def get_run(self, txn: lmdb.Transaction, run_id: str) -> dict[str, Any] | None:
        raw = txn.get(schema.run_key(run_id), db=self.dbs["runs"])
        return unpack(raw) if raw else None

    def put_run(self, txn: lmdb.Transaction, run: dict[str, Any]) -> None:
        """Write ``run`` and keep the agent index and the unfinished set in step with it."""
        run["updated"] = time.time()
        key = schema.run_key(run["id"])
        txn.put(key, pack(run), db=self.dbs["runs"])
        txn.put(schema.agent_run_key(run["agent"], run["id"]), b"", db=self.dbs["agent_runs"])
        if RunState(run["state"]) in FINISHED:
            txn.delete(key, db=self.dbs["active"])
        else:
            txn.put(key, b"", db=self.dbs["active"])

    def active_runs(self, txn: lmdb.Transaction) -> list[dict[str, Any]]:
        """Every run not yet finished, oldest first."""
        runs = []
        for key, _ in _rows(txn.cursor(db=self.dbs["active"])):
            run = self.get_run(txn, key.decode())
            if run is not None:
                runs.append(run)
        return runs

    def list_runs(self, txn: lmdb.Transaction, agent: str | None = None, limit: int = 50) -> list[dict[str, Any]]:
        """Newest first, optionally for one agent."""
        return list(itertools.islice(self.runs_newest_first(txn, agent), limit))

    def runs_newest_first(
        self, txn: lmdb.Transaction, agent: str | None = None, before: str | None = None
    ) -> Iterator[dict[str, Any]]:
        """Every run (of ``agent``), newest first, read as the caller goes (a filter can stop
        early: run ids sort by creation time); with ``before``, only runs whose id sorts below
        it (the next page of a list)."""
        if agent is None:
            cursor = txn.cursor(db=self.dbs["runs"])
            if before is None or not cursor.set_range(schema.run_key(before)):
                positioned = cursor.last() and (before is None or bytes(cursor.key()) < schema.run_key(before))
            else:
                positioned = cursor.prev()
            while positioned:
                yield unpack(cursor.value())
                positioned = cursor.prev()
            return
        prefix = schema.state_prefix(agent)
        cursor = txn.cursor(db=self.dbs["agent_runs"])
        start = schema.agent_run_key(agent, before) if before is not None else prefix + b"\xff"
        positioned = cursor.prev() if cursor.set_range(start) else cursor.last()
        while positioned:
            key = bytes(cursor.key())
            if not key.startswith(prefix):
                break
            run = self.get_run(txn, key[len(prefix) :].decode())
            if run is not None:
                yield run
            positioned = cursor.prev()

    def run_ids(self, txn: lmdb.Transaction) -> Iterator[str]:
        """Every run id in the store, oldest first, without reading the runs."""
        for key in _keys(txn.cursor(db=self.dbs["runs"]).iternext(values=False)):
            yield key.decode()

    def agent_run_ids(self, txn: lmdb.Transaction, agent: str) -> list[str]:
        """Every run id of ``agent``, oldest first."""
        prefix = schema.state_prefix(agent)
        ids = []
        cursor = txn.cursor(db=self.dbs["agent_runs"])
        if cursor.set_range(prefix):
            for key in _keys(cursor.iternext(values=False)):
                if not key.startswith(prefix):
                    break
                ids.append(key[len(prefix) :].decode())
        return ids

    def get_step(self, txn: lmdb.Transaction, run_id: str, seq: int) -> dict[str, Any] | None:
        """Journal entry ``seq`` of ``run_id``, whole (:mod:`corral.store.conversations`)."""
        stored = self.stored_step(txn, run_id, seq)
        return self._whole(txn, run_id, stored) if stored is not None else None

    def stored_step(self, txn: lmdb.Transaction, run_id: str, seq: int) -> dict[str, Any] | None:
        """Journal entry ``seq`` as stored: a model step that continues an earlier one holds
        only its new messages and ``shared``. What a decision that needs no request (its
        fingerprint, status and outcome are all there) reads, so it expands nothing."""
        raw = txn.get(schema.journal_key(run_id, seq), db=self.dbs["journal"])
        return unpack(raw) if raw else None

    def _whole(self, txn: lmdb.Transaction, run_id: str, stored: dict[str, Any]) -> dict[str, Any]:
        shared = stored.get(conversations.SHARED)
        if shared is None:
            return stored
        base = self.get_step(txn, run_id, shared[0])  # at most CHECKPOINT deep
        return conversations.expand(stored, conversations.messages(base))

    def put_step(self, txn: lmdb.Transaction, run_id: str, entry: dict[str, Any]) -> int:
        """Write one journal entry (whole; it is stored as its conversation's new messages
        where it continues the previous model step's); returns the bytes stored, so the run
        can account for them. An entry written done is a step finished: its event is posted
        in the same commit, so no path that ends a step (a tool, a model call, a state
        change, a refusal, a release) can forget it, and none reports one that was undone."""
        data = self._store_step(txn, run_id, entry)
        if entry.get("status") == "done":
            self.post_step(txn, run_id, entry, replayed=False)
        return len(data)

    def copy_step(self, txn: lmdb.Transaction, run_id: str, stored: dict[str, Any]) -> None:
        """Write a journal entry taken, as stored (:meth:`steps`), from another run (a fork)
        whose entries before it are copied too, so its ``shared`` base is there: nothing is
        expanded. No step finished now, so no event."""
        txn.put(schema.journal_key(run_id, stored["seq"]), pack(stored), db=self.dbs["journal"])

    def _store_step(self, txn: lmdb.Transaction, run_id: str, entry: dict[str, Any]) -> bytes:
        key = schema.journal_key(run_id, entry["seq"])
        # only a model request replaces another at its step (a live divergence); a tool's or
        # state's entry is rewritten with the same request, so it is not read back here
        before = txn.get(key, db=self.dbs["journal"]) if entry.get("kind") == "model" else None
        if before is not None and unpack(before).get("fp") != entry.get("fp"):
            self._unshare(txn, run_id, entry["seq"])
        data = pack(self._shared(txn, run_id, entry))
        txn.put(key, data, db=self.dbs["journal"])
        return data

    def _shared(self, txn: lmdb.Transaction, run_id: str, entry: dict[str, Any]) -> dict[str, Any]:
        """``entry`` as stored: compacted against the run's previous model step, if it continues it."""
        if conversations.messages(entry) is None:
            return entry
        prefix = schema.journal_prefix(run_id)
        cursor = txn.cursor(db=self.dbs["journal"])
        # the entry just before this step's key: step back from the first key at or past it
        found = cursor.prev() if cursor.set_range(schema.journal_key(run_id, entry["seq"])) else cursor.last()
        for _ in range(BASE_SEARCH):
            if not found or not bytes(cursor.key()).startswith(prefix):
                return entry
            stored = unpack(bytes(cursor.value()))
            if stored.get("kind") == "model":
                base = conversations.messages(self._whole(txn, run_id, stored))
                return conversations.compact(entry, stored["seq"], base or [], conversations.depth(stored))
            found = cursor.prev()
        return entry

    def _unshare(self, txn: lmdb.Transaction, run_id: str, seq: int) -> None:
        """Store whole every later entry that takes messages from step ``seq``, before that
        step is replaced or deleted; entries built on those stay right, as they do not change."""
        prefix = schema.journal_prefix(run_id)
        cursor = txn.cursor(db=self.dbs["journal"])
        dependents = []
        if cursor.set_range(schema.journal_key(run_id, seq + 1)):
            for key, raw in _rows(cursor):
                if not key.startswith(prefix):
                    break
                stored = unpack(raw)
                if (stored.get(conversations.SHARED) or [None])[0] == seq:
                    dependents.append((key, self._whole(txn, run_id, stored)))
        for key, whole in dependents:
            txn.put(key, pack(whole), db=self.dbs["journal"])

    def post_step(self, txn: lmdb.Transaction, run_id: str, entry: dict[str, Any], *, replayed: bool) -> None:
        """The ``step_done`` event of ``entry``: written done, or (``replayed``) answered from
        the journal on resume."""
        self.post_event(
            txn,
            {"kind": EventKind.STEP_DONE.value, "run": run_id, "seq": entry["seq"], "replayed": replayed}
            | ({"at": time.time()} if replayed else {}),  # a replay's own moment (the entry's are the call's)
            # observers get entries whole: one replayed as stored is read whole when delivered
            entry if replayed and conversations.SHARED not in entry else None,
        )

    def post_event(self, txn: lmdb.Transaction, event: dict[str, Any], entry: dict[str, Any] | None = None) -> None:
        """Append ``event`` to the durable event stream (:mod:`corral.observe.events`), in ``txn``:
        it is delivered only if, and once, the change it reports is committed. ``entry``,
        the journal entry a step event is about, is handed to the delivery in memory so it
        need not read it back (:meth:`fresh_entry`)."""
        if self._event_seq is None:
            self._event_seq = self._last_event(txn)
        self._event_seq += 1
        txn.put(schema.event_key(self._event_seq), pack(event), db=self.dbs["events"])
        if entry is not None:
            with self._fresh_lock:
                self._fresh[self._event_seq] = entry
        self.events_posted = True

    def post(self, txn: lmdb.Transaction, kind: EventKind, data: dict[str, Any], run_id: str | None = None) -> None:
        """Post an event that carries its own ``data`` (an approval, an alert, a breaker, a
        budget), about ``run_id`` when it concerns a run."""
        self.post_event(txn, {"kind": kind.value, "run": run_id, "data": data})

    def _last_event(self, txn: lmdb.Transaction) -> int:
        cursor = txn.cursor(db=self.dbs["events"])
        return int(schema.EVENT_SEQ.unpack(bytes(cursor.key()))[0]) if cursor.last() else 0

    def fresh_entry(self, seq: int) -> dict[str, Any] | None:
        """The journal entry posted with event ``seq`` in this process (None: read the store),
        forgetting it and any older one left by a transaction that was undone."""
        with self._fresh_lock:
            entry = self._fresh.pop(seq, None)
            while self._fresh and next(iter(self._fresh)) < seq:
                self._fresh.pop(next(iter(self._fresh)))
        return entry

    def events_after(self, txn: lmdb.Transaction, seq: int, limit: int) -> list[tuple[int, dict[str, Any]]]:
        """Up to ``limit`` events with a sequence number above ``seq``, in order."""
        out: list[tuple[int, dict[str, Any]]] = []
        cursor = txn.cursor(db=self.dbs["events"])
        if cursor.set_range(schema.event_key(seq + 1)):
            for key, raw in _rows(cursor):
                out.append((schema.EVENT_SEQ.unpack(key)[0], unpack(raw)))
                if len(out) >= limit:
                    break
        return out

    def delete_events(self, txn: lmdb.Transaction, upto: int) -> None:
        """Forget every event up to sequence number ``upto`` (delivered)."""
        if self._event_seq is None:  # later events are numbered after these, not from 1 once they are gone
            self._event_seq = self._last_event(txn)
        cursor = txn.cursor(db=self.dbs["events"])
        while cursor.first() and schema.EVENT_SEQ.unpack(bytes(cursor.key()))[0] <= upto:
            cursor.delete()

    def delete_step(self, txn: lmdb.Transaction, run_id: str, seq: int) -> None:
        self._unshare(txn, run_id, seq)
        txn.delete(schema.journal_key(run_id, seq), db=self.dbs["journal"])

    def steps(self, txn: lmdb.Transaction, run_id: str) -> Iterator[dict[str, Any]]:
        """The run's journal entries in order, as stored: a model step that continues an
        earlier one holds only the messages it added and ``shared``
        (:func:`corral.store.conversations.continues` names its base). Expanded, 100 steps of a
        20,000-message conversation are 2 million messages from 4.7 MB stored, so a reader
        of a whole journal shows what is stored, and reads a step whole with :meth:`get_step`."""
        prefix = schema.journal_prefix(run_id)
        cursor = txn.cursor(db=self.dbs["journal"])
        if cursor.set_range(prefix):
            for key, raw in _rows(cursor):
                if not key.startswith(prefix):
                    break
                yield unpack(raw)

    def last_step(self, txn: lmdb.Transaction, run_id: str) -> dict[str, Any] | None:
        """The run's journal entry with the highest seq, as stored (:meth:`steps`), or None."""
        return next(self._steps_backwards(txn, run_id), None)

    def last_steps(self, txn: lmdb.Transaction, run_id: str, count: int) -> tuple[int, list[dict[str, Any]]]:
        """How many journal entries the run has, and its last ``count`` in order, as stored:
        a page refetched live shows a long run's last steps without unpacking the others."""
        prefix = schema.journal_prefix(run_id)
        cursor = txn.cursor(db=self.dbs["journal"])
        total = 0
        if cursor.set_range(prefix):
            for key in _keys(cursor.iternext(keys=True, values=False)):
                if not key.startswith(prefix):
                    break
                total += 1
        last = list(itertools.islice(self._steps_backwards(txn, run_id), min(count, total)))
        return total, last[::-1]

    def _steps_backwards(self, txn: lmdb.Transaction, run_id: str) -> Iterator[dict[str, Any]]:
        """The run's journal entries from the last one back, as stored: the walk starts one
        cursor step back from the first key past the run's prefix (``/`` + 1 is ``0``)."""
        prefix = schema.journal_prefix(run_id)
        cursor = txn.cursor(db=self.dbs["journal"])
        found = cursor.prev() if cursor.set_range(prefix[:-1] + b"0") else cursor.last()
        while found and bytes(cursor.key()).startswith(prefix):
            yield unpack(bytes(cursor.value()))
            found = cursor.prev()

    def journal_size(self, txn: lmdb.Transaction, run_id: str) -> tuple[int, int]:
        """(entries, bytes) of a run's journal, for retention by size."""
        prefix = schema.journal_prefix(run_id)
        count = size = 0
        cursor = txn.cursor(db=self.dbs["journal"])
        if cursor.set_range(prefix):
            for key, raw in _rows(cursor):
                if not key.startswith(prefix):
                    break
                count += 1
                size += len(key) + len(raw)
        return count, size

    def put_snapshot(self, txn: lmdb.Transaction, run_id: str, state: dict[str, Any]) -> None:
        txn.put(schema.run_key(run_id), pack(state), db=self.dbs["snapshots"])

    def get_snapshot(self, txn: lmdb.Transaction, run_id: str) -> dict[str, Any]:
        raw = txn.get(schema.run_key(run_id), db=self.dbs["snapshots"])
        return unpack(raw) if raw else {}

    def agent_state(self, txn: lmdb.Transaction, agent: str) -> dict[str, Any]:
        prefix = schema.state_prefix(agent)
        state: dict[str, Any] = {}
        cursor = txn.cursor(db=self.dbs["state"])
        if cursor.set_range(prefix):
            for key, raw in _rows(cursor):
                if not key.startswith(prefix):
                    break
                state[key[len(prefix) :].decode()] = unpack(raw)
        return state

    def state_bytes(self, txn: lmdb.Transaction, agent: str) -> int:
        """What ``agent``'s state holds, as ``limits.state_mb`` counts it (:func:`schema.state_entry_size`)."""
        raw = txn.get(schema.state_size_key(agent), db=self.dbs["meta"])
        return int(unpack(raw)) if raw else 0

    def state_after(self, txn: lmdb.Transaction, agent: str, key: str, packed: bytes | None) -> int:
        """The bytes ``agent``'s state would hold once ``key`` holds ``packed`` (None: once it is
        deleted), as ``limits.state_mb`` counts them; nothing is written."""
        old = txn.get(schema.state_key(agent, key), db=self.dbs["state"])
        name = key.encode()
        total = self.state_bytes(txn, agent) - (schema.state_entry_size(name, old) if old is not None else 0)
        return total if packed is None else total + schema.state_entry_size(name, packed)

    def set_state(self, txn: lmdb.Transaction, agent: str, key: str, value: Any) -> None:
        packed = pack(value)
        total = self.state_after(txn, agent, key, packed)
        txn.put(schema.state_key(agent, key), packed, db=self.dbs["state"])
        txn.put(schema.state_size_key(agent), pack(total), db=self.dbs["meta"])

    def delete_state(self, txn: lmdb.Transaction, agent: str, key: str) -> bool:
        """Delete ``key`` of ``agent``'s state; whether it was there."""
        total = self.state_after(txn, agent, key, None)
        if not txn.delete(schema.state_key(agent, key), db=self.dbs["state"]):
            return False
        txn.put(schema.state_size_key(agent), pack(total), db=self.dbs["meta"])
        return True

    def delete_run(self, txn: lmdb.Transaction, run: dict[str, Any]) -> None:
        """Remove a finished run and its journal (retention)."""
        key = schema.run_key(run["id"])
        prefix = schema.journal_prefix(run["id"])
        cursor = txn.cursor(db=self.dbs["journal"])
        if cursor.set_range(prefix):
            while bytes(cursor.key()).startswith(prefix):
                if not cursor.delete():
                    break
        txn.delete(key, db=self.dbs["runs"])
        txn.delete(key, db=self.dbs["snapshots"])
        txn.delete(key, db=self.dbs["active"])
        txn.delete(schema.agent_run_key(run["agent"], run["id"]), db=self.dbs["agent_runs"])
