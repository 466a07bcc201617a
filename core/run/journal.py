"""What the daemon decides for each request of a run, inside one write transaction.

A run's journal is the ordered list of its effectful requests keyed by (run, seq).
Each decision below reads the entry for a seq and writes what changes, in the same
transaction, so "started" is durable before a tool runs and "done" before anyone is
answered. See docs/durability.md for the rules these functions implement.
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import lmdb

from corral.guardrails import Decision as GuardDecision
from corral.guardrails import Verdict
from corral.packing import pack
from corral.run.divergence import changed
from corral.run.quota import MiB, QuotaExceeded
from corral.store import Records
from corral.wire import fingerprint, idempotency_key

if TYPE_CHECKING:
    from corral.retrypolicy import NextTry
    from corral.run.approvals import Approvals


@dataclass(frozen=True)
class Answer:
    """How to answer a step: ``replay``, ``result``, ``exec``, ``reconcile``, ``retry`` (a tool's
    try failed: the next starts after the wait in its last ``tries`` record), ``call`` (the daemon
    makes a model call; ``called``: the call left already, ahead of this answer's commit),
    ``relist`` (an MCP tool list journaled by an earlier attempt is read again, to be compared),
    ``hold``, ``approval`` (the run waits for a human), ``stop`` (a guardrail ended the run),
    ``mismatch`` (non-determinism) or ``protocol`` (the child said something out of turn)."""

    action: str
    entry: dict[str, Any]
    message: str = ""


def _approval_message(record: dict[str, Any]) -> str:
    return (
        f"tool {record['tool']!r} waits for approval {record['id']} ({record['reason']}): "
        f"`corral approve {record['id']}` or `corral deny {record['id']} --reason TEXT`"
    )


def _describe(entry: dict[str, Any]) -> str:
    return f"{entry['kind']} {entry['name']!r}"


def unconfigured(entry: dict[str, Any]) -> str | None:
    """Why a model step failed for want of configuration (its model's key or endpoint was
    missing in the daemon), or None. Such a step reached no model and cost nothing: the
    operator's fix, not the agent, decides what it answers next time."""
    if entry["kind"] != "model" or entry["status"] != "done" or entry.get("ok", True):
        return None
    error = entry.get("error") or {}
    return str(error.get("message", "")) if error.get("kind") == "not_configured" else None


class Journal:
    """Journal rules for one run, applied through transactions handed in by the writer."""

    def __init__(
        self,
        records: Records,
        run_id: str,
        agent: str,
        attempt: int,
        *,
        journal_mb: int | None = None,
        state_value_kb: int | None = None,
        state_mb: int | None = None,
        on_divergence: str = "fail",
    ) -> None:
        self.records = records
        self.run_id = run_id
        self.agent = agent
        self.attempt = attempt
        self.journal_mb = journal_mb  # limits.journal_mb: what the run's journal may hold
        self.state_value_kb = state_value_kb  # limits.state_value_kb: the largest ctx.state value
        self.state_mb = state_mb  # limits.state_mb: what the agent's whole state may hold
        self.on_divergence = on_divergence
        """``[agents.NAME] on_divergence``: "live" makes a model request that differs from the
        journal, and every model request after it in this attempt, go upstream."""
        self.live_from: int | None = None
        """The step where this attempt's model requests left the journal ("live"), if one did."""
        self.bytes: int | None = None
        """Bytes the run's journal holds (packed entries), kept up to date by :meth:`_put`;
        None until this attempt's first write, which counts what earlier attempts left."""
        self._sizes: dict[int, int] = {}  # size of each entry this attempt left started, by seq
        self._started: dict[int, dict[str, Any]] = {}
        """Entries this attempt put as started, by seq, until :meth:`done` takes them: the
        outcome of a step needs no read and no unpacking of what was just written. Only
        writer jobs touch it, one transaction at a time; a batch that failed to commit
        ends the attempt, and :meth:`done` reads the store for anything not found here."""

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
    ) -> tuple[dict[str, Any] | None, Answer | None]:
        # read as stored: a step answered from the journal needs its fingerprint and outcome,
        # not its request, so a resumed conversation expands none of its replayed steps
        stored = self.records.stored_step(txn, self.run_id, seq)
        if stored is None:
            return None, None
        if stored["fp"] == fp and stored["status"] == "done" and not self._ask_again(txn, stored):
            self.records.post_step(txn, self.run_id, stored, replayed=True)
            return stored, Answer("replay", stored)
        entry = self.records.get_step(txn, self.run_id, seq) or stored  # whole: it is shown, or written again
        if entry["fp"] != fp:
            return entry, Answer(
                "mismatch",
                entry,
                (
                    f"non-determinism at step {seq}: the journal has {_describe(entry)} but the agent now asked "
                    f"for {kind} {name!r}"
                    + (" with different arguments" if entry["name"] == name else "")
                    + "; agent code must make the same requests in the same order on resume"
                ),
            )
        return entry, None

    def _ask_again(self, txn: lmdb.Transaction, entry: dict[str, Any]) -> bool:
        """A model step that failed unconfigured and is the journal's last is asked again:
        the run stopped there (``corral retry`` after the fix). One the agent got past is
        replayed as it was, so the path after it stays the journaled one."""
        return unconfigured(entry) is not None and self.records.stored_step(txn, self.run_id, entry["seq"] + 1) is None

    def stopped_unconfigured(self, txn: lmdb.Transaction) -> str | None:
        """Why the run's last step failed unconfigured, if it did: a run that ends on such a
        step failed for a passing reason."""
        last = self.records.last_step(txn, self.run_id)
        return unconfigured(last) if last is not None else None

    def refuse(
        self,
        txn: lmdb.Transaction,
        seq: int,
        kind: str,
        name: str,
        args: dict[str, Any],
        message: str,
        guardrail: dict[str, str] | None = None,
    ) -> Answer:
        """A request refused before execution is journaled as a failed step (with the
        guardrail that refused it, if one did)."""
        fp = fingerprint(kind, name, args)
        entry, decided = self._existing(txn, seq, kind, name, fp)
        if decided is not None:
            return decided
        return self._refused(txn, seq, kind, name, args, fp, message, guardrail)

    def _refused(
        self,
        txn: lmdb.Transaction,
        seq: int,
        kind: str,
        name: str,
        args: dict[str, Any],
        fp: str,
        message: str,
        guardrail: dict[str, str] | None,
    ) -> Answer:
        entry = self._new_entry(seq, kind, name, args, fp)
        entry.update(
            status="done",
            ok=False,
            refused=True,
            ended=entry["started"],
            error={"kind": "refused", "message": message, "type": "ToolCallError"},
        )
        if guardrail is not None:
            entry["guardrail"] = guardrail
        self._put(txn, entry, fresh=True)
        return Answer("result", entry)

    def guarded(
        self,
        txn: lmdb.Transaction,
        seq: int,
        kind: str,
        name: str,
        args: dict[str, Any],
        decision: GuardDecision,
        otherwise: Callable[[lmdb.Transaction], Answer],
        approvals: Approvals,
        run: dict[str, Any],
        timeout: float,
    ) -> Answer:
        """A guardrail's decision on a new step, journaled with the guardrail's name and reason.

        A step the journal already has keeps the journal's rules (``otherwise``): a replayed
        or interrupted call is not judged again, except one waiting for approval, which
        finds its decision here.
        """
        fp = fingerprint(kind, name, args)
        entry, decided = self._existing(txn, seq, kind, name, fp)
        if decided is not None:
            return decided
        if entry is not None and entry["status"] == "awaiting_approval":
            return self._approval_decided(txn, entry, approvals)
        if entry is not None:
            return otherwise(txn)
        verdict, reason = decision.verdict, decision.reason
        if verdict is Verdict.APPROVE:
            entry = self._new_entry(seq, kind, name, args, fp)
            record = approvals.request(
                txn,
                run=run,
                seq=seq,
                tool=name,
                args=args,
                fp=fp,
                reason=reason,
                guardrail=decision.guardrail,
                timeout=timeout,
            )
            entry.update(status="awaiting_approval", approval=record["id"], guardrail=decision.to_dict())
            self._put(txn, entry, fresh=True)
            return Answer("approval", entry, _approval_message(record))
        refused = self._refused(txn, seq, kind, name, args, fp, reason, decision.to_dict())
        return Answer("stop", refused.entry, reason) if verdict is Verdict.STOP else refused

    def _approval_decided(self, txn: lmdb.Transaction, entry: dict[str, Any], approvals: Approvals) -> Answer:
        seq = entry["seq"]
        record = approvals.use(txn, entry["approval"], self.run_id, seq, entry["fp"])
        state = record["state"]
        if state == "pending":
            return Answer("approval", entry, _approval_message(record))
        entry["approval_state"] = state
        if state == "approved":
            if entry["kind"] == "model":  # a plugin's guardrail may hold model calls too: the daemon makes it
                entry["status"] = "started"
                return self._start(txn, entry, "call", fresh=False)
            entry.update(status="started", key=idempotency_key(self.run_id, seq, entry["fp"]))
            return self._start(txn, entry, "exec", fresh=False)
        why = record.get("decision_reason") or state
        entry.update(  # ended in this attempt, not answered from the journal: no view calls it replayed
            status="done",
            ok=False,
            attempt=self.attempt,
            ended=time.time(),
            error={"kind": "denied", "message": f"a human denied this call: {why}", "type": "ToolCallError"},
        )
        if state != "denied":
            entry["error"]["message"] = f"nobody approved this call before its approval request {state}"
        self._put(txn, entry)
        return Answer("result", entry)

    def tool(
        self, txn: lmdb.Transaction, seq: int, name: str, args: dict[str, Any], idempotent: bool, can_reconcile: bool
    ) -> Answer:
        """Journal the start of a tool call, or decide what an interrupted one needs."""
        fp = fingerprint("tool", name, args)
        entry, decided = self._existing(txn, seq, "tool", name, fp)
        if decided is not None:
            return decided
        if entry is not None and entry["status"] == "awaiting_approval":
            entry = None  # no longer needs approval (the config changed): it never ran, so it starts afresh
        fresh = entry is None
        if entry is None:
            entry = self._new_entry(seq, "tool", name, args, fp)
            entry["key"] = idempotency_key(self.run_id, seq, fp)
        elif not idempotent and not entry.get("between_tries"):  # between tries, no try is in flight
            entry["status"] = "unknown"
            if not can_reconcile:
                self._put(txn, entry)
                return Answer(
                    "hold",
                    entry,
                    (
                        f"step {seq}: non-idempotent tool {name!r} was interrupted by a crash and its outcome "
                        "is unknown; check whether it took effect, then release the run with "
                        f"`corral release {self.run_id} --happened` or `--not-happened`"
                    ),
                )
            self._put(txn, entry)
            return Answer("reconcile", entry)
        return self._start(txn, entry, "exec", fresh=fresh)

    def model(self, txn: lmdb.Transaction, seq: int, name: str, args: dict[str, Any]) -> Answer:
        """A model call: answered from the journal once done; otherwise (new, or interrupted
        mid-flight) the daemon makes it (``call``): a model call has no side effect to double."""
        fp = fingerprint("model", name, args)
        if self.live_from is not None:  # left the journal at an earlier step: no replay from here on
            return self._start(txn, {**self._new_entry(seq, "model", name, args, fp), "live": True}, "call", fresh=True)
        entry, decided = self._existing(txn, seq, "model", name, fp)
        if decided is not None and decided.action == "mismatch" and entry is not None and entry["kind"] == "model":
            return self._diverged(txn, seq, name, args, fp, entry, decided)
        if decided is not None:
            return decided
        if entry is not None:
            if entry["status"] == "done":  # asked again (_ask_again): its old outcome goes
                for key in ("ok", "error", "ended"):
                    entry.pop(key, None)
                entry["status"] = "started"
            return self._start(txn, entry, "call", fresh=False)
        return self._start(txn, self._new_entry(seq, "model", name, args, fp), "call", fresh=True)

    def listing(self, txn: lmdb.Transaction, seq: int, server: str, args: dict[str, Any]) -> Answer:
        """An MCP server's tool list: read it (``exec``) and journal it once per run. A list an
        earlier attempt journaled is read again (``relist``) so that a server that changed its
        tools since is noticed; one that failed then is replayed, as any finished step."""
        fp = fingerprint("mcp", server, args)
        entry, decided = self._existing(txn, seq, "mcp", server, fp)
        if decided is not None:
            return Answer("relist", decided.entry) if decided.action == "replay" and decided.entry["ok"] else decided
        if entry is None:
            entry = self._new_entry(seq, "mcp", server, args, fp)
            entry["key"] = idempotency_key(self.run_id, seq, fp)
            return self._start(txn, entry, "exec", fresh=True)
        return self._start(txn, entry, "exec", fresh=False)  # interrupted: reading a list has no effect

    def unknown(self, txn: lmdb.Transaction, seq: int, message: str) -> Answer:
        """A call whose outcome its tool could not know (an MCP server died or hung during a
        non-idempotent call): on hold until a human says whether it took effect."""
        entry = self._started.pop(seq, None) or self.records.get_step(txn, self.run_id, seq)
        if entry is None or entry["status"] != "started":
            return Answer("protocol", entry or {}, f"step {seq} was not running")
        entry.update(status="unknown", error={"kind": "outcome_unknown", "message": message})
        self._put(txn, entry)
        return Answer(
            "hold",
            entry,
            f"step {seq}: {message}; check whether it took effect, then release the run with "
            f"`corral release {self.run_id} --happened` or `--not-happened`",
        )

    def _diverged(
        self,
        txn: lmdb.Transaction,
        seq: int,
        name: str,
        args: dict[str, Any],
        fp: str,
        entry: dict[str, Any],
        mismatch: Answer,
    ) -> Answer:
        """A model request unlike the journaled one: fail showing what changed, or (``live``)
        make it and every later model request upstream, the entry saying so."""
        difference = changed(entry.get("args"), args) if entry["name"] == name else ""
        if self.on_divergence != "live":
            shown = f" ({difference})" if difference else ""
            hint = '; or set on_divergence = "live" for this agent to call the model from here on'
            return Answer("mismatch", entry, mismatch.message + shown + hint)
        self.live_from = seq
        fresh = {**self._new_entry(seq, "model", name, args, fp), "live": True, "diverged": difference or "model"}
        return self._start(txn, fresh, "call", fresh=True)

    def _start(self, txn: lmdb.Transaction, entry: dict[str, Any], action: str, *, fresh: bool) -> Answer:
        """(Re)start ``entry`` in this attempt: one more execution, from now."""
        entry["attempt"] = self.attempt
        entry["executions"] = entry.get("executions", 0) + 1
        entry["started"] = time.time()
        entry.pop("between_tries", None)
        self._put(txn, entry, fresh=fresh)
        self._started[entry["seq"]] = entry
        return Answer(action, entry)

    def _put(self, txn: lmdb.Transaction, entry: dict[str, Any], *, fresh: bool = False) -> None:
        """Write ``entry`` and keep :attr:`bytes` current. A ``fresh`` entry (a step new to
        the journal) that takes the journal past ``limits.journal_mb`` raises
        :class:`QuotaExceeded` instead: the writer undoes the whole job, so nothing of the
        step is kept. An outcome is always written, whatever its size: what happened must be
        known on resume, and the next new step is refused."""
        if self.bytes is None:  # once per attempt; a first attempt has nothing to count yet
            self.bytes = self.records.journal_size(txn, self.run_id)[1] if self.attempt > 1 else 0
        seq = entry["seq"]
        size = self.records.put_step(txn, self.run_id, entry)
        self.bytes += size - self._sizes.pop(seq, 0)
        if entry["status"] == "started":
            self._sizes[seq] = size
        if fresh and self.journal_mb is not None and self.bytes > self.journal_mb * MiB:
            raise QuotaExceeded(
                f"journal quota exceeded: step {seq} ({_describe(entry)}) would take the run's journal to "
                f"{math.ceil(self.bytes / MiB * 100) / 100:.2f} MiB > {self.journal_mb} MiB (limits.journal_mb); "
                "the step was not run. Keep bulky data in files in the workdir, or raise limits.journal_mb"
            )

    def reconciled(self, txn: lmdb.Transaction, seq: int, outcome: str, value: Any) -> Answer:
        """Apply a tool's own verdict on an interrupted call."""
        entry = self.records.get_step(txn, self.run_id, seq)
        if entry is None or entry["status"] != "unknown":
            return Answer("protocol", entry or {}, f"step {seq} was not awaiting reconciliation")
        if outcome == "happened":
            entry.update(status="done", ok=True, value=value, ended=time.time(), reconciled=True)
            self._put(txn, entry)
            return Answer("result", entry)
        if outcome == "not_happened":
            entry.update(
                status="started",
                attempt=self.attempt,
                started=time.time(),
                executions=entry.get("executions", 0) + 1,
                reconciled=True,
            )
            self._put(txn, entry)
            return Answer("exec", entry)
        self._put(txn, entry)
        return Answer(
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
        entry = self._started.pop(seq, None) or self.records.get_step(txn, self.run_id, seq)
        if entry is None or entry["status"] != "started":
            return None
        entry.update(status="done", ok=ok, ended=time.time(), **(spent or {}))
        if ok:
            entry["value"] = value
        else:
            entry["error"] = error or {"message": "tool failed"}
        self._put(txn, entry)
        return entry

    def failed_try(
        self, txn: lmdb.Transaction, seq: int, error: dict[str, Any], plan: Callable[[int], NextTry]
    ) -> Answer | None:
        """A try of a tool that retries failed: journal it in the entry's ``tries`` and wait
        (``retry``, the entry between tries), or end the step with the last try's error
        (``result``). ``plan`` says what follows a failed try, by its number."""
        entry = self._started.pop(seq, None) or self.records.get_step(txn, self.run_id, seq)
        if entry is None or entry["status"] != "started":
            return None
        tries: list[dict[str, Any]] = entry.get("tries") or []
        number, now = len(tries) + 1, time.time()
        step = plan(number)
        if step.wait is not None:
            tries.append(
                {
                    "number": number,
                    "started": entry["started"],
                    "ended": now,
                    "error": {key: error[key] for key in ("kind", "message", "type") if key in error},
                    "retry_after": error.get("retry_after"),
                    "wait": step.wait,
                }
            )
            entry.update(tries=tries, between_tries=True)
            self._put(txn, entry)
            self._started[seq] = entry
            return Answer("retry", entry)
        final = dict(error)
        if tries:
            waited = sum(t.get("wait") or 0.0 for t in tries)
            why = f"; {step.why_not}" if step.why_not else ""
            final["message"] = (
                f"{error.get('message', 'tool failed')} (the last of {number} tries, {waited:.1f} s of waits"
                f" between them{why})"
            )
        elif step.why_not:
            final["message"] = f"{error.get('message', 'tool failed')} ({step.why_not})"
        entry.update(status="done", ok=False, ended=now, error=final)
        self._put(txn, entry)
        return Answer("result", entry)

    def next_try(self, txn: lmdb.Transaction, seq: int) -> Answer | None:
        """The wait after a failed try is over: the next try starts (``exec``, same key)."""
        entry = self._started.get(seq) or self.records.get_step(txn, self.run_id, seq)
        if entry is None or entry["status"] != "started" or not entry.get("between_tries"):
            return None
        return self._start(txn, entry, "exec", fresh=False)

    def not_sent(self, txn: lmdb.Transaction, seq: int, error: dict[str, Any]) -> Answer:
        """A try that was to start was not sent (the downstream's breaker is open): the step
        ends with ``error``, and the execution counted for it is taken back."""
        entry = self._started.pop(seq, None) or self.records.get_step(txn, self.run_id, seq)
        assert entry is not None, "not_sent follows a decision to run the step"
        entry.pop("between_tries", None)
        if entry.get("tries"):
            error = {**error, "message": f"{error['message']} (after {len(entry['tries'])} failed tries)"}
        entry.update(
            status="done", ok=False, ended=time.time(), error=error, executions=max(0, entry["executions"] - 1)
        )
        self._put(txn, entry)
        return Answer("result", entry)

    def state(self, txn: lmdb.Transaction, seq: int, op: str, args: dict[str, Any]) -> Answer:
        """A ``ctx.state`` change: applied to the agent's state once, with its journal entry."""
        fp = fingerprint("state", op, args)
        entry, decided = self._existing(txn, seq, "state", op, fp)
        if decided is not None:
            return decided
        entry = self._new_entry(seq, "state", op, args, fp)
        if op == "set":
            self._check_state_value(seq, args["key"], args.get("value"))
            self._check_state_total(txn, seq, args["key"], args.get("value"))
            self.records.set_state(txn, self.agent, args["key"], args.get("value"))
        else:
            self.records.delete_state(txn, self.agent, args["key"])
        entry.update(status="done", ok=True, value=None, ended=time.time(), executions=1)
        self._put(txn, entry, fresh=True)
        return Answer("result", entry)

    def _check_state_total(self, txn: lmdb.Transaction, seq: int, key: str, value: Any) -> None:
        """Refuse a ``ctx.state`` write that would take the agent's state past ``limits.state_mb``:
        the whole state travels to every run in its welcome frame, and a state past the frame
        limit would stop every later run of the agent."""
        limit = self.state_mb
        if limit is None:
            return
        total = self.records.state_after(txn, self.agent, key, pack(value))
        if total > limit * MiB:
            raise QuotaExceeded(state_over(self.agent, total, limit, f"step {seq} sets ctx.state[{key!r}]"))

    def _check_state_value(self, seq: int, key: str, value: Any) -> None:
        """Refuse a ``ctx.state`` value over ``limits.state_value_kb`` before it is written."""
        limit = self.state_value_kb
        if limit is None:
            return
        size = len(pack(value))
        if size > limit * 1024:
            raise QuotaExceeded(
                f"state value too large: step {seq} sets ctx.state[{key!r}] to {math.ceil(size / 1024)} KiB > "
                f"{limit} KiB (limits.state_value_kb); nothing was written. Keep bulky data in a file in the "
                "workdir and its name in ctx.state, or raise limits.state_value_kb"
            )


def state_over(agent: str, total: int, limit_mb: int, what: str) -> str:
    """Why a state write is refused: the total it would reach, the limit, the setting, the fixes."""
    return (
        f"state quota exceeded: {what}, which would take agent {agent!r}'s state to "
        f"{total / MiB:.1f} MiB > {limit_mb} MiB (limits.state_mb); nothing was written. Delete keys it no longer "
        f"needs (del ctx.state[KEY], DELETE /corral/v1/state/KEY, or `corral state {agent} --delete KEY`), keep "
        "bulky data in files in the workdir, or raise limits.state_mb (below [corral] frame_max_bytes)"
    )
