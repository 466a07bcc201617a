"""Human approval of one tool call: durable, bound to that call, used at most once.

When a guardrail answers ``approve`` (a high-stakes tool, or one listed in ``approve``),
the step is journaled as ``awaiting_approval`` and an approval request is written in the
same commit, bound to the run, the step's seq, the tool and the fingerprint of its
arguments. The run is put on hold and its process ends: nothing waits in memory, so a
request survives daemon restarts and may take hours. ``corral approve ID`` or
``corral deny ID --reason`` decides it and queues the run; on resume the same step (same
seq, same fingerprint) finds the decision: approved, the tool runs and the approval is
consumed; denied or expired, the agent (or model) gets a tool error with the reason. An
approval can never authorise another call: a different seq or different arguments do not
match it, and a consumed one is never used again. Requests past their timeout are
expired by the daemon (a denial) with an alert.
"""

from __future__ import annotations

import secrets
import time
from typing import TYPE_CHECKING, Any

from corral.states import EventKind
from corral.store.schema import pack, unpack

if TYPE_CHECKING:
    import lmdb

    from corral.store import Records

DB = "approvals"
PENDING, APPROVED, DENIED, EXPIRED, CONSUMED = "pending", "approved", "denied", "expired", "consumed"


class ApprovalError(ValueError):
    """A decision that cannot be made: unknown id, already decided, expired. The message says which."""


def new_id() -> str:
    """Short enough to type (``corral approve 7fk2q9``), random enough never to be guessed."""
    return secrets.token_hex(5)


class Approvals:
    """The ``approvals`` database; every method runs inside the caller's transaction, and
    a request or a decision posts its event there (:class:`corral.states.EventKind`)."""

    def __init__(self, records: Records) -> None:
        self.db = records.dbs[DB]
        self._records = records

    def get(self, txn: lmdb.Transaction, approval_id: str) -> dict[str, Any] | None:
        raw = txn.get(approval_id.encode(), db=self.db)
        return unpack(raw) if raw else None

    def put(self, txn: lmdb.Transaction, record: dict[str, Any]) -> None:
        txn.put(record["id"].encode(), pack(record), db=self.db)

    def request(
        self,
        txn: lmdb.Transaction,
        *,
        run: dict[str, Any],
        seq: int,
        tool: str,
        args: dict[str, Any],
        fp: str,
        reason: str,
        guardrail: str,
        timeout: float,
        now: float | None = None,
    ) -> dict[str, Any]:
        """A new pending request for step ``seq`` of ``run``."""
        created = time.time() if now is None else now
        record = {
            "id": new_id(),
            "run_id": run["id"],
            "agent": run["agent"],
            "seq": seq,
            "tool": tool,
            "args": args,
            "fp": fp,
            "reason": reason,
            "guardrail": guardrail,
            "state": PENDING,
            "created": created,
            "expires": created + timeout,
        }
        self.put(txn, record)
        self._records.post(txn, EventKind.APPROVAL_REQUESTED, record, run["id"])
        return record

    def decide(
        self,
        txn: lmdb.Transaction,
        approval_id: str,
        approve: bool,
        reason: str = "",
        now: float | None = None,
        *,
        by: str = "cli",
        link: bool = False,
    ) -> dict[str, Any]:
        """Approve or deny a pending request, recording who (``by``: ``cli``, a console
        session, an approval link) and, for a signed link, that the link is spent. Raises
        ApprovalError saying why it cannot be: a request decided twice names who decided it
        and changes nothing."""
        record = self.get(txn, approval_id)
        if record is None:
            raise ApprovalError(f"no approval request {approval_id!r}; `corral approvals` lists the pending ones")
        when = time.time() if now is None else now
        if record["state"] == PENDING and when >= record["expires"]:
            raise ApprovalError(f"approval request {approval_id} expired at {_clock(record['expires'])}; it was denied")
        if record["state"] != PENDING:
            raise ApprovalError(f"approval request {approval_id} is {settled(record)}; nothing changed")
        if link:
            record["link_used"] = when
        return self._settle(txn, record, APPROVED if approve else DENIED, when, reason, by)

    def expire(self, txn: lmdb.Transaction, now: float | None = None) -> list[dict[str, Any]]:
        """Mark every pending request past its time as expired (a denial); returns them."""
        when = time.time() if now is None else now
        expired = []
        for record in self.pending(txn):
            if when >= record["expires"]:
                expired.append(self._settle(txn, record, EXPIRED, when, "nobody decided before it expired", "corral"))
        return expired

    def _settle(
        self, txn: lmdb.Transaction, record: dict[str, Any], state: str, when: float, reason: str, by: str
    ) -> dict[str, Any]:
        """Decide ``record`` (approved, denied or expired) and post its event."""
        record.update(state=state, decided=when, decision_reason=reason, decided_by=by)
        self.put(txn, record)
        self._records.post(txn, EventKind.APPROVAL_DECIDED, record, record["run_id"])
        return record

    def decided(self, txn: lmdb.Transaction, approval_id: str) -> bool:
        """Whether the request has been decided (approved, denied, expired, or already used)."""
        record = self.get(txn, approval_id)
        return record is not None and record["state"] != PENDING

    def pending(self, txn: lmdb.Transaction) -> list[dict[str, Any]]:
        """Pending requests, oldest first."""
        return sorted((r for r in self.all(txn) if r["state"] == PENDING), key=lambda r: r["created"])

    def all(self, txn: lmdb.Transaction) -> list[dict[str, Any]]:
        return [unpack(value) for _, value in txn.cursor(db=self.db)]

    def use(self, txn: lmdb.Transaction, approval_id: str, run_id: str, seq: int, fp: str) -> dict[str, Any]:
        """The decision for the call at (run, seq) with fingerprint ``fp``; an approval is
        consumed by this, so it authorises that one call once. Raises ApprovalError when the
        record does not belong to exactly this call (it then authorises nothing)."""
        record = self.get(txn, approval_id)
        if record is None or (record["run_id"], record["seq"], record["fp"]) != (run_id, seq, fp):
            raise ApprovalError(f"approval {approval_id} does not belong to step {seq} of run {run_id}")
        if record["state"] == APPROVED:
            record.update(state=CONSUMED, consumed=time.time())
            self.put(txn, record)
            record = {**record, "state": APPROVED}
        return record


def settled(record: dict[str, Any]) -> str:
    """How a decided request reads: ``already approved by console session 3f2a at 2026-12-06 09:12``."""
    state = APPROVED if record["state"] == CONSUMED else record["state"]
    if state == EXPIRED:
        return f"already expired at {_clock(record['expires'])} (a denial)"
    by = record.get("decided_by") or "someone"
    return f"already {state} by {by} at {_clock(record.get('decided', record['created']))}"


def _clock(ts: float) -> str:
    return time.strftime("%Y-%m-%d %H:%M", time.localtime(ts))
