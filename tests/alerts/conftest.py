"""Fixtures for the sink tests: a throwaway CA, loopback receivers closed after each test."""

from __future__ import annotations

import ssl
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
import trustme

from corral.alerts import Alert, Severity
from corral.config import parse_config
from corral.daemon.host import Host, host

from .receivers import HTTPReceiver, SilentTCPServer, SMTPReceiver


@pytest.fixture(scope="session")
def ca() -> trustme.CA:
    return trustme.CA()


@pytest.fixture(scope="session")
def server_tls(ca: trustme.CA) -> ssl.SSLContext:
    """A server context with a certificate for 127.0.0.1 signed by the test CA."""
    context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    ca.issue_cert("127.0.0.1", "localhost").configure_cert(context)
    return context


@pytest.fixture
def ca_file(ca: trustme.CA, tmp_path: Path) -> Path:
    """The test CA as a PEM file, for a sink's ``ca_file``."""
    path = tmp_path / "test-ca.pem"
    ca.cert_pem.write_to_path(str(path))
    return path


@pytest.fixture
def http_receiver() -> Iterator[Callable[..., HTTPReceiver]]:
    made: list[HTTPReceiver] = []

    def make(*args: Any, **kwargs: Any) -> HTTPReceiver:
        made.append(HTTPReceiver(*args, **kwargs))
        return made[-1]

    yield make
    for receiver in made:
        receiver.close()


@pytest.fixture
def smtp_receiver() -> Iterator[Callable[..., SMTPReceiver]]:
    made: list[SMTPReceiver] = []

    def make(**kwargs: Any) -> SMTPReceiver:
        made.append(SMTPReceiver(**kwargs))
        return made[-1]

    yield make
    for receiver in made:
        receiver.close()


@pytest.fixture
def silent_server() -> Iterator[SilentTCPServer]:
    server = SilentTCPServer()
    yield server
    server.close()


@pytest.fixture
def alert() -> Alert:
    """An alert whose text tries every trick: quotes, backslashes, newlines, markup, non-ASCII."""
    return Alert(
        key="run-failed:nightly",
        severity=Severity.CRITICAL,
        title='Run "nightly" failed\\ badly\nBcc: evil@example.com',
        body="Traceback:\n  boom <@everyone> & \"quotes\" 'single' café ☕",
        agent="nightly",
        run_id="run-123",
        fields={"attempt": 3, "cost_usd": 1.25, "resumable": True, "note": None},
        created=1_767_225_600.0,
    )


@pytest.fixture
def home_with(tmp_path: Path) -> Iterator[Callable[..., Host]]:
    """``home_with(alerts_table, environ={...})``: a real corral home opened as its writer (store,
    engine, alerting, plugins), fresh."""
    opened: list[Any] = []

    def make(alerts: dict[str, Any], *, environ: dict[str, str] | None = None, **top: Any) -> Host:
        data = {"corral": {"home": str(tmp_path / "home")}, "alerts": alerts, **top}
        config = parse_config(data, tmp_path / "corral.toml", environ or {})
        context = host(config, echo=None)
        opened.append(context)
        return context.__enter__()

    yield make
    for context in reversed(opened):
        context.__exit__(None, None, None)
