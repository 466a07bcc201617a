"""An attempt's MCP servers on the daemon's side: their tool lists, and the HTTP calls.

The agent's process asks for a server's tool list (an ``mcp`` step) before it first uses
the server. A stdio server's list is read in the agent's process (inside its sandbox) and
reported like a tool's outcome; an HTTP server's is read here, on the event loop. Either
way the list is journaled once per run, and the granted tools become corral tools for
this attempt (:mod:`corral.mcp.listing`), checked, guarded and journaled like any other.
An attempt after the first reads the list again and compares it with the journal's: a
tool the run knows whose schema or annotations changed fails the run with a clear error,
rather than letting a resumed run call something else than it journaled.

An HTTP server's tools are called here too, so the headers (and the secrets in them)
never reach the agent's process; the call's outcome is journaled before the agent hears
of it.
"""

from __future__ import annotations

import asyncio
import difflib
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from corral.config.mcp import McpServer, split_grant
from corral.mcp.listing import ListingError, changes, offered, plain_listing
from corral.mcp.results import error
from corral.run.outcome import Outcome, RunEnded, failure
from corral.states import RunState

if TYPE_CHECKING:
    import jsonschema_rs

    from corral.breaker import Breakers, CircuitBreaker, Permit
    from corral.mcp.http import HttpFailure
    from corral.run.journal import Journal
    from corral.store import Writer
    from corral.tools import ToolSpec


@dataclass(frozen=True)
class McpCall:
    """Forwarded to the event loop by :mod:`corral.run.steps`: the daemon's request to an HTTP
    server for step ``seq``: its tool list (``tool`` None) or a call. ``journaled``: the list
    an earlier attempt journaled, to compare the server's current one with."""

    seq: int
    server: str
    tool: str | None = None
    args: dict[str, Any] = field(default_factory=dict)
    key: str = ""
    journaled: list[dict[str, Any]] | None = None


