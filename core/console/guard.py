"""The console's outer layer, in front of every route: a session or a 401, a CSRF token
on every action, and the security headers on every answer.

It is plain ASGI so that no route can be added without it: the app is only ever served
wrapped in :class:`Guard`. An action's body (a small urlencoded form) is read here, its
CSRF token checked, and handed on to the route already parsed.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable, MutableMapping
from http.cookies import SimpleCookie
from typing import Any
from urllib.parse import parse_qsl, urlsplit

from corral.console.auth import Logins
from corral.console.links import LINK_PREFIX

Scope = MutableMapping[str, Any]
Message = MutableMapping[str, Any]
Receive = Callable[[], Awaitable[Message]]
Send = Callable[[Message], Awaitable[None]]
App = Callable[[Scope, Receive, Send], Awaitable[None]]

COOKIE = "corral_session"
OPEN_PATHS = frozenset({"/login"})
"""Paths answered without a session: the login link itself (and signed approval links, under
:data:`corral.console.links.LINK_PREFIX`)."""
SAFE_METHODS = frozenset({"GET", "HEAD"})
MAX_FORM = 64 * 1024
"""Bytes an action's form may hold (a run's input, a reason)."""

CSP = (
    "default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self' data:; connect-src 'self'; "
    "form-action 'self'; frame-ancestors 'none'; base-uri 'none'"
)
HEADERS = [
    (b"content-security-policy", CSP.encode()),
    (b"x-content-type-options", b"nosniff"),
    (b"x-frame-options", b"DENY"),
    (b"referrer-policy", b"same-origin"),
    (b"cache-control", b"no-store"),
]
"""On every answer: no inline or foreign script, no framing, and no login link leaked in a Referer
to another site. ``same-origin``, not ``no-referrer``: under ``no-referrer`` a browser sends
``Origin: null`` with the console's own forms, and the same-origin check refuses them."""


class Guard:
    """Wraps the console's app: sessions, CSRF, headers."""

    def __init__(self, app: App, gate: Logins) -> None:
        self.app = app
        self.gate = gate

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            return
        send = _with_headers(send)
        if scope["path"] in OPEN_PATHS:
            await self.app(scope, receive, send)
            return
        headers = {k.decode("latin-1"): v.decode("latin-1") for k, v in scope["headers"]}
        state = scope.setdefault("state", {})
        if scope["path"].startswith(LINK_PREFIX):  # a signed link is its own credential and checks its own CSRF
            if scope["method"] not in SAFE_METHODS and not await _read_form(state, headers, receive, send):
                return
            await self.app(scope, receive, send)
            return
        session = self.gate.session(_cookie(headers.get("cookie", "")))
        if session is None:
            await _plain(
                send, 401, "Not logged in, or the session ended. Run `corral console` and open the link it prints."
            )
            return
        state["session"] = session
        if scope["method"] not in SAFE_METHODS:
            if not await _read_form(state, headers, receive, send):
                return
            if not session.csrf_ok(state["form"].get("csrf")):
                await _plain(send, 403, "Refused: the form's CSRF token is missing or stale; reload the page.")
                return
        await self.app(scope, receive, send)


async def _read_form(state: dict[str, Any], headers: dict[str, str], receive: Receive, send: Send) -> bool:
    """An action's form into ``state["form"]``; False once a refusal has been sent (another
    site's origin, a form too large)."""
    if not _same_origin(headers):
        await _plain(send, 403, "Refused: this action came from another site.")
        return False
    form = await _form(receive)
    if form is None:
        await _plain(send, 413, f"Refused: a form of more than {MAX_FORM} bytes.")
        return False
    state["form"] = form
    return True


def _cookie(header: str) -> str | None:
    jar: SimpleCookie = SimpleCookie()
    try:
        jar.load(header)
    except Exception:  # noqa: BLE001 - a malformed Cookie header is no session, not an error
        return None
    morsel = jar.get(COOKIE)
    return morsel.value if morsel is not None else None


def _same_origin(headers: dict[str, str]) -> bool:
    """An ``Origin`` header, when the browser sends one, names this console's own host."""
    origin = headers.get("origin")
    if origin is None:
        return True
    return urlsplit(origin).netloc == headers.get("host", "")


async def _form(receive: Receive) -> dict[str, str] | None:
    body = b""
    while True:
        message = await receive()
        body += message.get("body", b"")
        if len(body) > MAX_FORM:
            return None
        if not message.get("more_body", False):
            break
    return dict(parse_qsl(body.decode("utf-8", "replace"), keep_blank_values=True))


def _with_headers(send: Send) -> Send:
    async def sending(message: Message) -> None:
        if message["type"] == "http.response.start":
            message["headers"] = [*message.get("headers", []), *HEADERS]
        await send(message)

    return sending


async def _plain(send: Send, status: int, text: str) -> None:
    body = text.encode()
    headers = [(b"content-type", b"text/plain; charset=utf-8"), (b"content-length", str(len(body)).encode())]
    await send({"type": "http.response.start", "status": status, "headers": headers})
    await send({"type": "http.response.body", "body": body})
