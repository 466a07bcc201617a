"""The ntfy sink against a real HTTP receiver on 127.0.0.1."""

from __future__ import annotations

import asyncio
import base64
import dataclasses
import time
from collections.abc import Callable

import pytest

from corral.alerts import Alert, Severity, SinkError
from corral.plugins.alert_sinks.ntfy import NtfySink

from .receivers import HANG, HTTPReceiver, Reply, assert_secret_free

TOPIC = "corral-Xy7Q2secret-topic"
TOKEN = "tk_0123456789abcdefSECRET"
Receiver = Callable[..., HTTPReceiver]


def _deliver(sink: NtfySink, alert: Alert) -> SinkError | None:
    try:
        asyncio.run(sink.deliver(alert))
    except SinkError as exc:
        return exc
    return None


def test_publishes_title_priority_tags_and_body(http_receiver: Receiver, alert: Alert) -> None:
    receiver = http_receiver()
    sink = NtfySink({"server": receiver.url().rstrip("/"), "topic": TOPIC, "token": TOKEN, "tags": ["home lab"]})
    assert _deliver(sink, alert) is None
    [request] = receiver.requests
    assert request.method == "POST" and request.path == f"/{TOPIC}"
    assert request.headers["title"] == 'CRITICAL: Run "nightly" failed\\ badly Bcc: evil@example.com'
    assert request.headers["priority"] == "5"
    assert request.headers["tags"] == "rotating_light,corral,home lab"
    assert request.headers["authorization"] == f"Bearer {TOKEN}"
    assert request.headers["content-type"] == "text/plain; charset=utf-8"
    assert request.body.decode() == (
        f"{alert.body}\n\nagent: nightly\nrun: run-123\nattempt: 3\ncost_usd: 1.25\nresumable: true\nnote: -\n"
        f"severity: critical\nalert: {alert.id} (run-failed:nightly)\nraised: 2026-01-01T00:00:00Z\n"
    )


@pytest.mark.parametrize(
    ("severity", "resolved", "priority", "tag"),
    [
        ("info", False, "3", "information_source"),
        ("warning", False, "4", "warning"),
        ("critical", True, "2", "white_check_mark"),
    ],
)
def test_priority_and_tag_follow_severity(
    http_receiver: Receiver, severity: str, resolved: bool, priority: str, tag: str
) -> None:
    receiver = http_receiver()
    alert = Alert(key="k", severity=Severity(severity), title="t", resolved=resolved)
    assert _deliver(NtfySink({"server": receiver.url(), "topic": TOPIC}), alert) is None
    headers = receiver.requests[0].headers
    assert (headers["priority"], headers["tags"]) == (priority, f"{tag},corral")
    assert "authorization" not in headers


def test_non_ascii_title_is_sent_as_an_rfc2047_word(http_receiver: Receiver, alert: Alert) -> None:
    receiver = http_receiver()
    sink = NtfySink({"server": receiver.url(), "topic": TOPIC})
    assert _deliver(sink, dataclasses.replace(alert, title="Café ☕ is out")) is None
    title = receiver.requests[0].headers["title"]
    assert title.startswith("=?UTF-8?B?") and title.endswith("?=")
    assert base64.b64decode(title[10:-2]).decode() == "CRITICAL: Café ☕ is out"


@pytest.mark.parametrize(
    ("reply", "retryable"),
    [
        (Reply(429, b'{"code":42901}', {"Retry-After": "30"}), True),
        (Reply(502, b"bad gateway"), True),
        (Reply(401, b'{"error":"unauthorized"}'), False),
        (Reply(403, f"no access to {TOPIC}".encode()), False),
    ],
)
def test_failures_are_classified_and_secret_free(
    http_receiver: Receiver, alert: Alert, reply: Reply, retryable: bool
) -> None:
    receiver = http_receiver([reply])
    error = _deliver(NtfySink({"server": receiver.url(), "topic": TOPIC, "token": TOKEN}), alert)
    assert error is not None and error.retryable is retryable
    assert f"answered {reply.status}" in str(error)
    assert_secret_free(error, TOPIC, TOKEN)


def test_hanging_server_is_cut_off_by_the_timeout(http_receiver: Receiver, alert: Alert) -> None:
    receiver = http_receiver([HANG])
    started = time.monotonic()
    error = _deliver(NtfySink({"server": receiver.url(), "topic": TOPIC, "token": TOKEN, "timeout": "0.5s"}), alert)
    assert time.monotonic() - started < 2
    assert error is not None and error.retryable
    assert_secret_free(error, TOPIC, TOKEN)


def test_unreachable_server_is_retryable(http_receiver: Receiver, alert: Alert) -> None:
    receiver = http_receiver()
    receiver.close()
    error = _deliver(NtfySink({"server": receiver.url(), "topic": TOPIC, "token": TOKEN}), alert)
    assert error is not None and error.retryable
    assert f"could not reach http://127.0.0.1:{receiver.port}" in str(error)
    assert_secret_free(error, TOPIC, TOKEN)
