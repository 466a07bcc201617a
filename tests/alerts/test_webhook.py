"""The webhook sink against a real HTTP receiver on 127.0.0.1: exact payloads, failures, timeouts, secrets."""

from __future__ import annotations

import asyncio
import dataclasses
import json
import ssl
import time
from collections.abc import Callable
from pathlib import Path

import pytest

from corral.alerts import Alert, Severity, SinkError
from corral.plugins.alert_sinks.webhook import WebhookSink

from .receivers import HANG, HTTPReceiver, Reply, assert_secret_free

SECRET = "T0PSECRET-webhook-path"
Receiver = Callable[..., HTTPReceiver]


def _deliver(sink: WebhookSink, alert: Alert) -> SinkError | None:
    try:
        asyncio.run(sink.deliver(alert))
    except SinkError as exc:
        return exc
    return None


def test_json_format_posts_the_alert_dict(http_receiver: Receiver, alert: Alert) -> None:
    receiver = http_receiver()
    sink = WebhookSink({"url": receiver.url(f"/hooks/{SECRET}"), "headers": {"Authorization": "Bearer tok"}})
    assert _deliver(sink, alert) is None
    [request] = receiver.requests
    assert request.path == f"/hooks/{SECRET}"
    assert request.headers["content-type"] == "application/json"
    assert request.headers["authorization"] == "Bearer tok"
    assert request.headers["user-agent"].startswith("corral/")
    assert json.loads(request.body) == alert.to_dict()


def test_slack_format(http_receiver: Receiver, alert: Alert) -> None:
    receiver = http_receiver()
    assert _deliver(WebhookSink({"url": receiver.url("/slack"), "format": "slack"}), alert) is None
    assert json.loads(receiver.requests[0].body) == {
        "text": ':rotating_light: CRITICAL: Run "nightly" failed\\ badly Bcc: evil@example.com',
        "blocks": [
            {
                "type": "header",
                "text": {
                    "type": "plain_text",
                    "text": 'CRITICAL: Run "nightly" failed\\ badly Bcc: evil@example.com',
                    "emoji": True,
                },
            },
            {
                "type": "section",
                "text": {
                    "type": "mrkdwn",
                    "text": "Traceback:\n  boom &lt;@everyone&gt; &amp; \"quotes\" 'single' café ☕",
                },
            },
            {
                "type": "section",
                "fields": [
                    {"type": "mrkdwn", "text": "*agent*\nnightly"},
                    {"type": "mrkdwn", "text": "*run*\nrun-123"},
                    {"type": "mrkdwn", "text": "*attempt*\n3"},
                    {"type": "mrkdwn", "text": "*cost_usd*\n1.25"},
                    {"type": "mrkdwn", "text": "*resumable*\ntrue"},
                    {"type": "mrkdwn", "text": "*note*\n-"},
                ],
            },
            {
                "type": "context",
                "elements": [
                    {"type": "mrkdwn", "text": f"corral · critical · 2026-01-01T00:00:00Z · alert {alert.id}"}
                ],
            },
        ],
    }


def test_slack_caps_fields_at_ten(http_receiver: Receiver) -> None:
    receiver = http_receiver()
    alert = Alert(key="k", severity=Severity.INFO, title="many", fields={f"f{i}": i for i in range(14)})
    assert _deliver(WebhookSink({"url": receiver.url(), "format": "slack"}), alert) is None
    blocks = json.loads(receiver.requests[0].body)["blocks"]
    assert [b["type"] for b in blocks] == ["header", "section", "context"]
    assert len(blocks[1]["fields"]) == 10
    assert blocks[2]["elements"][0]["text"].endswith("4 more fields not shown")


