"""A model call leaves for its endpoint while its "started" entry commits, not after: the
commit's wait (two syncs) is off the model step's path, and the answer still reaches the
agent only once both the start and the answer are durable.

The engine, store and writer are real, the model server is a real one on 127.0.0.1, and
the child is scripted frame by frame (tests/scripted_child.py). The one thing injected is a
slow disk: the writer round that journals the model step's start waits half a second
before it commits, so the order is exact instead of left to the scheduler.
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from corral.config import load_config
from corral.run.engine import Engine
from corral.run.journal import Journal
from corral.store import Writer
from tests.models.fake_servers import FakeServer, Reply, openai_body
from tests.projects import KEY, KEY_VAR
from tests.scripted_child import FINISH, HELLO, engine_of, steps_of

SLOW_COMMIT = 0.5
QUESTION = {
    "messages": [{"role": "user", "text": "hi"}],
    "tools": [],
    "options": {"max_tokens": 20},
}


@contextlib.contextmanager
def _engine(tmp_path: Path, server: FakeServer, script: list[Any]) -> Iterator[Engine]:
    """Agent ``a`` granted model ``fake`` on ``server``, its attempt playing ``script``."""
    code = tmp_path / "agents"
    code.mkdir()
    (code / "a.py").write_text("def run(ctx):\n    return None\n")
    (tmp_path / "corral.toml").write_text(
        f"""[corral]
home = "{tmp_path / "home"}"

[models.fake]
provider = "openai"
base_url = "{server.url}/v1"
model = "fake-gpt"
api_key_env = "{KEY_VAR}"
retry_attempts = 1

[agents.a]
code = "{code}"
entry = "a:run"
models = ["fake"]
max_attempts = 1
"""
    )
    with engine_of(load_config(tmp_path / "corral.toml", environ={KEY_VAR: KEY}), [script]) as engine:
        yield engine


@pytest.fixture
def slow_start_commit(monkeypatch: pytest.MonkeyPatch) -> list[float]:
    """The writer round that decides the second model step waits :data:`SLOW_COMMIT` seconds
    after its jobs ran, before its commit; returns [when that wait ended]. (The first call of
    a day waits for the writer anyway, to read the day's spend.)"""
    ended: list[float] = []
    deciding: list[bool] = []
    model = Journal.model
    alone = Writer._run_alone

    def decided(self: Journal, *args: Any) -> Any:
        deciding.append(True)
        return model(self, *args)

    def slow(txn: Any, job: Any) -> Any:
        outcome = alone(txn, job)
        if len(deciding) == 2 and not ended:
            time.sleep(SLOW_COMMIT)
            ended.append(time.monotonic())
        return outcome

    monkeypatch.setattr(Journal, "model", decided)
    monkeypatch.setattr(Writer, "_run_alone", staticmethod(slow))
    return ended


def test_a_model_call_leaves_before_its_start_commits_and_answers_after_both(
    tmp_path: Path, server: FakeServer, slow_start_commit: list[float]
) -> None:
    server.enqueue(Reply(body=openai_body("first", usage=(3, 1))), Reply(body=openai_body("hello", usage=(3, 1))))
    store_path = str(tmp_path / "home" / "store")
    answered_at = tmp_path / "probe"
    script = [
        ["send", HELLO],
        ["recv", "welcome"],
        ["send", {"t": "step", "seq": 1, "kind": "model", "name": "", "args": QUESTION}],
        ["recv", "result"],
        ["send", {"t": "step", "seq": 2, "kind": "model", "name": "", "args": QUESTION}],
        ["recv", "result"],
        ["probe", store_path, 2, str(answered_at)],
        ["send", FINISH],
        ["wait_close"],
    ]
    with _engine(tmp_path, server, script) as engine:

        async def main() -> dict[str, Any]:
            run = await engine.create_run("a")
            return await engine.execute(run["id"])

        final = asyncio.run(main())
        steps = steps_of(engine, final["id"])
    assert final["state"] == "succeeded", final.get("error")
    assert slow_start_commit, "the start's round was slowed"
    assert len(server.requests) == 2
    assert server.requests[1].at < slow_start_commit[0], "the call left before its start was committed"
    assert answered_at.read_text() == "done", "the agent had its answer only once it was journaled"
    assert steps[2]["status"] == "done" and steps[2]["value"]["text"] == "hello"
