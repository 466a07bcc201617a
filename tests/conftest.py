"""Shared fixtures: every test gets its own corral home; nothing touches ~/.corral."""

from __future__ import annotations

import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

from corral.testing import CorralProject
from tests.models.fake_servers import FakeServer
from tests.projects import CHAT, DEPLOY_PLUGIN, DEPLOYER, KEY, KEY_VAR, fake_model
from tests.telemetry.agents import MIXED, SECRET, SECRET_NAME
from tests.telemetry.receiver import Receiver


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
    corral_project.models["fake"] = fake_model(server.url, retry_attempts=2, retry_initial_wait=0.05)
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


@pytest.fixture
def receiver() -> Iterator[Receiver]:
    """An OTLP/HTTP receiver on 127.0.0.1 decoding what it gets (tests/telemetry/receiver.py)."""
    found = Receiver().start()
    yield found
    found.stop()


@pytest.fixture
def traced(
    corral_project: CorralProject, server: FakeServer, receiver: Receiver, monkeypatch: pytest.MonkeyPatch
) -> CorralProject:
    """The MIXED agent (tests/telemetry/agents.py) on model ``fake`` (on ``server``), granted a
    secret, exporting to ``receiver`` every 0.2 s."""
    monkeypatch.setenv(KEY_VAR, KEY)
    corral_project.models["fake"] = fake_model(server.url, retry_attempts=1)
    corral_project.agent("mixed", MIXED, tools=["word_count"], models=["fake"], secrets=[SECRET_NAME])
    stored = subprocess.run(
        [sys.executable, "-m", "corral", "secrets", "set", SECRET_NAME, "--backend", "file"],
        input=SECRET,
        env=corral_project.env,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert stored.returncode == 0, stored.stderr
    corral_project.tables["telemetry"] = {"otlp_endpoint": receiver.url, "export_interval": "0.2s"}
    corral_project.write()
    return corral_project
