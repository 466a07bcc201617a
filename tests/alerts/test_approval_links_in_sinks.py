"""A waiting approval's signed link in every sink that can carry it, against real receivers
on 127.0.0.1: ntfy's Open, Approve and Deny buttons, the webhook's JSON, Slack's button,
Discord's embed URL, the email's body."""

from __future__ import annotations

import asyncio
import dataclasses
import json
from collections.abc import Callable

import pytest

from corral.alerts import Alert, Severity
from corral.alerts.sinks.base import Sink
from corral.plugins.alert_sinks.mail import EmailSink
from corral.plugins.alert_sinks.ntfy import NtfySink
from corral.plugins.alert_sinks.webhook import WebhookSink

from .receivers import HTTPReceiver, SMTPReceiver

LINK = "https://mini.tailnet.example/link/7f2a9c01be?until=1767229200&sig=Zm9vYmFyLWJhei1xdXV4LXNpZ25hdHVyZQ"


@pytest.fixture
def waiting() -> Alert:
    return Alert(
        key="approval:7f2a9c01be",
        severity=Severity.WARNING,
        title="agent 'deployer' waits for approval 7f2a9c01be",
        agent="deployer",
        run_id="run-1",
        fields={"approval": "7f2a9c01be"},
        links={"approval": LINK},
        created=1_767_225_600.0,
    )


def _deliver(sink: Sink, alert: Alert) -> None:
    asyncio.run(sink.deliver(alert))


def test_ntfy_offers_open_approve_and_deny_buttons(http_receiver: Callable[..., HTTPReceiver], waiting: Alert) -> None:
    receiver = http_receiver()
    _deliver(NtfySink({"server": receiver.url(), "topic": "corral-topic"}), waiting)
    [request] = receiver.requests
    view, approve, deny = (part.strip() for part in request.headers["actions"].split(";"))
    assert view == f"view, Open, {LINK}"
    assert approve == f"http, Approve, {LINK}, method=POST, headers.X-Corral-Action=approve, clear=true"
    assert deny == f"http, Deny, {LINK}, method=POST, headers.X-Corral-Action=deny, clear=true"
    assert f"approve or deny: {LINK}" in request.body.decode()
    _deliver(NtfySink({"server": receiver.url(), "topic": "corral-topic"}), dataclasses.replace(waiting, links={}))
    assert "actions" not in receiver.requests[1].headers, "no link, no buttons"


@pytest.mark.parametrize("format", ["json", "slack", "discord"])
def test_webhook_formats_carry_the_link(
    http_receiver: Callable[..., HTTPReceiver], waiting: Alert, format: str
) -> None:
    receiver = http_receiver()
    _deliver(WebhookSink({"url": receiver.url("/hook"), "format": format}), waiting)
    sent = json.loads(receiver.requests[0].body)
    if format == "json":
        assert sent["links"] == {"approval": LINK}
    elif format == "slack":
        [actions] = [block for block in sent["blocks"] if block["type"] == "actions"]
        assert actions["elements"][0]["url"] == LINK and actions["elements"][0]["type"] == "button"
    else:
        assert sent["embeds"][0]["url"] == LINK


def test_email_carries_the_link(smtp_receiver: Callable[..., SMTPReceiver], waiting: Alert) -> None:
    receiver = smtp_receiver(tls="none")
    config = {"host": "127.0.0.1", "port": receiver.port, "tls": "none", "from": "c@example.org", "to": "o@example.org"}
    _deliver(EmailSink(config), waiting)
    [(_, message)] = receiver.messages
    assert f"approve or deny: {LINK}" in message.get_content()
