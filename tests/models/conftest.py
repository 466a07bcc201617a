"""Fixtures for the model gateway: a scripted loopback server, a fake clock, a unique API key."""

from __future__ import annotations

import secrets

import pytest

from .fake_servers import FakeTime


@pytest.fixture
def anyio_backend() -> str:
    """The daemon runs on asyncio; so do these tests."""
    return "asyncio"


@pytest.fixture
def api_key() -> str:
    """A key unique to the test, so finding it anywhere it should not be is meaningful."""
    return f"sk-test-{secrets.token_hex(16)}"


@pytest.fixture
def fake_time() -> FakeTime:
    """Retry waits and breaker cool-downs without waiting."""
    return FakeTime()
