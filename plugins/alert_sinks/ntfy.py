"""The ntfy sink: a push notification through an ntfy server (ntfy.sh or self-hosted).

Each alert is a POST to ``{server}/{topic}``: the body is the message, and ``Title``,
``Priority`` and ``Tags`` headers carry the rest (and, for a waiting approval, ``Actions``: Open,
Approve and Deny buttons on its signed link). HTTP headers are ASCII, so a title
or tag with other characters is sent as an RFC 2047 encoded word, which ntfy decodes.
On a public server the topic name is the only thing keeping others from reading or
posting, so it is handled as a secret like the access token.
"""

from __future__ import annotations

import base64
import re
import ssl
from typing import ClassVar

from corral.alerts import Alert, Settings, Severity, Sink
from corral.plugins.alert_sinks import _http
from corral.plugins.alert_sinks._text import headline, one_line, plain_text
from corral.secrets import Secret, redact_url

PRIORITY = {Severity.INFO: "3", Severity.WARNING: "4", Severity.CRITICAL: "5"}
"""ntfy priority per severity: default, high, max. A resolved alert is sent at 2 (low)."""

TAGS = {Severity.INFO: "information_source", Severity.WARNING: "warning", Severity.CRITICAL: "rotating_light"}
"""ntfy shows these tags as emoji before the title."""

_TOPIC = re.compile(r"^[-_A-Za-z0-9]{1,64}$")  # ntfy's own rule for topic names


def header_text(text: str) -> str:
    """``text`` as an ASCII header value: unchanged if it is ASCII, else an RFC 2047 word."""
    if text.isascii():
        return text
    return f"=?UTF-8?B?{base64.b64encode(text.encode('utf-8')).decode('ascii')}?="


def approval_actions(url: str) -> str:
    """ntfy's ``Actions`` header for a waiting approval: open its page, or approve or deny
    it from the notification (an ``http`` action: the ntfy app POSTs to the signed link,
    with the ``X-Corral-Action`` header the console asks of a button). The link's URL
    holds no comma or semicolon, which the header's simple format would split on."""
    buttons = [f"view, Open, {url}"]
    for decision, label in (("approve", "Approve"), ("deny", "Deny")):
        buttons.append(f"http, {label}, {url}, method=POST, headers.X-Corral-Action={decision}, clear=true")
    return "; ".join(buttons)


class NtfySink(Sink):
    """Publishes each alert to an ntfy topic.

    Config: ``topic`` (required, secret), ``server`` (default ``"https://ntfy.sh"``),
    ``token`` (access token, sent as a bearer token), ``tags`` (extra tags), ``ca_file``,
    ``timeout`` (default 10 s).
    """

    kind: ClassVar[str] = "ntfy"

    def _configure(self, settings: Settings) -> None:
        self.server = settings.text("server", "https://ntfy.sh").rstrip("/")
        if not re.match(r"^https?://[^/?#@\s]+(/[^?#@\s]*)?$", self.server):
            shown = "(not shown: it holds credentials)" if "@" in self.server else repr(self.server)
            settings.fail(
                "server", f"{shown} is not an http:// or https:// server address; credentials go in token, not here"
            )
        self.topic = settings.secret("topic", "the topic name")
        if settings.ok("topic") and not _TOPIC.match(self.topic.reveal()):
            settings.fail("topic", "may hold only letters, digits, '-' and '_', at most 64 (not shown: it is a secret)")
        self.token: Secret | None = settings.optional_secret("token", "an ntfy access token")
        self.tags = settings.optional_text_list("tags")
        self.tls_context: ssl.SSLContext = settings.tls_context("ca_file")

    def target(self) -> str:
        return redact_url(self.server)

    def headers(self, alert: Alert) -> dict[str, str]:
        """The ``Title``, ``Priority``, ``Tags`` (and ``Authorization``) headers for ``alert``."""
        tags = ["white_check_mark" if alert.resolved else TAGS[alert.severity], "corral", *self.tags]
        headers = {
            "Title": header_text(headline(alert, 250)),
            "Priority": "2" if alert.resolved else PRIORITY[alert.severity],
            "Tags": header_text(",".join(one_line(t, 60).replace(",", " ") for t in tags)),
            "Content-Type": "text/plain; charset=utf-8",
        }
        if "approval" in alert.links:
            headers["Actions"] = approval_actions(alert.links["approval"])
        if self.token is not None:
            headers["Authorization"] = f"Bearer {self.token.reveal()}"
        return headers

    async def _send(self, alert: Alert) -> None:
        failure = await _http.post(
            f"{self.server}/{self.topic.reveal()}",
            content=plain_text(alert).encode("utf-8"),
            headers=self.headers(alert),
            timeout=self.timeout,
            verify=self.tls_context,
            shown_url=self.target(),
        )
        if failure is not None:
            raise self._error(failure.message, retryable=failure.retryable, retry_after=failure.retry_after)