class McpTools:
    """The MCP servers one attempt's agent is granted tools of, and what they offer it."""

    def __init__(
        self,
        servers: Mapping[str, McpServer],
        grants: tuple[str, ...],
        granted: dict[str, ToolSpec | None],
        log: Any,
        *,
        writer: Writer,
        journal: Journal,
        redact: Callable[[Any], Any],
        after: Callable[[dict[str, Any]], None],
        breakers: Breakers,
        headers: Mapping[str, dict[str, str]] | None = None,
    ) -> None:
        self.grants = grants
        self.servers = {
            name: config
            for name, config in servers.items()
            if any((parts := split_grant(g)) is not None and parts[0] == name for g in grants)
        }
        self.granted = granted
        """The attempt's granted tools (shared with the step path and the model calls): each
        list read adds its granted tools here."""
        self.log = log
        self.headers = headers or {}
        """The headers of each HTTP server, secrets filled in (the daemon's only)."""
        self.validators: dict[str, jsonschema_rs.Draft202012Validator] = {}
        self.offers: dict[str, list[str]] = {}
        """The tools each server's list (as this run keeps it) offers, granted or not, by server."""
        self.unusable: dict[str, str] = {}
        self.writer = writer
        self.journal = journal
        self.redact = redact
        self.after = after
        """Shown each step finished here once durable: the guardrails' after-step check."""
        self.breakers = breakers
        """The daemon's breakers: an HTTP server's is ``mcp:NAME``, shared by every agent that calls it."""

    def welcome(self) -> dict[str, Any]:
        """What the agent's process learns of its servers: names, transports, grants, and for a
        stdio server how to start it (never an HTTP server's URL or headers)."""
        servers: dict[str, Any] = {}
        for name, config in self.servers.items():
            entry: dict[str, Any] = {"transport": config.transport}
            if config.transport == "stdio":
                entry.update(
                    command=list(config.command),
                    timeout=config.timeout,
                    startup_timeout=config.startup_timeout,
                    max_result_kb=config.max_result_kb,
                )
            servers[name] = entry
        return {"servers": servers, "grants": list(self.grants)}

    def listing_refusal(self, server: str) -> str | None:
        """Why the agent may not read ``server``'s list, or None."""
        if server in self.servers:
            return None
        return f"MCP server {server!r} is not one agent's tools come from; known: {', '.join(self.servers) or 'none'}"

    def tool_refusal(self, name: str) -> str | None:
        """Why a tool named like a granted server's cannot be called, or None if it is not one."""
        if name in self.unusable:
            return self.unusable[name]
        parts = split_grant(name)
        if parts is None or parts[0] not in self.servers:
            return None
        server, tool = parts
        granted = ", ".join(n for n in sorted(self.granted) if n.startswith(f"{server}.")) or "none"
        if server not in self.offers:
            return f"tool {name!r}: the tool list of MCP server {server!r} has not been read in this run"
        if tool in self.offers[server]:
            return (
                f"tool {name!r} is not granted to this agent; its granted tools of MCP server {server!r}: "
                f"{granted} (grant it in the agent's tools = [...])"
            )
        near = difflib.get_close_matches(tool, self.offers[server], n=1)
        hint = f"did you mean '{server}.{near[0]}'? " if near else ""
        return f"MCP server {server!r} offers no tool {tool!r}; {hint}granted: {granted}"

    def accept(self, server: str, value: Any) -> tuple[list[dict[str, Any]] | None, str | None]:
        """A list read from ``server``: ``(listing, None)`` with its granted tools added to the
        attempt, or ``(None, why)`` when it is not a tool list."""
        try:
            listing = plain_listing(value, server)
        except ListingError as exc:
            return None, str(exc)
        self.use(server, listing)
        return listing, None

    def use(self, server: str, listing: list[dict[str, Any]]) -> None:
        """Make ``listing``'s granted tools this attempt's."""
        self.offers[server] = [tool["name"] for tool in listing]
        tools = offered(self.servers[server], listing, self.grants)
        self.granted.update(tools.specs)
        self.validators.update(tools.validators)
        self.unusable.update(tools.unusable)
        for name, why in tools.unusable.items():
            self.log.warning("MCP tool unusable", tool=name, reason=why)

    def relisted(self, server: str, journaled: list[dict[str, Any]], live: Any) -> Outcome | None:
        """A list read again on resume: the journal's list is kept; how the run ends if the
        server changed a tool it lists (None: it did not, or the list could not be read)."""
        self.use(server, journaled)
        try:
            current = plain_listing(live, server)
        except ListingError:
            return None  # the server is not answering now: its calls will say so
        changed = changes(journaled, current, server)
        if changed is None:
            return None
        message = (
            f"{changed} since this run journaled its tool list; the run cannot resume against different "
            f"tools. Restore the server's previous version, or start a new run"
        )
        self.log.error("MCP tools changed under a resumed run", server=server, reason=changed)
        return Outcome(RunState.FAILED, failure("mcp_changed", message))

    def validator(self, spec: ToolSpec) -> jsonschema_rs.Draft202012Validator:
        """The validator of an MCP tool's arguments, compiled when its list was read."""
        return self.validators[spec.name]

    # ------------------------------------------------------------------ HTTP, on the event loop

    async def call(self, item: McpCall) -> dict[str, Any]:
        """Make an HTTP server's request for a step; journal it; the answer for the agent."""
        from corral.mcp.http import HttpFailure
        from corral.mcp.listing import MAX_PAGE_BYTES
        from corral.mcp.results import outcome
        from corral.mcp.session import call_tool, list_tools

        config = self.servers[item.server]
        ok, value, problem, tries = True, None, None, [0]
        try:
            if item.tool is None:
                value = await self._retried(config, list_tools, True, tries, MAX_PAGE_BYTES)
            else:
                tool, label = item.tool, f"{config.name}.{item.tool}"
                spec = self.granted.get(label)
                result = await self._retried(
                    config,
                    lambda client: call_tool(client, tool, item.args, item.key),
                    spec is not None and spec.idempotent,
                    tries,
                    config.max_result_kb * 1024,
                )
                ok, value, problem = outcome(result, label, config.name, config.max_result_kb * 1024)
        except HttpFailure as exc:
            self.log.warning("MCP call failed", server=item.server, tool=item.tool, kind=exc.kind, reason=str(exc))
            ok, value, problem = False, None, error(exc.kind, str(exc))
        if item.tool is None:
            if item.journaled is not None:
                ended = self.relisted(item.server, item.journaled, value if ok else None)
                if ended is not None:
                    raise RunEnded(ended)
                return {"t": "result", "seq": item.seq, "ok": True, "replayed": True, "value": item.journaled}
            if ok:
                value, why = self.accept(item.server, value)
                if why is not None:
                    ok, value, problem = False, None, error("failed", why)
        return await self._done(item.seq, ok, self.redact(value), self.redact(problem), tries[0])

    async def _retried(
        self, config: McpServer, use: Callable[[Any], Any], idempotent: bool, tries: list[int], max_bytes: int
    ) -> Any:
        """``use`` a session with the server, through its breaker, tried again while that is
        safe: the failure may pass, and either the server refused before running anything
        (a 429, a 503, no connection) or the call is idempotent. ``tries`` counts the tries;
        no response may be much over ``max_bytes``."""
        from corral.mcp.http import HttpFailure, request
        from corral.retrypolicy import RetryPolicy

        breaker = self.breakers.get(
            f"mcp:{config.name}",
            failures=config.breaker_failures,
            cool_down=config.breaker_cool_down,
            label=f"MCP server {config.name!r}",
        )
        policy = RetryPolicy(retries=config.retries, backoff=config.backoff, max_retry_after=config.max_retry_after)
        headers = dict(self.headers.get(config.name, {}))

        async def once() -> Any:
            from corral.breaker import BreakerOpen

            tries[0] += 1
            try:
                permit = await breaker.acquire(max_hold=policy.max_retry_after, sleep=asyncio.sleep)
            except BreakerOpen as exc:
                raise HttpFailure(exc.message, kind=exc.kind, transient=False, no_effect=True) from None
            try:
                result = await request(config, headers, config.timeout, use, max_bytes)
            except HttpFailure as exc:
                _judge(breaker, permit, exc)
                if tries[0] < policy.tries and _safe(exc, idempotent, policy.max_retry_after):
                    self.log.warning("MCP call tried again", server=config.name, attempt=tries[0], reason=str(exc))
                raise
            breaker.record_success(permit)
            return result

        retrying = policy.retrying(
            lambda exc: isinstance(exc, HttpFailure) and _safe(exc, idempotent, policy.max_retry_after),
            retry_after=lambda exc: getattr(exc, "retry_after", None),
        )
        return await retrying(once)

    async def _done(self, seq: int, ok: bool, value: Any, problem: dict[str, Any] | None, tries: int) -> dict[str, Any]:
        journal, writer = self.journal, self.writer
        entry = await writer.run(lambda txn: journal.done(txn, seq, ok, value, problem, {"tries": tries}))
        if entry is not None:
            self.after(entry)
        message: dict[str, Any] = {"t": "result", "seq": seq, "ok": ok, "replayed": False}
        if ok:
            message["value"] = value
        else:
            message["error"] = problem
        return message


def _safe(exc: HttpFailure, idempotent: bool, longest_wait: float) -> bool:
    """Whether trying a failed HTTP call again may help and cannot repeat a side effect."""
    if not exc.transient or not (exc.no_effect or idempotent):
        return False
    return exc.retry_after is None or exc.retry_after <= longest_wait


def _judge(breaker: CircuitBreaker, permit: Permit, exc: HttpFailure) -> None:
    """What a failure says of the server's health: a 429 holds every caller back (it is no
    failure of the server), a transient failure counts, a refusal of ours does not."""
    if exc.kind == "rate_limited":
        breaker.record_neutral(permit)
        if exc.retry_after:
            breaker.hold(exc.retry_after, "the server answered 429")
    elif exc.transient:
        breaker.record_failure(permit, str(exc))
    else:
        breaker.record_success(permit)
