"""Approval requests in a real store: bound to one call, decided once, consumed once; and
in a real engine or daemon, a decision that resumes its run whenever it comes, for a tool
or a model call."""

from __future__ import annotations

import asyncio
import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from corral.config import load_config
from corral.daemon.host import host
from corral.run.approvals import APPROVED, CONSUMED, DENIED, EXPIRED, ApprovalError, Approvals
from corral.store import Records, Store
from corral.testing import CorralProject
from tests.models.fake_servers import FakeServer, Reply, openai_body
from tests.projects import deployed

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
    approvals = Approvals(Records(store.dbs))
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


def test_a_decision_records_who_and_a_second_one_names_them(store: Store) -> None:
    approvals = Approvals(Records(store.dbs))
    record = _request(store, approvals)
    with store.env.begin(write=True) as txn:
        decided = approvals.decide(txn, record["id"], True, "ok", now=1001.0, by="approval link", link=True)
        assert (decided["decided_by"], decided["link_used"]) == ("approval link", 1001.0)
        approvals.use(txn, record["id"], "run1", 3, "fp3")
        for approve in (True, False):  # consumed by now: it still reads as approved, by whom
            with pytest.raises(ApprovalError, match=r"is already approved by approval link at .*; nothing changed"):
                approvals.decide(txn, record["id"], approve, by="cli")
        assert approvals.get(txn, record["id"])["decided_by"] == "approval link", "nothing changed"


def test_a_denial_keeps_its_reason(store: Store) -> None:
    approvals = Approvals(Records(store.dbs))
    record = _request(store, approvals)
    with store.env.begin(write=True) as txn:
        approvals.decide(txn, record["id"], False, "not on a Friday", now=1001.0)
        used = approvals.use(txn, record["id"], "run1", 3, "fp3")
    assert used["state"] == DENIED and used["decision_reason"] == "not on a Friday"


def test_requests_past_their_timeout_expire_and_cannot_be_approved(store: Store) -> None:
    approvals = Approvals(Records(store.dbs))
    record = _request(store, approvals, now=1000.0, timeout=60.0)
    with store.env.begin(write=True) as txn:
        with pytest.raises(ApprovalError, match="expired"):
            approvals.decide(txn, record["id"], True, now=1061.0)
        assert approvals.expire(txn, now=1030.0) == []
        [expired] = approvals.expire(txn, now=1061.0)
    assert expired["state"] == EXPIRED
    with store.env.begin(write=True) as txn, pytest.raises(ApprovalError, match="no approval request"):
        approvals.decide(txn, "nope", True)


# --------------------------------------------------------------------------- in a run


class DecidedAtOnce(Approvals):
    """A human who approves each request the moment it is stored: before the engine has
    put its run on hold (the alert and `corral approvals` show the request that early)."""

    def request(self, txn: Any, **fields: Any) -> dict[str, Any]:
        record = super().request(txn, **fields)
        return self.decide(txn, record["id"], True)


def test_an_approval_decided_before_its_run_is_on_hold_still_resumes_the_run(
    deployer: CorralProject,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """It used to find no held run to queue, then the run was put on hold for good."""
    monkeypatch.setenv("CORRAL_HOME", str(deployer.home))
    config = load_config(deployer.write())
    with host(config, echo=None) as composed:
        engine = composed.engine
        engine.processes.prepare(config.home / "agents")
        engine.approvals = DecidedAtOnce(engine.records)

        async def go() -> dict[str, Any]:
            run = await engine.create_run("deployer", "prod")
            return await engine.execute(run["id"])

        final = asyncio.run(go())
    assert final["state"] == "succeeded" and final["result"] == "deployed to prod", final
    assert deployed(deployer) == ["prod"]


ASK_FIRST = """
import corral
from corral.guardrails import Decision, Verdict


class AskFirst:
    name = "ask-first"

    def start(self, run, agent):
        return self

    def before(self, action):
        if action.kind == "model":
            return Decision(Verdict.APPROVE, "every model call is approved by a human")
        return None

    def after(self, step):
        return None


@corral.hookimpl
def corral_register_guardrails(register):
    register(AskFirst())
"""


def test_a_model_call_a_guardrail_sends_for_approval_is_made_once_approved(
    chat: CorralProject, server: FakeServer
) -> None:
    """An approved model step was answered with "exec" (a tool's answer): the agent's
    process looked for a tool named after the model and the call was never made."""
    plugin = chat.root / "ask_first.py"
    plugin.write_text(ASK_FIRST)
    chat.corral["plugins"] = [str(plugin)]
    chat.write()
    held = json.loads(chat.cli("run", "chat", "--input", '{"calls": 1}', "--wait", "--json").stdout)
    assert held["state"] == "on_hold" and held["error"]["kind"] == "approval", held
    assert not server.requests, "nothing is sent before the approval"
    [request] = chat.cli_json("approvals")
    server.enqueue(Reply(body=openai_body("approved answer")))
    approved = chat.cli("approve", request["id"], "--json")
    final = json.loads(approved.stdout)
    assert final["state"] == "succeeded", final
    assert final["result"]["answers"][0]["text"] == "approved answer", final
    assert len(server.requests) == 1