def test_discord_format(http_receiver: Receiver, alert: Alert) -> None:
    receiver = http_receiver([Reply(204, b"")])
    sink = WebhookSink({"url": receiver.url(), "format": "discord"})
    assert _deliver(sink, alert) is None
    assert json.loads(receiver.requests[0].body) == {
        "embeds": [
            {
                "title": 'CRITICAL: Run "nightly" failed\\ badly Bcc: evil@example.com',
                "color": 0xE74C3C,
                "timestamp": "2026-01-01T00:00:00Z",
                "footer": {"text": f"corral · critical · alert {alert.id}"},
                "description": alert.body,
                "fields": [
                    {"name": "agent", "value": "nightly", "inline": True},
                    {"name": "run", "value": "run-123", "inline": True},
                    {"name": "attempt", "value": "3", "inline": True},
                    {"name": "cost_usd", "value": "1.25", "inline": True},
                    {"name": "resumable", "value": "true", "inline": True},
                    {"name": "note", "value": "-", "inline": True},
                ],
            }
        ],
        "allowed_mentions": {"parse": []},
    }
    assert _deliver(sink, dataclasses.replace(alert, resolved=True)) is None
    assert json.loads(receiver.requests[1].body)["embeds"][0]["color"] == 0x2ECC71


@pytest.mark.parametrize(
    ("reply", "retryable", "retry_after", "text"),
    [
        (Reply(429, b"rate limited", {"Retry-After": "7"}), True, 7.0, "answered 429: rate limited; will retry"),
        (Reply(503, b"down for maintenance"), True, None, "answered 503: down for maintenance; will retry"),
        (Reply(500, b""), True, None, "answered 500: (empty body); will retry"),
        (Reply(404, b"no_team"), False, None, "answered 404: no_team; check the URL, the credentials"),
        (Reply(400, b"invalid_payload\n" + b"x" * 5000), False, None, "answered 400: invalid_payload xxx"),
        (Reply(301, b"", {"Location": "https://elsewhere.example"}), False, None, "answered 301"),
    ],
)
def test_failures_are_classified(
    http_receiver: Receiver, alert: Alert, reply: Reply, retryable: bool, retry_after: float | None, text: str
) -> None:
    receiver = http_receiver([reply])
    error = _deliver(WebhookSink({"url": receiver.url(f"/{SECRET}")}), alert)
    assert error is not None
    assert (error.retryable, error.retry_after) == (retryable, retry_after)
    assert f"alert sink [alerts.webhook] (webhook to http://127.0.0.1:{receiver.port}): " in str(error)
    assert text in str(error)
    assert len(str(error)) < 400  # a short excerpt, not the whole body
    assert_secret_free(error, SECRET)


def test_a_body_echoing_the_secret_url_is_scrubbed(http_receiver: Receiver, alert: Alert) -> None:
    receiver = http_receiver()
    url = receiver.url(f"/hooks/{SECRET}")
    receiver.script(Reply(403, f"forbidden: {url} and /hooks/{SECRET}".encode()))
    error = _deliver(WebhookSink({"url": url}), alert)
    shown = "[redacted:alerts.webhook.url]"
    assert error is not None and f"answered 403: forbidden: {shown} and {shown}; check" in str(error)
    assert_secret_free(error, SECRET)


def test_connection_refused_is_retryable(http_receiver: Receiver, alert: Alert) -> None:
    receiver = http_receiver()
    url = receiver.url(f"/{SECRET}")
    receiver.close()
    error = _deliver(WebhookSink({"url": url}), alert)
    assert error is not None and error.retryable
    assert f"could not reach http://127.0.0.1:{receiver.port}: ConnectError" in str(error)
    assert_secret_free(error, SECRET)


def test_hanging_receiver_is_cut_off_by_the_timeout(http_receiver: Receiver, alert: Alert) -> None:
    receiver = http_receiver([HANG])
    started = time.monotonic()
    error = _deliver(WebhookSink({"url": receiver.url(f"/{SECRET}"), "timeout": 0.5}), alert)
    assert time.monotonic() - started < 2
    assert error is not None and error.retryable
    assert "0.5s" in str(error)
    assert_secret_free(error, SECRET)


def test_https_with_ca_file(http_receiver: Receiver, alert: Alert, server_tls: ssl.SSLContext, ca_file: Path) -> None:
    receiver = http_receiver(tls=server_tls)
    assert _deliver(WebhookSink({"url": receiver.url(f"/{SECRET}"), "ca_file": str(ca_file)}), alert) is None
    assert json.loads(receiver.requests[0].body)["id"] == alert.id
    error = _deliver(WebhookSink({"url": receiver.url(f"/{SECRET}")}), alert)  # default roots: not trusted
    assert error is not None and not error.retryable
    assert "TLS certificate was not trusted" in str(error) and "set ca_file" in str(error)
    assert_secret_free(error, SECRET)
