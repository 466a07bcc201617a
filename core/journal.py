"""What the daemon decides for each request of a run, inside one write transaction.

A run's journal is the ordered list of its effectful requests keyed by (run, seq).
Each decision below reads the entry for a seq and writes what changes, in the same
transaction, so "started" is durable before a tool runs and "done" before anyone is
answered. See docs/durability.md for the rules these functions implement.
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from typing import Any

import lmdb

from corral.store import Records
from corral.wire import fingerprint, idempotency_key


@dataclass(frozen=True)
class Decision:
    """How to answer a step: ``replay``, ``result``, ``exec``, ``reconcile``, ``call`` (the daemon
    makes a model call), ``hold``, ``mismatch`` (non-determinism) or ``protocol`` (the child said
    something out of turn)."""

    action: str
    entry: dict[str, Any]
    message: str = ""


def _describe(entry: dict[str, Any]) -> str:
    return f"{entry['kind']} {entry['name']!r}"


class Journal:
    """Journal rules for one run, applied through transactions handed in by the writer."""

    def __init__(self, records: Records, run_id: str, agent: str, attempt: int) -> None:
        self.records = records
        self.run_id = run_id
        self.agent = agent
        self.attempt = attempt

    def _new_entry(self, seq: int, kind: str, name: str, args: dict[str, Any], fp: str) -> dict[str, Any]:
        return {
            "seq": seq,
            "kind": kind,
            "name": name,
            "args": args,
            "fp": fp,
            "status": "started",
            "attempt": self.attempt,
            "started": time.time(),
            "executions": 0,
        }

    def _existing(
        self, txn: lmdb.Transaction, seq: int, kind: str, name: str, fp: str
    ) -> tuple[dict[str, Any] | None, Decision | None]:
        entry = self.records.get_step(txn, self.run_id, seq)
        if entry is None:
            return None, None
        if entry["fp"] != fp:
            return entry, Decision(
                "mismatch",
                entry,
                (
                    f"non-determinism at step {seq}: the journal has {_describe(entry)} but the agent now asked "
                    f"for {kind} {name!r}"
                    + (" with different arguments" if entry["name"] == name else "")
                    + "; agent code must make the same requests in the same order on resume"
                ),
            )
        if entry["status"] == "done":
            return entry, Decision("replay", entry)
        return entry, None

    def refuse(
        self, txn: lmdb.Transaction, seq: int, kind: str, name: str, args: dict[str, Any], message: str
    ) -> Decision:
        """A request refused before execution is journaled as a failed step."""
        fp = fingerprint(kind, name, args)
        entry, decided = self._existing(txn, seq, kind, name, fp)
        if decided is not None:
            return decided
        entry = self._new_entry(seq, kind, name, args, fp)
        entry.update(
            status="done",
            ok=False,
            refused=True,
            ended=entry["started"],
            error={"kind": "refused", "message": message, "type": "ToolCallError"},
        )
        self.records.put_step(txn, self.run_id, entry)
        return Decision("result", entry)

    def tool(
        self, txn: lmdb.Transaction, seq: int, name: str, args: dict[str, Any], idempotent: bool, can_reconcile: bool
    ) -> Decision:
        """Journal the start of a tool call, or decide what an interrupted one needs."""
        fp = fingerprint("tool", name, args)
        entry, decided = self._existing(txn, seq, "tool", name, fp)
        if decided is not None:
            return decided
        if entry is None:
            entry = self._new_entry(seq, "tool", name, args, fp)
            entry["key"] = idempotency_key(self.run_id, seq, fp)
        elif not idempotent:
            entry["status"] = "unknown"
            if not can_reconcile:
                self.records.put_step(txn, self.run_id, entry)
                return Decision(
                    "hold",
                    entry,
                    (
                        f"step {seq}: non-idempotent tool {name!r} was interrupted by a crash and its outcome "
                        "is unknown; check whether it took effect, then release the run with "
                        f"`corral release {self.run_id} --happened` or `--not-happened`"
                    ),
                )
            self.records.put_step(txn, self.run_id, entry)
            return Decision("reconcile", entry)
        return self._start(txn, entry, "exec")

    def model(self, txn: lmdb.Transaction, seq: int, name: str, args: dict[str, Any]) -> Decision:
        """A model call: answered from the journal once done; otherwise (new, or interrupted
        mid-flight) the daemon makes it (``call``): a model call has no side effect to double."""
        fp = fingerprint("model", name, args)
        entry, decided = self._existing(txn, seq, "model", name, fp)
        if decided is not None:
            return decided
        return self._start(txn, entry or self._new_entry(seq, "model", name, args, fp), "call")

    def _start(self, txn: lmdb.Transaction, entry: dict[str, Any], action: str) -> Decision:
        """(Re)start ``entry`` in this attempt: one more execution, from now."""
        entry["attempt"] = self.attempt
        entry["executions"] = entry.get("executions", 0) + 1
        entry["started"] = time.time()
        self.records.put_step(txn, self.run_id, entry)
        return Decision(action, entry)

    def reconciled(self, txn: lmdb.Transaction, seq: int, outcome: str, value: Any) -> Decision:
        """Apply a tool's own verdict on an interrupted call."""
        entry = self.records.get_step(txn, self.run_id, seq)
        if entry is None or entry["status"] != "unknown":
            return Decision("protocol", entry or {}, f"step {seq} was not awaiting reconciliation")
        if outcome == "happened":
            entry.update(status="done", ok=True, value=value, ended=time.time(), reconciled=True)
            self.records.put_step(txn, self.run_id, entry)
            return Decision("result", entry)
        if outcome == "not_happened":
            entry.update(
                status="started",
                attempt=self.attempt,
                started=time.time(),
                executions=entry.get("executions", 0) + 1,
                reconciled=True,
            )
            self.records.put_step(txn, self.run_id, entry)
            return Decision("exec", entry)
        self.records.put_step(txn, self.run_id, entry)
        return Decision(
            "hold",
            entry,
            (
                f"step {seq}: tool {entry['name']!r} could not tell whether its interrupted call took effect; "
                f"check, then `corral release {self.run_id} --happened` or `--not-happened`"
            ),
        )

    def done(
        self,
        txn: lmdb.Transaction,
        seq: int,
        ok: bool,
        value: Any,
        error: dict[str, Any] | None,
        spent: dict[str, Any] | None = None,
    ) -> dict[str, Any] | None:
        """Record a step's outcome: a tool's reported by the child, or a model call's answer
        (or final error) with what it cost (``spent``: ``usage``, ``cost_usd``, ...)."""
        entry = self.records.get_step(txn, self.run_id, seq)
        if entry is None or entry["status"] != "started":
            return None
        entry.update(status="done", ok=ok, ended=time.time(), **(spent or {}))
        if ok:
            entry["value"] = value
        else:
            entry["error"] = error or {"message": "tool failed"}
        self.records.put_step(txn, self.run_id, entry)
        return entry

    def state(self, txn: lmdb.Transaction, seq: int, op: str, args: dict[str, Any]) -> Decision:
        """A ``ctx.state`` change: applied to the agent's state once, with its journal entry."""
        fp = fingerprint("state", op, args)
        entry, decided = self._existing(txn, seq, "state", op, fp)
        if decided is not None:
            return decided
        entry = self._new_entry(seq, "state", op, args, fp)
        if op == "set":
            self.records.set_state(txn, self.agent, args["key"], args.get("value"))
        else:
            self.records.delete_state(txn, self.agent, args["key"])
        entry.update(status="done", ok=True, value=None, ended=time.time(), executions=1)
        self.records.put_step(txn, self.run_id, entry)
        return Decision("result", entry)
