"""The webhook sink: a JSON POST, as corral's own document or in Slack's or Discord's format.

``format = "json"`` posts :meth:`Alert.to_dict`; ``"slack"`` an incoming-webhook message
(``text`` for notifications plus Block Kit ``blocks``); ``"discord"`` an execute-webhook
body (one embed, mentions disabled so alert text cannot ping ``@everyone``). A waiting
approval's signed link is in each: ``links.approval`` in the JSON, a button in Slack, the
embed's URL in Discord. The URL is
a secret either way (Slack and Discord URLs are credentials); errors show only its
scheme and host.
"""

from __future__ import annotations

import json
import ssl
from typing import Any, ClassVar

from corral.alerts import Alert, Settings, Severity, Sink
from corral.plugins.alert_sinks import _http
from corral.plugins.alert_sinks._text import clip, details, headline, iso_time, one_line, without_controls
from corral.secrets import redact_url

FORMATS = ("json", "slack", "discord")
_EMOJI = {Severity.INFO: ":information_source:", Severity.WARNING: ":warning:", Severity.CRITICAL: ":rotating_light:"}
_COLOR = {Severity.INFO: 0x3498DB, Severity.WARNING: 0xF1C40F, Severity.CRITICAL: 0xE74C3C}
_RESOLVED_COLOR = 0x2ECC71
_SLACK_FIELDS = 10  # Slack's limit per section block
_DISCORD_FIELDS = 20  # with the caps below, an embed stays under Discord's 6000-character total


def _slack_escape(text: str) -> str:
    """Slack mrkdwn reserves ``& < >``; escaped, alert text cannot form links or mentions."""
    return text.replace("&", "&amp;").replace("<", "&lt;").replace(">", "&gt;")


def slack_payload(alert: Alert) -> dict[str, Any]:
    """A Slack incoming-webhook message for ``alert``."""
    emoji = ":white_check_mark:" if alert.resolved else _EMOJI[alert.severity]
    blocks: list[dict[str, Any]] = [
        {"type": "header", "text": {"type": "plain_text", "text": headline(alert, 150), "emoji": True}}
    ]
    if alert.body:
        body = _slack_escape(clip(without_controls(alert.body), 2900))
        blocks.append({"type": "section", "text": {"type": "mrkdwn", "text": body}})
    pairs = details(alert)
    if pairs:
        shown = [
            {"type": "mrkdwn", "text": f"*{_slack_escape(one_line(name, 100))}*\n{_slack_escape(one_line(value, 500))}"}
            for name, value in pairs[:_SLACK_FIELDS]
        ]
        blocks.append({"type": "section", "fields": shown})
    if "approval" in alert.links:
        button = {"type": "button", "text": {"type": "plain_text", "text": "Approve or deny"}}
        blocks.append({"type": "actions", "elements": [{**button, "url": alert.links["approval"]}]})
    context = f"corral · {alert.severity.value} · {iso_time(alert.created)} · alert {alert.id}"
    if len(pairs) > _SLACK_FIELDS:
        context += f" · {len(pairs) - _SLACK_FIELDS} more fields not shown"
    blocks.append({"type": "context", "elements": [{"type": "mrkdwn", "text": _slack_escape(context)}]})
    return {"text": _slack_escape(f"{emoji} {headline(alert, 300)}"), "blocks": blocks}


def discord_payload(alert: Alert) -> dict[str, Any]:
    """A Discord execute-webhook body for ``alert``."""
    pairs = details(alert)
    embed: dict[str, Any] = {
        "title": headline(alert, 256),
        "color": _RESOLVED_COLOR if alert.resolved else _COLOR[alert.severity],
        "timestamp": iso_time(alert.created),
        "footer": {"text": f"corral · {alert.severity.value} · alert {alert.id}"},
    }
    if alert.body:
        embed["description"] = clip(without_controls(alert.body), 2000)
    if "approval" in alert.links:
        embed["url"] = alert.links["approval"]
    if pairs:
        embed["fields"] = [
            {"name": one_line(name, 50) or "-", "value": one_line(value, 100) or "-", "inline": True}
            for name, value in pairs[:_DISCORD_FIELDS]
        ]
    return {"embeds": [embed], "allowed_mentions": {"parse": []}}


class WebhookSink(Sink):
    """POSTs each alert as JSON to ``url``.

    Config: ``url`` (required, secret), ``format`` (``"json"``, ``"slack"``, ``"discord"``;
    default ``"json"``), ``headers`` (extra headers; values are secret), ``ca_file``,
    ``timeout`` (default 10 s).
    """

    kind: ClassVar[str] = "webhook"

    def _configure(self, settings: Settings) -> None:
        self.url = settings.secret_url("url", "the webhook URL")
        self.format = settings.choice("format", FORMATS, "json")
        self.headers = settings.secret_headers("headers")
        self.tls_context: ssl.SSLContext = settings.tls_context("ca_file")

    def target(self) -> str:
        return redact_url(self.url.reveal())

    def payload(self, alert: Alert) -> dict[str, Any]:
        """The JSON document posted for ``alert``."""
        if self.format == "slack":
            return slack_payload(alert)
        if self.format == "discord":
            return discord_payload(alert)
        return alert.to_dict()

    async def _send(self, alert: Alert) -> None:
        content = json.dumps(self.payload(alert), ensure_ascii=False).encode("utf-8")
        headers = {"Content-Type": "application/json", **{k: v.reveal() for k, v in self.headers.items()}}
        failure = await _http.post(
            self.url.reveal(),
            content=content,
            headers=headers,
            timeout=self.timeout,
            verify=self.tls_context,
            shown_url=self.target(),
        )
        if failure is not None:
            raise self._error(failure.message, retryable=failure.retryable, retry_after=failure.retry_after)
