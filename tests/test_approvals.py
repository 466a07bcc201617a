"""Approval requests in a real store: bound to one call, decided once, consumed once."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from corral.approvals import APPROVED, CONSUMED, DENIED, EXPIRED, ApprovalError, Approvals
from corral.store import Store

RUN = {"id": "run1", "agent": "a"}


@pytest.fixture
def store(tmp_path: Path) -> Iterator[Store]:
    s = Store.open(tmp_path / "store")
    yield s
    s.env.close()


def _request(store: Store, approvals: Approvals, now: float = 1000.0, timeout: float = 60.0) -> dict:
    with store.env.begin(write=True) as txn:
        return approvals.request(
            txn,
            run=RUN,
            seq=3,
            tool="run_command",
            args={"command": "ls"},
            fp="fp3",
            reason="high-stakes",
            guardrail="approval",
            timeout=timeout,
            now=now,
        )


def test_an_approval_authorises_exactly_its_call_once(store: Store) -> None:
    approvals = Approvals(store.dbs)
    record = _request(store, approvals)
    with store.env.begin(write=True) as txn:
        assert [r["id"] for r in approvals.pending(txn)] == [record["id"]]
        approvals.decide(txn, record["id"], True, now=1001.0)
        with pytest.raises(ApprovalError, match="already approved"):
            approvals.decide(txn, record["id"], False, now=1002.0)
        with pytest.raises(ApprovalError, match="does not belong"):
            approvals.use(txn, record["id"], "run1", 4, "fp3")  # another step
        with pytest.raises(ApprovalError, match="does not belong"):
            approvals.use(txn, record["id"], "run1", 3, "other-args")
        assert approvals.use(txn, record["id"], "run1", 3, "fp3")["state"] == APPROVED
        assert approvals.get(txn, record["id"])["state"] == CONSUMED
        assert approvals.use(txn, record["id"], "run1", 3, "fp3")["state"] == CONSUMED, "never approves twice"
        assert approvals.pending(txn) == []


def test_a_denial_keeps_its_reason(store: Store) -> None:
    approvals = Approvals(store.dbs)
    record = _request(store, approvals)
    with store.env.begin(write=True) as txn:
        approvals.decide(txn, record["id"], False, "not on a Friday", now=1001.0)
        used = approvals.use(txn, record["id"], "run1", 3, "fp3")
    assert used["state"] == DENIED and used["decision_reason"] == "not on a Friday"


def test_requests_past_their_timeout_expire_and_cannot_be_approved(store: Store) -> None:
    approvals = Approvals(store.dbs)
    record = _request(store, approvals, now=1000.0, timeout=60.0)
    with store.env.begin(write=True) as txn:
        with pytest.raises(ApprovalError, match="expired"):
            approvals.decide(txn, record["id"], True, now=1061.0)
        assert approvals.expire(txn, now=1030.0) == []
        [expired] = approvals.expire(txn, now=1061.0)
    assert expired["state"] == EXPIRED
    with store.env.begin(write=True) as txn, pytest.raises(ApprovalError, match="no approval request"):
        approvals.decide(txn, "nope", True)
