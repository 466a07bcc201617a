"""A reload while a run is going: the run keeps the config it started with, even when the
reload removes its agent and its model."""

from __future__ import annotations

import json
import socket
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


def test_a_reload_that_moves_a_model_sends_its_next_call_to_the_new_endpoint(
    chat: CorralProject, server: FakeServer
) -> None:
    """A changed base_url was ignored until a restart: the old client, and the old URL's open
    breaker, stayed. Now the reload says which models changed, their breaker forgets the
    old endpoint's failures, and the next call goes to the new one."""
    with socket.socket() as probe:  # a port nothing listens on
        probe.bind(("127.0.0.1", 0))
        dead = probe.getsockname()[1]
    chat.models["fake"].update(base_url=f"http://127.0.0.1:{dead}/v1", breaker_failures=1, breaker_cool_down=600.0)
    chat.start_daemon()
    first = chat.wait_for_run(chat.cli_json("run", "chat", "--input", '{"calls": 1}')["id"], ("succeeded", "failed"))
    assert first["state"] == "failed" and str(dead) in first["error"]["message"], first
    assert chat.cli_json("status")["breakers"]["fake"]["new"] == "open"

    chat.models["fake"]["base_url"] = f"{server.url}/v1"
    chat.write()
    reloaded = chat.cli("reload", check=True).stdout
    assert "models changed: fake" in reloaded, reloaded
    server.enqueue(Reply(body=openai_body("moved")))
    second = chat.wait_for_run(chat.cli_json("run", "chat", "--input", '{"calls": 1}')["id"], ("succeeded", "failed"))
    assert second["state"] == "succeeded" and second["result"]["answers"][0]["text"] == "moved", second
    assert "fake" not in chat.cli_json("status")["breakers"], "status lists open breakers only"
    assert "models changed: none" in chat.cli("reload", check=True).stdout
