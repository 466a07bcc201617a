"""The console's routes: pages read from the store, actions sent to the daemon's own
operations (the ones ``corral cancel``/``retry``/``approve``... use over the control
socket), and the live stream.

Every page is rendered on the server with Jinja2's autoescape on, so every string an agent
wrote (results, errors, tool arguments, model text, log fields) reaches the browser as
text, never as markup. The app is only served behind :class:`corral.console.guard.Guard`.
"""

from __future__ import annotations

import argparse
import time
from collections.abc import Awaitable, Callable, Iterator
from functools import partial
from pathlib import Path
from typing import Any
from urllib.parse import quote

import jinja2
from starlette.applications import Starlette
from starlette.concurrency import run_in_threadpool
from starlette.requests import Request
from starlette.responses import HTMLResponse, PlainTextResponse, RedirectResponse, Response, StreamingResponse
from starlette.routing import Mount, Route
from starlette.staticfiles import StaticFiles
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from corral.cli.moments import moment
from corral.cli.trace import model_name
from corral.config.units import parse_duration
from corral.console import agentpage, reads, spending
from corral.console.auth import Logins
from corral.console.guard import COOKIE
from corral.console.linkpages import LinkPages
from corral.console.links import Links
from corral.console.live import Hub
from corral.console.rows import Rows
from corral.jsoninput import NotStorable, parse_input
from corral.observe.events import breathe
from corral.observe.failures import unsuccessful
from corral.run.budget import Tally

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
        auto_reload=False,  # shipped with the package: no stat of the file at every page
    )
    env.filters.update(
        shown=reads.shown,
        took=_took,
        dollars=_dollars,
        tokens=_tokens,
        usd=_usd,
        unsuccessful=unsuccessful,
        model_name=model_name,
    )
    env.globals["row"] = Rows(env)
    return env


def _sharing(chunks: Iterator[str]) -> str:
    """A page rendered while letting the daemon's other threads run: Jinja holds the
    interpreter lock for the whole of a long page, and the store writer serving the agents'
    steps waits for it at each store call (5 ms each, Python's switch interval), so a
    20 ms page cost 8 busy agents a tenth of their steps. :func:`breathe` gives the lock
    back every 200 us of rendering."""
    parts = []
    since = time.perf_counter()
    for chunk in chunks:
        parts.append(chunk)
        since = breathe(since)
    return "".join(parts)


def _took(start: float | None, end: float | None) -> str:
    if not start or not end:
        return "-"
    seconds = end - start
    return f"{seconds * 1000:.0f} ms" if seconds < 1 else f"{seconds:.1f} s"


def _dollars(tally: dict[str, Any] | None) -> str:
    return f"${int((tally or {}).get('cost_micro_usd', 0)) / 1_000_000:.4f}"


def _usd(tally: Tally) -> str:
    """A tally's cost; calls to models without prices are said, not counted as free."""
    if tally.calls and tally.unpriced_calls == tally.calls:
        return "unpriced"
    extra = f" + {tally.unpriced_calls} unpriced" if tally.unpriced_calls else ""
    return spending.dollars(tally.cost_usd) + extra


def _tokens(tally: dict[str, Any] | None) -> int:
    return int((tally or {}).get("input_tokens", 0)) + int((tally or {}).get("output_tokens", 0))


def _failed(request: Request, exc: Exception) -> Response:
    """What a page that raised answers (Starlette's handler for ``Exception``)."""
    text = (
        f"This page failed ({type(exc).__name__}). The daemon and its agents are not affected; "
        "the traceback is in corral.log, under 'console page failed'."
    )
    return PlainTextResponse(text, 500)


