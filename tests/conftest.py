"""Shared fixtures: every test gets its own corral home; nothing touches ~/.corral."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.models.fake_servers import FakeServer


@pytest.fixture(autouse=True)
def _isolated_home(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    home = tmp_path / "isolated-home"
    monkeypatch.setenv("CORRAL_HOME", str(home))
    monkeypatch.delenv("CORRAL_CONFIG", raising=False)
    return home


@pytest.fixture
def server() -> Iterator[FakeServer]:
    """A fresh scripted model server on 127.0.0.1 (tests/models/fake_servers.py), stopped after the test."""
    fake = FakeServer().start()
    yield fake
    fake.stop()
