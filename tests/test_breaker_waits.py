"""A run whose model call waits for an open circuit breaker, in a real daemon against the
scripted model server: what stops the wait (a daemon stopping, `corral cancel`) and what
becomes of the run."""

from __future__ import annotations

import time

from corral.testing import CorralProject
from tests.models.fake_servers import FakeServer, Reply, openai_body


def test_a_run_waiting_for_an_open_breaker_when_the_daemon_stops_resumes_after_it(
    chat: CorralProject, server: FakeServer
) -> None:
    """Stopping the daemon interrupts the wait (resumed at the next start), instead of
    failing the run as if the endpoint had stayed down."""
    # a cool-down far longer than a (loaded) machine takes to start the second run, so the
    # daemon is stopped while that run still waits, never after the breaker let it through
    chat.models["fake"].update(breaker_failures=1, breaker_cool_down=30.0, breaker_wait=60)
    daemon = chat.start_daemon()
    server.enqueue(Reply(status=503))
    first = chat.cli_json("run", "chat", "--input", '{"calls": 1}')
    assert chat.wait_for_run(first["id"], states=("failed",))["error"]["resumable"]
    waiting = chat.cli_json("run", "chat", "--input", '{"calls": 1}')
    deadline = time.monotonic() + 30
    while "waiting for model endpoint to recover" not in (chat.home / "logs" / "chat.log").read_text():
        assert time.monotonic() < deadline, "the second run did not wait for the breaker"
        time.sleep(0.1)
    assert daemon.stop() == 0
    stopped = chat.run_record(waiting["id"])
    assert stopped["state"] == "interrupted", stopped
    server.enqueue(Reply(body=openai_body("back")))
    chat.start_daemon()
    final = chat.wait_for_run(waiting["id"], states=("succeeded", "failed"))
    assert final["state"] == "succeeded" and final["result"]["answers"][0]["text"] == "back", final


def test_cancelling_a_run_that_waits_for_an_open_breaker_does_not_wait_for_the_endpoint(
    chat: CorralProject, server: FakeServer
) -> None:
    """The wait only watched limits and shutdown: `corral cancel` took effect after breaker_wait."""
    chat.models["fake"].update(breaker_failures=1, breaker_cool_down=120.0, breaker_wait=120)
    chat.start_daemon()
    server.enqueue(Reply(status=503))
    first = chat.cli_json("run", "chat", "--input", '{"calls": 1}')
    chat.wait_for_run(first["id"], states=("failed",))
    waiting = chat.cli_json("run", "chat", "--input", '{"calls": 1}')
    deadline = time.monotonic() + 30
    while "waiting for model endpoint to recover" not in (chat.home / "logs" / "chat.log").read_text():
        assert time.monotonic() < deadline, "the second run did not wait for the breaker"
        time.sleep(0.1)
    chat.cli("cancel", waiting["id"], check=True)
    final = chat.wait_for_run(waiting["id"], states=("cancelled", "failed", "succeeded"), timeout=20)
    assert final["state"] == "cancelled", final
