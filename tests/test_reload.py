"""A reload while a run is going: the run keeps the config it started with, even when the
reload removes its agent and its model."""

from __future__ import annotations

import json
import time

from corral.testing import CorralProject
from tests.models.fake_servers import FakeServer, Reply, openai_body


def _wait_requests(server: FakeServer, count: int) -> None:
    deadline = time.monotonic() + 30
    while len(server.requests) < count:
        assert time.monotonic() < deadline, f"the model server saw {len(server.requests)} requests, not {count}"
        time.sleep(0.05)


def test_a_run_whose_agent_and_model_are_removed_by_a_reload_ends_its_call_cleanly(
    chat: CorralProject, server: FakeServer
) -> None:
    """A running run keeps its config across a reload; its next model call must end as a
    model error the agent reads, not crash in the daemon (the run stayed "running")."""
    go = chat.home / "agents" / "chat" / "go"  # where the agent can see it: nothing else is in its sandbox
    server.enqueue(*(Reply(body=openai_body(f"answer {i}")) for i in range(3)))
    chat.start_daemon()
    started = chat.cli_json("run", "chat", "--input", json.dumps({"calls": 3, "wait_for": str(go)}))
    _wait_requests(server, 2)
    chat.agent("other", "def run(ctx):\n    return 1\n")
    del chat.agents["chat"], chat.models["fake"]
    chat.write()
    chat.cli("reload", check=True)
    go.touch()
    final = chat.wait_for_run(started["id"], states=("succeeded", "failed"), timeout=30)
    assert final["state"] == "succeeded", final
    answers = final["result"]["answers"]
    assert [a.get("text") for a in answers[:2]] == ["answer 0", "answer 1"]
    assert answers[2]["error"] == "not_configured" and "fake" in answers[2]["message"], answers
    assert "run crashed in the daemon" not in (chat.home / "logs" / "corral.log").read_text()
