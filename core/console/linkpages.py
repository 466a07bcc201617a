"""The pages a signed approval link opens (:mod:`corral.console.links`): no session needed.

``GET /link/ID?until=..&sig=..`` shows the request and one form: Approve, or Deny with an
optional reason. A GET never decides anything, so a chat app that fetches the link for a
preview approves nothing. The form's POST carries a CSRF token bound to a cookie the page
set. ntfy's Approve and Deny buttons POST to the same URL with an ``X-Corral-Action``
header instead: a header no other site's page can send without the console's consent
(a CORS preflight it never grants). Every refusal (not genuine, expired, used, decided) is
a page that says which and what to do; links that are not genuine count as failed logins
towards the same limit.
"""

from __future__ import annotations

import secrets
import time
from collections.abc import Awaitable, Callable
from functools import partial
from pathlib import Path
from typing import Any

import jinja2
from starlette.concurrency import run_in_threadpool
from starlette.requests import Request
from starlette.responses import FileResponse, HTMLResponse, PlainTextResponse, Response
from starlette.routing import Route

from corral.console import reads
from corral.console.auth import Logins
from corral.console.guard import SAFE_METHODS
from corral.console.links import LINK_PREFIX, Links
from corral.run.approvals import PENDING, Approvals, settled

Ops = Callable[[dict[str, Any]], Awaitable[dict[str, Any]]]
COOKIE = "corral_link"
"""Holds the nonce a link page's CSRF token is bound to."""
ACTION_HEADER = "x-corral-action"
"""ntfy's buttons send ``approve`` or ``deny`` here."""
BY_PAGE = "approval link"
BY_BUTTON = "approval link (notification button)"
DECISIONS = ("approve", "deny")
STYLESHEET = LINK_PREFIX + "style/console.css"
"""Two segments: no approval id matches it."""


class LinkRefused(Exception):
    """A link that decides nothing: the status and the sentence shown."""

    def __init__(self, status: int, text: str) -> None:
        super().__init__(text)
        self.status = status
        self.text = text


class LinkPages:
    """The routes under ``/link/``."""

    def __init__(
        self,
        links: Callable[[], Links | None],
        gate: Logins,
        source: Callable[[], reads.StoreView],
        ops: Ops,
        env: jinja2.Environment,
        secure: bool,
    ) -> None:
        self.links = links
        self.gate = gate
        self.source = source
        self.ops = ops
        self.env = env
        self.secure = secure

    def routes(self) -> list[Route]:
        return [
            Route(STYLESHEET, self.stylesheet),
            Route(LINK_PREFIX + "{approval}", self.page, methods=["GET", "POST"]),
        ]

    async def stylesheet(self, request: Request) -> Response:
        """The console's stylesheet where a phone without a session may fetch it (``/static/``
        needs a session)."""
        return FileResponse(Path(__file__).parent / "static" / "console.css", media_type="text/css")

    async def page(self, request: Request) -> Response:
        button = request.headers.get(ACTION_HEADER)
        try:
            links, record = await self._check(request)
            if request.method in SAFE_METHODS:  # a HEAD shows the page like a GET and decides nothing
                return self._show(request, links, record)
            return await self._decide(request, links, record, button)
        except LinkRefused as refused:
            if button is not None:
                return PlainTextResponse(refused.text, refused.status)
            return self._render("link.html", refused.status, refusal=refused.text, record=None, csrf="")

    async def _check(self, request: Request) -> tuple[Links, dict[str, Any]]:
        """The link's approval, still waiting; LinkRefused saying why not."""
        links = self.links()
        if links is None:
            raise LinkRefused(503, "Approval links are off: the console could not read its key (see corral.log).")
        approval = request.path_params["approval"]
        until, sig = request.query_params.get("until", ""), request.query_params.get("sig", "")
        if not links.genuine(approval, until, sig):
            if self.gate.failed("approval link"):
                raise LinkRefused(
                    429, "Too many links that were not genuine were tried; wait a minute and open yours again."
                )
            raise LinkRefused(
                403,
                "This link is not genuine: it was changed, or another corral made it. "
                "Open the link from the alert as it came, or decide in the console (`corral console`).",
            )
        zone = self.source().config.zone
        if time.time() >= int(until):
            raise LinkRefused(
                410, f"This link expired at {reads.when(int(until), zone)}, with the approval's deadline."
            )
        record = await run_in_threadpool(_approval, self.source(), approval)
        if record is None:
            raise LinkRefused(404, f"There is no approval request {approval} (retention may have removed it).")
        if record.get("link_used"):
            raise LinkRefused(410, f"This link was used already: approval {approval} is {settled(record)}.")
        if record["state"] != PENDING:
            raise LinkRefused(409, f"Approval {approval} is {settled(record)}; nothing changed.")
        return links, record

    def _show(self, request: Request, links: Links, record: dict[str, Any]) -> Response:
        nonce = request.cookies.get(COOKIE) or secrets.token_urlsafe(24)  # a second tab keeps the first's form good
        response = self._render("link.html", 200, record=record, csrf=links.csrf(nonce), refusal="")
        response.set_cookie(
            COOKIE,
            nonce,
            max_age=max(1, int(record["expires"] - time.time())),
            path=request.url.path,
            httponly=True,
            samesite="strict",
            secure=self.secure,
        )
        return response

    async def _decide(self, request: Request, links: Links, record: dict[str, Any], button: str | None) -> Response:
        form = request.state.form
        if button is not None:
            decision, reason, by = button, "", BY_BUTTON
        else:
            if not links.csrf_ok(request.cookies.get(COOKIE), form.get("csrf")):
                raise LinkRefused(403, "Refused: this form's CSRF token is missing or stale; open the link again.")
            decision, reason, by = form.get("decision", ""), form.get("reason", "").strip(), BY_PAGE
        if decision not in DECISIONS:
            raise LinkRefused(400, f"Say approve or deny, not {decision[:40]!r}.")
        if decision == "deny" and not reason:
            reason = f"denied through an {by}"
        answer = await self.ops({"op": decision, "id": record["id"], "reason": reason, "by": by, "link": True})
        if not answer.get("ok"):
            raise LinkRefused(409, str(answer.get("error", "refused")))
        done = answer["approval"]
        text = f"{done['state'].capitalize()}: {done['agent']} may {'' if decision == 'approve' else 'not '}"
        text += f"call {done['tool']}; its run goes on."
        if button is not None:
            return PlainTextResponse(text)
        return self._render("link.html", 200, record=None, csrf="", refusal="", done=text)

    def _render(self, name: str, status: int, **values: Any) -> HTMLResponse:
        zone = self.source().config.zone
        context = {"when": partial(reads.when, zone=zone), "done": "", "live": "", "stylesheet": STYLESHEET, **values}
        return HTMLResponse(self.env.get_template(name).render(context), status)


def _approval(src: reads.StoreView, approval: str) -> dict[str, Any] | None:
    with src.store.read() as txn:
        return Approvals(src.records).get(txn, approval)
