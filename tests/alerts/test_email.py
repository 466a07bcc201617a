"""The email sink against a real aiosmtpd server on 127.0.0.1, over STARTTLS and implicit TLS."""

from __future__ import annotations

import asyncio
import ssl
import time
from collections.abc import Callable
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest

from corral.alerts import Alert, SinkError
from corral.plugins.alert_sinks.mail import EmailSink

from .receivers import SilentTCPServer, SMTPReceiver, assert_secret_free, free_port

pytestmark = pytest.mark.filterwarnings("ignore:Requiring AUTH while not requiring TLS:UserWarning")

PASSWORD = "pa55-W0RD-secret"
Receiver = Callable[..., SMTPReceiver]


def _config(port: int, **overrides: Any) -> dict[str, Any]:
    return {
        "host": "127.0.0.1",
        "port": port,
        "username": "ops",
        "password": PASSWORD,
        "from": "corral <corral@example.org>",
        "to": ["ops@example.org", "oncall@example.org"],
        **overrides,
    }


def _deliver(sink: EmailSink, alert: Alert) -> SinkError | None:
    try:
        asyncio.run(sink.deliver(alert))
    except SinkError as exc:
        return exc
    return None


def test_starttls_with_login_delivers_the_exact_message(
    smtp_receiver: Receiver, server_tls: ssl.SSLContext, ca_file: Path, alert: Alert
) -> None:
    receiver = smtp_receiver(tls="starttls", context=server_tls, login=("ops", PASSWORD))
    sink = EmailSink(_config(receiver.port, ca_file=str(ca_file), subject_prefix="[home]"))
    assert _deliver(sink, alert) is None
    assert receiver.logins == [("ops", PASSWORD)]
    [(envelope, message)] = receiver.messages
    assert envelope.mail_from == "corral@example.org"
    assert envelope.rcpt_tos == ["ops@example.org", "oncall@example.org"]  # no Bcc smuggled in by the title
    assert message["Subject"] == '[home] CRITICAL: Run "nightly" failed\\ badly Bcc: evil@example.com'
    assert message["From"] == "corral <corral@example.org>"
    assert message["To"] == "ops@example.org, oncall@example.org"
    assert message["Bcc"] is None
    assert message["Date"].datetime == datetime(2026, 1, 1, tzinfo=UTC)
    assert message["Message-ID"].endswith("@example.org>")
    assert (message["X-Corral-Alert-Id"], message["X-Corral-Severity"]) == (alert.id, "critical")
    assert message.get_content().replace("\r\n", "\n") == (  # SMTP carries CRLF line ends
        f"{alert.body}\n\nagent: nightly\nrun: run-123\nattempt: 3\ncost_usd: 1.25\nresumable: true\nnote: -\n"
        f"severity: critical\nalert: {alert.id} (run-failed:nightly)\nraised: 2026-01-01T00:00:00Z\n"
    )


def test_implicit_tls(smtp_receiver: Receiver, server_tls: ssl.SSLContext, ca_file: Path, alert: Alert) -> None:
    receiver = smtp_receiver(tls="tls", context=server_tls, login=("ops", PASSWORD))
    assert _deliver(EmailSink(_config(receiver.port, tls="tls", ca_file=str(ca_file))), alert) is None
    assert receiver.messages[0][1]["Subject"].startswith("[corral] CRITICAL: ")


def test_plain_local_relay_without_login(smtp_receiver: Receiver, alert: Alert) -> None:
    receiver = smtp_receiver(tls="none")
    config = _config(receiver.port, tls="none", to="root@localhost.localdomain")
    del config["username"], config["password"]
    assert _deliver(EmailSink(config), alert) is None
    assert receiver.messages[0][0].rcpt_tos == ["root@localhost.localdomain"]


def test_wrong_password_is_not_retryable_and_never_shown(
    smtp_receiver: Receiver, server_tls: ssl.SSLContext, ca_file: Path, alert: Alert
) -> None:
    receiver = smtp_receiver(tls="starttls", context=server_tls, login=("ops", "the-right-one"))
    error = _deliver(EmailSink(_config(receiver.port, ca_file=str(ca_file))), alert)
    assert error is not None and not error.retryable
    assert "refused the login for 'ops' (535" in str(error) and "check the username and password" in str(error)
    assert_secret_free(error, PASSWORD)
    assert receiver.messages == []


@pytest.mark.parametrize(
    ("replies", "retryable", "text"),
    [
        ({"rcpt_reply": "550 5.1.1 no such user"}, False, "refused the recipients (ops@example.org: 550"),
        ({"rcpt_reply": "451 4.3.0 try again later"}, True, "refused the recipients (ops@example.org: 451"),
        ({"data_reply": "554 5.7.1 rejected as spam"}, False, "the server answered 554 5.7.1 rejected as spam"),
        ({"data_reply": "452 4.3.1 out of storage"}, True, "the server answered 452 4.3.1 out of storage"),
    ],
)
def test_server_refusals_are_classified_by_reply_code(
    smtp_receiver: Receiver,
    server_tls: ssl.SSLContext,
    ca_file: Path,
    alert: Alert,
    replies: dict[str, str],
    retryable: bool,
    text: str,
) -> None:
    receiver = smtp_receiver(tls="starttls", context=server_tls, login=("ops", PASSWORD), **replies)
    error = _deliver(EmailSink(_config(receiver.port, ca_file=str(ca_file))), alert)
    assert error is not None and error.retryable is retryable
    assert text in str(error)
    assert_secret_free(error, PASSWORD)


def test_untrusted_certificate_is_not_retryable(
    smtp_receiver: Receiver, server_tls: ssl.SSLContext, alert: Alert
) -> None:
    receiver = smtp_receiver(tls="starttls", context=server_tls, login=("ops", PASSWORD))
    error = _deliver(EmailSink(_config(receiver.port)), alert)
    assert error is not None and not error.retryable
    assert "TLS certificate was not trusted" in str(error) and "set ca_file" in str(error)
    assert receiver.logins == []  # the password never went to an unverified server
    assert_secret_free(error, PASSWORD)


def test_starttls_not_offered_is_not_retryable(smtp_receiver: Receiver, ca_file: Path, alert: Alert) -> None:
    receiver = smtp_receiver(tls="none", login=("ops", PASSWORD))
    error = _deliver(EmailSink(_config(receiver.port, ca_file=str(ca_file))), alert)
    assert error is not None and not error.retryable
    assert "STARTTLS" in str(error) and "check tls and port" in str(error)
    assert receiver.logins == []
    assert_secret_free(error, PASSWORD)


def test_silent_server_is_cut_off_by_the_timeout(silent_server: SilentTCPServer, alert: Alert) -> None:
    started = time.monotonic()
    error = _deliver(EmailSink(_config(silent_server.port, timeout=0.5)), alert)
    assert time.monotonic() - started < 2
    assert error is not None and error.retryable
    assert_secret_free(error, PASSWORD)


def test_connection_refused_is_retryable(alert: Alert) -> None:
    error = _deliver(EmailSink(_config(free_port())), alert)
    assert error is not None and error.retryable
    assert "could not deliver" in str(error)
    assert_secret_free(error, PASSWORD)
