"""Shared fixtures: every test gets its own corral home; nothing touches ~/.corral."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from corral.testing import CorralProject
from tests.models.fake_servers import FakeServer
from tests.projects import CHAT, DEPLOY_PLUGIN, DEPLOYER, KEY, KEY_VAR


@pytest.fixture(autouse=True)
def _isolated_home(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    home = tmp_path / "isolated-home"
    monkeypatch.setenv("CORRAL_HOME", str(home))
    monkeypatch.delenv("CORRAL_CONFIG", raising=False)
    return home


@pytest.fixture(autouse=True)
def _direct_connections(monkeypatch: pytest.MonkeyPatch) -> None:
    """httpx honours proxy variables; the loopback servers and receivers tests start must
    be reached directly, by the test and by every process it starts."""
    for name in ("HTTP_PROXY", "HTTPS_PROXY", "ALL_PROXY", "http_proxy", "https_proxy", "all_proxy"):
        monkeypatch.delenv(name, raising=False)


@pytest.fixture
def server() -> Iterator[FakeServer]:
    """A fresh scripted model server on 127.0.0.1 (tests/models/fake_servers.py), stopped after the test."""
    fake = FakeServer().start()
    yield fake
    fake.stop()


@pytest.fixture
def chat_project(corral_project: CorralProject, server: FakeServer, monkeypatch: pytest.MonkeyPatch) -> CorralProject:
    """The chat agent (tests/projects.py) with model ``fake`` on ``server``: two tries per call."""
    monkeypatch.setenv(KEY_VAR, KEY)
    corral_project.models["fake"] = {
        "provider": "openai",
        "base_url": f"{server.url}/v1",
        "model": "fake-gpt",
        "api_key_env": KEY_VAR,
        "retry_attempts": 2,
        "retry_initial_wait": 0.05,
        "prices": {"input": 2.0, "output": 8.0},
    }
    corral_project.agent("chat", CHAT, tools=["word_count"], models=["fake"])
    return corral_project


@pytest.fixture
def chat(chat_project: CorralProject) -> CorralProject:
    """The chat agent with one try per call (no retry waits)."""
    chat_project.models["fake"]["retry_attempts"] = 1
    chat_project.write()
    return chat_project


@pytest.fixture
def deployer(corral_project: CorralProject) -> CorralProject:
    """The deployer agent (tests/projects.py), whose high-stakes ``deploy`` waits for approval."""
    plugin = corral_project.root / "deploy_plugin.py"
    plugin.write_text(DEPLOY_PLUGIN)
    corral_project.corral["plugins"] = [str(plugin)]
    corral_project.agent("deployer", DEPLOYER, tools=["deploy"])
    return corral_project
