"""The shipped example that needs a model: detected from a local Ollama, or reported as
not configured with the setting to add, and nothing crashes."""

from __future__ import annotations

import errno
import json
import shutil
import socket
from collections.abc import Iterator
from pathlib import Path

import pytest

from corral.models.detection import DEFAULT_OLLAMA_URL
from corral.testing import CorralProject
from tests.models.fake_servers import FakeServer, Reply, openai_body

ROOT = Path(__file__).resolve().parents[2]
OLLAMA_PORT = int(DEFAULT_OLLAMA_URL.rsplit(":", 1)[1])


def _port_free(port: int) -> bool:
    with socket.socket() as probe:
        try:
            probe.bind(("127.0.0.1", port))
        except OSError as exc:
            if exc.errno == errno.EADDRINUSE:
                return False
            raise
    return True


@pytest.fixture
def example(tmp_path: Path) -> Iterator[CorralProject]:
    project = CorralProject(tmp_path)
    shutil.copytree(ROOT / "examples" / "agents", project.agents_dir, dirs_exist_ok=True)
    shutil.copy(ROOT / "examples" / "corral.toml", project.config_path)
    yield project
    project.close()


def test_without_any_model_the_example_reports_not_configured_with_the_fix(example: CorralProject) -> None:
    if not _port_free(OLLAMA_PORT):
        pytest.skip(f"something listens on 127.0.0.1:{OLLAMA_PORT} (an Ollama?), so detection would find it")
    result = example.cli("run", "summarize", "--wait", "--json")
    assert result.returncode == 0, result.stderr
    run = json.loads(result.stdout)
    assert run["state"] == "succeeded" and run["result"]["summary"] is None
    message = run["result"]["not_configured"]
    assert "not configured" in message and "OPENAI_API_KEY" in message and "[models.default]" in message


def test_a_local_ollama_is_detected_and_used(example: CorralProject) -> None:
    if not _port_free(OLLAMA_PORT):
        pytest.skip(f"127.0.0.1:{OLLAMA_PORT} is taken; the fake Ollama cannot listen there")
    ollama = FakeServer(port=OLLAMA_PORT).start()
    try:
        ollama.enqueue(
            Reply(body={"models": [{"name": "llama3.2:latest"}]}),
            Reply(body=openai_body("Agents resume where they stopped.", usage=(40, 8))),
        )
        result = example.cli("run", "summarize", "--wait", "--json")
    finally:
        ollama.stop()
    assert result.returncode == 0, result.stderr
    run = json.loads(result.stdout)
    assert run["result"] == {"summary": "Agents resume where they stopped.", "tokens": 48}
    probe, call = ollama.requests
    assert probe.method == "GET" and probe.path == "/api/tags"
    assert call.path == "/v1/chat/completions" and call.json()["model"] == "llama3.2:latest"
    assert run["spent"]["calls"] == 1 and run["spent"]["cost_micro_usd"] == 0, "a local model is free"


def test_the_openai_sdk_example_reports_not_configured_through_the_door(example: CorralProject) -> None:
    pytest.importorskip("openai")
    if not _port_free(OLLAMA_PORT):
        pytest.skip(f"something listens on 127.0.0.1:{OLLAMA_PORT} (an Ollama?), so detection would find it")
    result = example.cli("run", "ask", "--wait", "--json")
    assert result.returncode == 0, result.stderr
    run = json.loads(result.stdout)
    assert run["state"] == "succeeded" and run["result"]["answer"] is None, run
    message = run["result"]["not_configured"]
    assert "not configured" in message and "[models.default]" in message


def test_the_openai_sdk_example_answers_through_a_local_ollama(example: CorralProject) -> None:
    pytest.importorskip("openai")
    if not _port_free(OLLAMA_PORT):
        pytest.skip(f"127.0.0.1:{OLLAMA_PORT} is taken; the fake Ollama cannot listen there")
    ollama = FakeServer(port=OLLAMA_PORT).start()
    try:
        ollama.enqueue(Reply(body={"models": [{"name": "llama3.2:latest"}]}), Reply(body=openai_body("To resume.")))
        result = example.cli("run", "ask", "--wait", "--json")
    finally:
        ollama.stop()
    run = json.loads(result.stdout)
    assert run["result"] == {"answer": "To resume."}, run
    assert ollama.requests[1].json()["messages"][0]["content"] == "Why should an agent's model calls be journaled?"
