"""The console's routes: pages read from the store, actions sent to the daemon's own
operations (the ones ``corral cancel``/``retry``/``approve``... use over the control
socket), and the live stream.

Every page is rendered on the server with Jinja2's autoescape on, so every string an agent
wrote (results, errors, tool arguments, model text, log fields) reaches the browser as
text, never as markup. The app is only served behind :class:`corral.console.guard.Guard`.
"""

from __future__ import annotations

import datetime as dt
import json
from collections.abc import Awaitable, Callable
from functools import partial
from pathlib import Path
from typing import Any

import jinja2
from starlette.applications import Starlette
from starlette.concurrency import run_in_threadpool
from starlette.requests import Request
from starlette.responses import HTMLResponse, PlainTextResponse, RedirectResponse, Response, StreamingResponse
from starlette.routing import Mount, Route
from starlette.staticfiles import StaticFiles

from corral.console import reads
from corral.console.auth import Logins
from corral.console.guard import COOKIE
from corral.console.live import Hub

HERE = Path(__file__).parent
Ops = Callable[[dict[str, Any]], Awaitable[dict[str, Any]]]
"""Sends one request to the daemon's operations and returns its first answer."""
FRAGMENT = "x-corral-fragment"
"""Header of the live script's refetch: only the page's changing part is rendered."""


def templates() -> jinja2.Environment:
    """The page templates, autoescaped (a test renders a ``<script>`` payload through each)."""
    env = jinja2.Environment(
        loader=jinja2.FileSystemLoader(HERE / "templates"),
        autoescape=True,
        undefined=jinja2.StrictUndefined,
        trim_blocks=True,
        lstrip_blocks=True,
    )
    env.filters.update(shown=reads.shown, took=_took, dollars=_dollars, tokens=_tokens)
    return env


def _took(start: float | None, end: float | None) -> str:
    if not start or not end:
        return "-"
    seconds = end - start
    return f"{seconds * 1000:.0f} ms" if seconds < 1 else f"{seconds:.1f} s"


def _dollars(tally: dict[str, Any] | None) -> str:
    return f"${int((tally or {}).get('cost_micro_usd', 0)) / 1_000_000:.4f}"


def _tokens(tally: dict[str, Any] | None) -> int:
    return int((tally or {}).get("input_tokens", 0)) + int((tally or {}).get("output_tokens", 0))


