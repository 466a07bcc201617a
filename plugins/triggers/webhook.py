"""The built-in webhook trigger: each good ``POST`` to its path on the daemon's webhook
listener (:mod:`corral.schedule.listener`) asks for a run, with the JSON body as
``ctx.input``. The listener checks the method, path, token and size; the trigger owns
its path and token.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from corral.schedule.listener import WebhookServer
from corral.schedule.triggers import BuildContext, EventTrigger, TriggerEnv
from corral.secrets import Secret

MIN_TOKEN = 16
"""The shortest token a webhook trigger accepts."""


class WebhookTrigger(EventTrigger):
    """Fires on each good ``POST`` to its path; the JSON body becomes ``ctx.input``."""

    def __init__(self, path: str, token: Secret, max_bytes: int) -> None:
        self.path = path
        self._token = token
        self.max_bytes = max_bytes
        self._server: WebhookServer | None = None

    def __repr__(self) -> str:
        return f"WebhookTrigger(path={self.path!r}, max_bytes={self.max_bytes})"

    def describe(self) -> str:
        return f"webhook POST {self.path}"

    async def start(self, env: TriggerEnv) -> None:
        if env.webhooks is None:
            raise RuntimeError("no webhook listener: set [schedule] webhook_port")
        env.webhooks.add(self.path, self._token, self.max_bytes, env.fire, env.agent)
        self._server = env.webhooks

    async def stop(self) -> None:
        if self._server is not None:
            self._server.remove(self.path)


def webhook_factory(settings: Mapping[str, Any], context: BuildContext) -> WebhookTrigger:
    """``type = "webhook"``: ``token_env`` (the variable holding its secret token), optional
    ``path`` (default ``/hooks/AGENT``) and ``max_bytes`` (default ``[schedule] webhook_max_bytes``)."""
    table = context.reader(settings)
    path = table.text("path", f"/hooks/{context.agent}")
    if table.ok("path") and (not path.startswith("/") or "?" in path):
        table.fail("path", f'{path!r} must start with "/" and have no query, e.g. "/hooks/digest"')
    variable = table.required_text("token_env", '"DIGEST_HOOK_TOKEN" (the variable holding its secret token)')
    value = context.environ.get(variable, "") if table.ok("token_env") else ""
    if table.ok("token_env") and len(value) < MIN_TOKEN:
        state = "is not set" if not value else f"holds fewer than {MIN_TOKEN} characters"
        table.fail("token_env", f"${variable} {state}; put a long random token in it (openssl rand -hex 32)")
    default = getattr(context.settings, "webhook_max_bytes", 1 << 20)
    max_bytes = table.integer("max_bytes", default, "give the largest payload accepted, in bytes")
    table.finish()
    return WebhookTrigger(path, Secret(value, variable), max_bytes)