class Contained:
    """A page that raises (a record it cannot show, a bug) is that page's 500 alone
    (:func:`_failed`), its traceback in the daemon's log; the daemon, its agents, the other
    pages and the browser's connection go on. Starlette answers, then raises again for the
    server to log, and the server would close the connection and print to stderr."""

    def __init__(self, app: ASGIApp, log: Any) -> None:
        self.app = app
        self.log = log

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        answered = False

        async def sending(message: Message) -> None:
            nonlocal answered
            answered = message["type"] == "http.response.body" and not message.get("more_body", False)
            await send(message)

        try:
            await self.app(scope, receive, sending)
        except Exception as exc:
            self.log.error("console page failed", path=scope.get("path", ""), exc_info=exc)
            if not answered:  # cut off part-way (a stream): only closing the connection ends it
                raise


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
        log: Any,
        links: Callable[[], Links | None] = lambda: None,
    ) -> None:
        self.gate = gate
        self.log = log
        self.hub = hub
        self.source = source
        self.ops = ops
        self.health = health
        """When the console started, and the protections the daemon applies."""
        self.secure = secure
        self.env = templates()
        self.link_pages = LinkPages(links, gate, source, ops, self.env, secure)

    def app(self) -> ASGIApp:
        return Contained(self.routes(), self.log)

    def routes(self) -> Starlette:
        return Starlette(
            routes=[
                Route("/login", self.login),
                Route("/logout", self.logout, methods=["POST"]),
                Route("/", self.overview),
                Route("/runs", self.runs),
                Route("/runs/{run}", self.run),
                Route("/runs/{run}/{action:str}", self.run_action, methods=["POST"]),
                Route("/agents/{agent}", self.agent),
                Route("/agents/{agent}/{action:str}", self.agent_action, methods=["POST"]),
                Route("/spend", self.spend),
                Route("/spend.csv", self.spend_csv),
                Route("/alerts", self.alerts),
                Route("/approvals", self.approvals),
                Route("/approvals/{approval}/{action:str}", self.decide, methods=["POST"]),
                Route("/live", self.live),
                *self.link_pages.routes(),
                Mount("/static", StaticFiles(directory=HERE / "static"), name="static"),
            ],
            exception_handlers={Exception: _failed},
        )

    # ------------------------------------------------------------------ pages

    def render(self, request: Request, name: str, status: int = 200, **values: Any) -> HTMLResponse:
        """The page ``name`` (its main part alone for the live script's refetch). The pages
        render on a worker thread (``run_in_threadpool``): a long run's page takes
        milliseconds of Jinja that the event loop, which also serves the agents' model
        calls, must not wait for."""
        template = self.env.get_template(name)
        session = request.state.session
        zone = self.source().config.zone
        context = {"csrf": session.csrf, "path": request.url.path, "live": "", "when": partial(reads.when, zone=zone)}
        context.update(values)
        if request.headers.get(FRAGMENT) and "content" in template.blocks:
            chunks = template.blocks["content"](template.new_context(context))
        else:
            chunks = template.generate(context)
        return HTMLResponse(_sharing(chunks), status)

    async def login(self, request: Request) -> Response:
        session = self.gate.login(request.query_params.get("token", ""))
        if session is None:
            if self.gate.failed("login token"):
                return PlainTextResponse("Too many failed logins; wait a minute and run `corral console` again.", 429)
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
        return await run_in_threadpool(self.render, request, "overview.html", **data)

    async def runs(self, request: Request) -> Response:
        q = request.query_params
        filters = {name: q.get(name, "").strip() for name in ("agent", "state", "trigger", "since")}
        since = None
        if filters["since"]:
            try:
                since = moment("since")(filters["since"]).at
            except argparse.ArgumentTypeError as exc:
                return self.render(request, "refused.html", 400, error=f"since: {exc}", back="/runs")
        before = q.get("before", "")
        if not before.isascii():
            error = f"before: {before[:40]!r} is not a run id; use the runs page's own Older link"
            return self.render(request, "refused.html", 400, error=error, back="/runs")
        src = self.source()
        data = await run_in_threadpool(
            reads.runs, src, filters["agent"], filters["state"], filters["trigger"], since, before
        )
        return await run_in_threadpool(self.render, request, "runs.html", filters=filters, **data)

    async def agent(self, request: Request) -> Response:
        name = request.path_params["agent"]
        days = _days(request.query_params.get("days", ""))
        if days is None:
            error = _days_refused(request.query_params["days"])
            return self.render(request, "refused.html", 400, error=error, back=f"/agents/{quote(name, safe='')}")
        src = self.source()
        data = await run_in_threadpool(agentpage.agent, src.store, src.records, src.config, name, days)
        if data is None:
            return self.render(request, "missing.html", 404, what=f"agent {name} in the config")
        return await run_in_threadpool(self.render, request, "agent.html", **data)

    async def spend(self, request: Request) -> Response:
        days = _days(request.query_params.get("days", ""))
        if days is None:
            return self.render(
                request, "refused.html", 400, error=_days_refused(request.query_params["days"]), back="/spend"
            )
        src = self.source()
        data = await run_in_threadpool(spending.spend, src.store, time.time(), src.config.zone, days)
        return await run_in_threadpool(self.render, request, "spend.html", **data)

    async def spend_csv(self, request: Request) -> Response:
        days = _days(request.query_params.get("days", ""))
        if days is None:
            return PlainTextResponse(_days_refused(request.query_params["days"]), 400)
        src = self.source()
        text = await run_in_threadpool(spending.spend_csv, src.store, time.time(), src.config.zone, days)
        disposition = f'attachment; filename="corral-spend-{days}d.csv"'
        return Response(text, media_type="text/csv; charset=utf-8", headers={"content-disposition": disposition})

    async def alerts(self, request: Request) -> Response:
        days = _days(request.query_params.get("days", ""), default=1)
        if days is None:
            return self.render(
                request, "refused.html", 400, error=_days_refused(request.query_params["days"]), back="/alerts"
            )
        agent = request.query_params.get("agent", "")
        data = await run_in_threadpool(reads.alerts, self.source(), time.time() - days * 86400, agent)
        return await run_in_threadpool(self.render, request, "alerts.html", days=days, agent=agent, **data)

    async def run(self, request: Request) -> Response:
        run_id = request.path_params["run"]
        every = request.query_params.get("steps") == "all"
        data = await run_in_threadpool(reads.run, self.source(), run_id, every) if run_id.isascii() else None
        if data is None:
            return self.render(request, "missing.html", 404, what=f"run {run_id}")
        return await run_in_threadpool(self.render, request, "run.html", live=run_id, **data)

    async def approvals(self, request: Request) -> Response:
        data = await run_in_threadpool(reads.approvals, self.source())
        return await run_in_threadpool(self.render, request, "approvals.html", **data)

    async def live(self, request: Request) -> Response:
        run = request.query_params.get("run") or None
        return StreamingResponse(
            self.hub.stream(run), media_type="text/event-stream", headers={"x-accel-buffering": "no"}
        )

    # ------------------------------------------------------------------ actions

    async def act(self, request: Request, op: dict[str, Any], back: str) -> Response:
        """Send ``op`` to the daemon; back to ``back`` (or the run it made), or the refusal."""
        answer = await self.ops({**op, "by": request.state.session.who})
        if not answer.get("ok"):
            return self.render(request, "refused.html", 409, error=str(answer.get("error", "refused")), back=back)
        made = answer.get("run")
        if isinstance(made, dict) and op["op"] in ("run", "fork"):
            back = f"/runs/{made['id']}"
        return RedirectResponse(back, 303)

    async def run_action(self, request: Request) -> Response:
        run_id, action = request.path_params["run"], request.path_params["action"]
        if not run_id.isascii():  # run ids are ASCII; the store's keys cannot hold another
            return self.render(request, "missing.html", 404, what=f"run {run_id}")
        form = request.state.form
        back = f"/runs/{quote(run_id, safe='')}"
        if action in ("cancel", "retry"):
            return await self.act(request, {"op": action, "run": run_id}, back)
        if action == "release":
            return await self.act(
                request, {"op": "release", "run": run_id, "happened": form.get("happened") == "yes"}, back
            )
        if action == "fork":
            start = _number(form.get("from", ""))
            if start is None:
                error = f"fork needs the step number to start from, not {form.get('from', '')[:40]!r}"
                return self.render(request, "refused.html", 400, error=error, back=back)
            return await self.act(request, {"op": "fork", "run": run_id, "from": start}, back)
        return self.render(request, "missing.html", 404, what=f"action {action}")

    async def agent_action(self, request: Request) -> Response:
        agent, action = request.path_params["agent"], request.path_params["action"]
        form = request.state.form
        back = f"/agents/{quote(agent, safe='')}"
        if action == "run":
            op: dict[str, Any] = {"op": "run", "agent": agent}
            if form.get("input", "").strip():
                try:
                    op["input"] = parse_input(form["input"])
                except NotStorable as exc:
                    error = f'the input holds a value corral cannot store ({exc}); e.g. {{"k": 1}}'
                    return self.render(request, "refused.html", 400, error=error, back=back)
                except ValueError as exc:
                    error = f'the input is not valid JSON ({exc}); write it as JSON, e.g. {{"k": 1}}'
                    return self.render(request, "refused.html", 400, error=error, back=back)
            return await self.act(request, op, back)
        if action == "pause":
            op = {"op": "pause", "agent": agent, "reason": "paused from the console"}
            lasting = form.get("for", "").strip()
            if lasting:
                try:
                    seconds = parse_duration(lasting)
                except ValueError as exc:
                    return self.render(request, "refused.html", 400, error=f"pause for: {exc}", back=back)
                if seconds <= 0:
                    error = "pause for: give a time of more than zero, or leave it empty to pause until resumed"
                    return self.render(request, "refused.html", 400, error=error, back=back)
                op["until"] = time.time() + seconds
            return await self.act(request, op, back)
        if action in ("resume", "start"):
            return await self.act(request, {"op": action, "agent": agent}, back)
        if action == "stop":
            return await self.act(request, {"op": "stop", "agent": agent, "reason": "disabled from the console"}, back)
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


def _days(text: str, default: int = spending.DAYS) -> int | None:
    """A page's ``days``: the default when not given, at most ``MAX_DAYS``; None when it is not
    a whole number of days."""
    if not text:
        return default
    number = _number(text)
    return None if number is None or number == 0 else min(number, spending.MAX_DAYS)


def _number(text: str) -> int | None:
    """``text`` as a whole number written in ASCII digits, at most 9 of them; else None.
    (``str.isdigit`` is true of ``²`` and ``٣``, which ``int()`` refuses or reads as 3.)"""
    return int(text) if text.isascii() and text.isdigit() and len(text) <= 9 else None


def _days_refused(text: str) -> str:
    return f"days: {text[:40]!r} is not a number of days; give a whole number from 1 to {spending.MAX_DAYS}"