class Pages:
    """The routes of one console; ``source`` gives the store and the current config."""

    def __init__(
        self,
        gate: Logins,
        hub: Hub,
        source: Callable[[], reads.StoreView],
        ops: Ops,
        health: Callable[[], tuple[float, list[str]]],
        secure: bool,
    ) -> None:
        self.gate = gate
        self.hub = hub
        self.source = source
        self.ops = ops
        self.health = health
        self.secure = secure
        self.env = templates()

    def app(self) -> Starlette:
        return Starlette(
            routes=[
                Route("/login", self.login),
                Route("/logout", self.logout, methods=["POST"]),
                Route("/", self.overview),
                Route("/runs", self.runs),
                Route("/runs/{run}", self.run),
                Route("/runs/{run}/{action:str}", self.run_action, methods=["POST"]),
                Route("/agents/{agent}/{action:str}", self.agent_action, methods=["POST"]),
                Route("/approvals", self.approvals),
                Route("/approvals/{approval}/{action:str}", self.decide, methods=["POST"]),
                Route("/live", self.live),
                Mount("/static", StaticFiles(directory=HERE / "static"), name="static"),
            ]
        )

    # ------------------------------------------------------------------ pages

    def render(self, request: Request, name: str, status: int = 200, **values: Any) -> HTMLResponse:
        template = self.env.get_template(name)
        session = request.state.session
        zone = self.source().config.zone
        context = {"csrf": session.csrf, "path": request.url.path, "live": "", "when": partial(_when, zone=zone)}
        context.update(values)
        if request.headers.get(FRAGMENT) and "content" in template.blocks:
            html = "".join(template.blocks["content"](template.new_context(context)))
        else:
            html = template.render(context)
        return HTMLResponse(html, status)

    async def login(self, request: Request) -> Response:
        if self.gate.throttled():
            return PlainTextResponse("Too many failed logins; wait a minute and run `corral console` again.", 429)
        session = self.gate.login(request.query_params.get("token", ""))
        if session is None:
            return PlainTextResponse("This login link is used up or expired. Run `corral console` for a new one.", 401)
        response = RedirectResponse("/", 303)
        response.set_cookie(
            COOKIE,
            session.id,
            max_age=int(self.gate.session_max_age),
            httponly=True,
            samesite="strict",
            secure=self.secure,
        )
        return response

    async def logout(self, request: Request) -> Response:
        self.gate.logout(request.state.session)
        response = PlainTextResponse("Logged out.")
        response.delete_cookie(COOKIE)
        return response

    async def overview(self, request: Request) -> Response:
        started, protections = self.health()
        data = await run_in_threadpool(reads.overview, self.source(), started, protections)
        return self.render(request, "overview.html", **data)

    async def runs(self, request: Request) -> Response:
        q = request.query_params
        data = await run_in_threadpool(
            reads.runs, self.source(), q.get("agent", ""), q.get("state", ""), q.get("trigger", ""), q.get("before", "")
        )
        return self.render(request, "runs.html", **data)

    async def run(self, request: Request) -> Response:
        run_id = request.path_params["run"]
        data = await run_in_threadpool(reads.run, self.source(), run_id)
        if data is None:
            return self.render(request, "missing.html", 404, what=f"run {run_id}")
        return self.render(request, "run.html", live=run_id, **data)

    async def approvals(self, request: Request) -> Response:
        data = await run_in_threadpool(reads.approvals, self.source())
        return self.render(request, "approvals.html", **data)

    async def live(self, request: Request) -> Response:
        run = request.query_params.get("run") or None
        return StreamingResponse(
            self.hub.stream(run), media_type="text/event-stream", headers={"x-accel-buffering": "no"}
        )

    # ------------------------------------------------------------------ actions

    async def act(self, request: Request, op: dict[str, Any], back: str) -> Response:
        """Send ``op`` to the daemon; back to ``back`` (or the run it made), or the refusal."""
        answer = await self.ops(op)
        if not answer.get("ok"):
            return self.render(request, "refused.html", 409, error=str(answer.get("error", "refused")), back=back)
        made = answer.get("run")
        if isinstance(made, dict) and op["op"] in ("run", "fork"):
            back = f"/runs/{made['id']}"
        return RedirectResponse(back, 303)

    async def run_action(self, request: Request) -> Response:
        run_id, action = request.path_params["run"], request.path_params["action"]
        form = request.state.form
        back = f"/runs/{run_id}"
        if action in ("cancel", "retry"):
            return await self.act(request, {"op": action, "run": run_id}, back)
        if action == "release":
            return await self.act(
                request, {"op": "release", "run": run_id, "happened": form.get("happened") == "yes"}, back
            )
        if action == "fork":
            start = form.get("from", "")
            if not start.isdigit():
                error = f"fork needs the step number to start from, not {start!r}"
                return self.render(request, "refused.html", 400, error=error, back=back)
            return await self.act(request, {"op": "fork", "run": run_id, "from": int(start)}, back)
        return self.render(request, "missing.html", 404, what=f"action {action}")

    async def agent_action(self, request: Request) -> Response:
        agent, action = request.path_params["agent"], request.path_params["action"]
        form = request.state.form
        back = "/"
        if action == "run":
            op: dict[str, Any] = {"op": "run", "agent": agent}
            if form.get("input", "").strip():
                try:
                    op["input"] = json.loads(form["input"])
                except ValueError as exc:
                    error = f'the input is not valid JSON ({exc}); write it as JSON, e.g. {{"k": 1}}'
                    return self.render(request, "refused.html", 400, error=error, back=back)
            return await self.act(request, op, back)
        if action == "pause":
            return await self.act(request, {"op": "pause", "agent": agent, "reason": "paused from the console"}, back)
        if action == "resume":
            return await self.act(request, {"op": "resume", "agent": agent}, back)
        return self.render(request, "missing.html", 404, what=f"action {action}")

    async def decide(self, request: Request) -> Response:
        approval, action = request.path_params["approval"], request.path_params["action"]
        if action not in ("approve", "deny"):
            return self.render(request, "missing.html", 404, what=f"action {action}")
        reason = request.state.form.get("reason", "").strip()
        if action == "deny" and not reason:
            error = "a denial needs a reason: the agent (or its model) reads it as the tool's error"
            return self.render(request, "refused.html", 400, error=error, back="/approvals")
        return await self.act(request, {"op": action, "id": approval, "reason": reason}, "/approvals")


def _when(ts: float | None, zone: dt.tzinfo) -> str:
    if not ts:
        return "-"
    return dt.datetime.fromtimestamp(ts, zone).strftime("%Y-%m-%d %H:%M:%S %Z")
