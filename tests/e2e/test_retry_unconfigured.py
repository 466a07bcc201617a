"""A run that stopped because its model was not configured is the operator's to fix, not the
agent's failure: it fails resumable, says what to set, and `corral retry` asks the model
again once it is configured (issue 16, finding 7), while every step before it replays."""

from __future__ import annotations

import json

import pytest

from corral.testing import CorralProject
from tests.models.fake_servers import FakeServer, Reply, openai_body
from tests.projects import KEY, KEY_VAR, fake_model


@pytest.fixture
def helper(corral_project: CorralProject, server: FakeServer, monkeypatch: pytest.MonkeyPatch) -> CorralProject:
    """The built-in agent with a model whose key is not in the environment."""
    monkeypatch.delenv(KEY_VAR, raising=False)
    corral_project.models["fake"] = fake_model(server.url, retry_attempts=1)
    corral_project.agents["helper"] = {
        "code": "agents",
        "entry": "corral.assistant:run",
        "models": ["fake"],
        "tools": ["word_count"],
        "input": {"goal": "count the words of 'a b a'"},
    }
    corral_project.write()
    return corral_project


def _finish(result: str) -> Reply:
    return Reply(body=openai_body("", [("c1", "finish", json.dumps({"result": result}))]))


def test_a_run_stopped_on_an_unconfigured_model_is_retried_once_it_is_configured(
    helper: CorralProject, server: FakeServer, monkeypatch: pytest.MonkeyPatch
) -> None:
    failed = json.loads(helper.cli("run", "helper", "--wait", "--json").stdout)
    assert failed["state"] == "failed", failed
    error = failed["error"]
    assert error["kind"] == "not_configured" and error["resumable"] is True, error
    assert f"set {KEY_VAR}" in error["message"], error
    assert not server.requests

    monkeypatch.setenv(KEY_VAR, KEY)
    helper.cli("pause", "helper", "--reason", "fixing the model", check=True)
    held = helper.cli("retry", failed["id"], "--wait")  # it would only wait in the queue: say so instead
    assert held.returncode != 0 and "helper is paused (fixing the model)" in held.stderr, held.stderr
    assert "corral resume helper" in held.stderr and helper.run_record(failed["id"])["state"] == "failed"
    helper.cli("resume", "helper", check=True)
    server.enqueue(_finish("a: 2, b: 1"))
    retried = helper.cli("retry", failed["id"], "--wait", "--json")
    assert retried.returncode == 0, retried.stderr + retried.stdout
    run = json.loads(retried.stdout)
    assert run["state"] == "succeeded" and run["result"] == "a: 2, b: 1", run
    assert len(server.requests) == 1
    model = [s for s in helper.cli_json("trace", run["id"])["steps"] if s["kind"] == "model"]
    assert len(model) == 1 and model[0]["ok"] is True and model[0]["attempt"] == 2, model


def test_an_unconfigured_answer_the_agent_got_past_is_replayed_as_it_was(
    corral_project: CorralProject, server: FakeServer, monkeypatch: pytest.MonkeyPatch
) -> None:
    """An agent that handles "not configured" itself and then crashes resumes on the same
    path: the answer it got past is replayed, not asked again; a failure of its own later
    is the agent's, not retryable."""
    monkeypatch.delenv(KEY_VAR, raising=False)
    corral_project.models["fake"] = fake_model(server.url, retry_attempts=1)
    corral_project.agent(
        "careful",
        """
        import os
        import signal
        from pathlib import Path

        from corral import ModelCallError

        def run(ctx):
            try:
                ctx.model([{"role": "user", "text": "hi"}], model="fake")
            except ModelCallError as exc:
                ctx.tool("word_count", text=exc.kind)
            if not Path("crashed").exists():
                Path("crashed").write_text("once")
                os.kill(os.getpid(), signal.SIGKILL)
            raise RuntimeError("gave up")
        """,
        models=["fake"],
        tools=["word_count"],
    )
    run = json.loads(corral_project.cli("run", "careful", "--wait", "--json").stdout)
    assert run["state"] == "failed" and run["error"]["kind"] == "agent", run
    assert run["attempt"] == 2 and "resumable" not in run["error"], run
    model = [s for s in corral_project.cli_json("trace", run["id"])["steps"] if s["kind"] == "model"]
    assert model[0]["attempt"] == 1 and model[0]["executions"] == 1, model
    refused = corral_project.cli("retry", run["id"])
    assert refused.returncode != 0 and "passing reason" in refused.stderr, refused.stderr
