"""What counts as an attempt and what uses up ``max_attempts``: a child that never says
hello is a crash, resumed by another attempt; a retry by a human and an approval do not
spend the attempts that bound crash loops."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from corral.testing import CorralProject
from tests.models.fake_servers import FakeServer, Reply, openai_body
from tests.projects import run_until_held
from tests.scripted_child import FINISH, HELLO, engine_for, run_once


def test_no_hello_in_time_is_a_crash_that_resumes(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """Bug at 171d862: the run failed (protocol) instead of being resumed as a crash."""
    monkeypatch.setattr("corral.run.attempt.HELLO_TIMEOUT", 0.3)
    silent = [["sleep", 3], ["exit"]]
    prompt = [["send", HELLO], ["recv", "welcome"], ["send", FINISH], ["wait_close"]]
    with engine_for(tmp_path, [silent, prompt]) as engine:
        final, _, _ = run_once(engine)
    assert final["state"] == "succeeded" and final["attempt"] == 2, final


def test_retrying_a_resumable_failure_is_not_refused_for_attempts_used_before(
    chat: CorralProject, server: FakeServer
) -> None:
    """``max_attempts`` bounds crash loops; a run failed for a passing reason and retried by
    a human gets its attempts again (it was refused as "gave up after 1 attempts")."""
    chat.agents["chat"]["max_attempts"] = 1
    chat.write()
    server.enqueue(Reply(status=503))
    failed = json.loads(chat.cli("run", "chat", "--input", '{"calls": 1}', "--wait", "--json").stdout)
    assert failed["state"] == "failed" and failed["error"]["resumable"], failed
    server.enqueue(Reply(body=openai_body("back")))
    retried = chat.cli("retry", failed["id"], "--wait", "--json")
    final = json.loads(retried.stdout)
    assert final["state"] == "succeeded", final
    assert final["result"]["answers"][0]["text"] == "back"


def test_approvals_do_not_use_up_the_runs_attempts(deployer: CorralProject) -> None:
    """Each approval ends an attempt; with max_attempts = 1 the approved run was refused."""
    deployer.agents["deployer"]["max_attempts"] = 1
    deployer.start_daemon()
    approval, run = run_until_held(deployer, "prod")
    assert deployer.cli("approve", approval).returncode == 0
    final = deployer.wait_for_run(run["id"], states=("succeeded", "failed"))
    assert final["state"] == "succeeded" and final["result"] == "deployed to prod", final
