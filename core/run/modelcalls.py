"""``ctx.model`` on the daemon's side: checks, the budget, the call, and its journal entry.

The agent's ``model`` step is journaled "started" on the writer thread like any step
(:mod:`corral.run.steps`); the call itself is made here, on the event loop, through the
endpoint's shared :class:`corral.models.ModelClient` (retries, breaker). Its answer or
final error is journaled with what it cost before the agent hears of it, so a resumed
run gets every finished call from the journal, free and not billed again.

Budgets are checked before each call against the call's worst case (input estimated
high plus its output cap, at the model's price): the run's caps here against what the
run has spent, the day's caps (the agent's and all agents') through the daemon's
:class:`corral.run.budget.Ledger`, which holds the worst case until the call is settled. A
call that would cross a cap is not made and the run stops, resumable; a spent daily cap
also pauses the agent until midnight in ``[corral] timezone``.

A request through the model door (its args carry ``door``: the API it came in) is the
same step, but a spent budget or an endpoint that failed after every retry does not end
the run: the error is journaled as the step's answer and the door turns it into the API's
429 or 503/529, so the agent's own code decides (and a resumed run gets the same answer).
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable, Coroutine
from dataclasses import dataclass
from decimal import Decimal
from typing import TYPE_CHECKING, Any

from corral import traceids
from corral.run.budget import MICRO, Crossing, Refusal, Tally, Worst
from corral.run.endpoints import NotConfigured
from corral.run.outcome import Outcome, RunEnded, failure, resumable
from corral.states import EventKind, RunState

if TYPE_CHECKING:
    from corral.config import AgentConfig
    from corral.models import Endpoint, Request, Response
    from corral.run.journal import Journal
    from corral.run.modelaccess import ModelAccess
    from corral.store import Records, Writer
    from corral.tools import ToolSpec

Pause = Callable[[str, str, float | None], Coroutine[Any, Any, None]]
"""Pause an agent: (name, reason, until); raises KeyError for one no longer configured."""

BREAKER_POLL = 1.0
"""How often a call waiting on an open breaker looks again (the breaker says when it half-opens)."""


@dataclass(frozen=True)
class FailOver:
    """A model of a call's chain cannot answer now; the call goes to the next one."""

    reason: str


@dataclass(frozen=True)
class ModelCall:
    """Forwarded to the event loop by :mod:`corral.run.steps`: make this call for step ``seq``
    (``execution``: the journal's count of its executions, which names its trace span)."""

    seq: int
    name: str
    args: dict[str, Any]
    execution: int = 1


def resolve(agent: AgentConfig, name: str) -> str | None:
    """The model a step names ("" is the agent's first granted model)."""
    if not name:
        return agent.models[0] if agent.models else None
    return name if name in agent.models else None


def build_request(args: dict[str, Any], granted: dict[str, ToolSpec | None]) -> Request:
    """The provider-neutral request of a ``model`` step; tools named by string are the
    granted tools' definitions. Raises ValueError (InvalidRequest) with what is wrong."""
    from corral.models import Request

    tools = []
    for tool in args.get("tools") or ():
        if isinstance(tool, str):
            spec = granted.get(tool)
            if spec is None:
                known = ", ".join(sorted(name for name, s in granted.items() if s is not None)) or "none"
                raise ValueError(f"tool {tool!r} is not granted to this agent; granted tools: {known}")
            tools.append({"name": spec.name, "description": spec.description, "parameters": spec.parameters})
        else:
            tools.append(tool)
    return Request.from_dict({**args, "tools": tools})


STEP_KEYS = frozenset({"door"})
"""What a model step's ``args`` may carry beside the request: the door's dialect, when the door asked."""


def refusal(agent: AgentConfig, granted: dict[str, ToolSpec | None], name: str, args: dict[str, Any]) -> str | None:
    """Why a ``model`` step cannot be made, checked before it is journaled."""
    model = resolve(agent, name)
    if model is None:
        granted_models = ", ".join(agent.models) or "none"
        asked = f"model {name!r}" if name else "a model"
        return (
            f"{asked} is not granted to agent {agent.name!r}; granted models: {granted_models} "
            f"(add it to [agents.{agent.name}] models)"
        )
    from corral.models.types import check_keys

    try:
        check_keys({key: value for key, value in args.items() if key not in STEP_KEYS})
        build_request(args, granted)
    except ValueError as exc:
        return f"invalid model request: {exc}"
    return None


class ModelCaller:
    """Makes one attempt's model calls, in order, and keeps its budgets."""

    def __init__(
        self,
        access: ModelAccess,
        writer: Writer,
        records: Records,
        agent: AgentConfig,
        journal: Journal,
        log: Any,
        granted: dict[str, ToolSpec | None],
        spent: Tally,
        *,
        pause: Pause,
        draining: Callable[[], bool],
        redact: Callable[[Any], Any],
        stopped: Callable[[], bool] = lambda: False,
        after: Callable[[dict[str, Any]], None] = lambda entry: None,
        trace_id: str,
    ) -> None:
        self.access = access
        self.writer = writer
        self.records = records
        self.pause = pause
        self.draining = draining
        """True once the daemon is stopping: a failing call is made again after the restart."""
        self.redact = redact
        self.trace_id = trace_id
        """The run's trace id: each call's ``traceparent`` (:mod:`corral.traceids`)."""
        self.agent = agent
        self.journal = journal
        self.log = log
        self.spent = spent
        """What the run's model calls have used so far, earlier attempts included (the run
        record's ``spent``, kept in the same commit as each call's journal entry)."""
        self.granted = granted
        self.stopped = stopped
        """True once the attempt is being ended (a limit, a cancel): stop waiting for an endpoint."""
        self.after = after
        """Shown each model step once durable: the guardrails' after-step check, as for every step."""

    async def call(self, item: ModelCall) -> dict[str, Any]:
        """Make the call; journal its outcome and spend; return the answer for the agent.

        A model with ``fallbacks`` that cannot answer (its breaker open, its retries
        exhausted, a daily budget refusing it, not configured) hands the call to the next
        granted fallback; the last model tried behaves as a model without fallbacks.

        Raises RunEnded when the run must stop: a hard budget limit, or a transient failure
        that outlasted every retry. The step then stays "started", so ``corral retry``
        makes the call again, checked against the budgets of that day.
        """
        model = resolve(self.agent, item.name)
        assert model is not None  # checked before the step was journaled
        request = build_request(item.args, self.granted)
        configured = self.access.config.models.get(model)  # None: removed by a reload while this run went on
        fallbacks = configured.fallbacks if configured is not None else ()
        chain = [model, *(f for f in fallbacks if f in self.agent.models)]
        tried: list[dict[str, str]] = []
        for index, name in enumerate(chain):
            answer = await self._call_one(name, request, item, tried, last=index == len(chain) - 1)
            if not isinstance(answer, FailOver):
                return answer
            tried.append({"model": name, "reason": answer.reason})
            await self._failing_over(name, chain[index + 1], answer.reason)
        raise AssertionError("the last model of a chain answers or fails, never fails over")

    async def _call_one(
        self, model: str, request: Request, item: ModelCall, tried: list[dict[str, str]], *, last: bool
    ) -> dict[str, Any] | FailOver:
        """One model of the call's chain: its answer, a journaled failure, or (``last`` False)
        a :class:`FailOver` when it cannot answer now."""
        from corral.models import cost, micro_dollars

        access = self.access
        try:
            endpoint, adapter = await self._usable(model)
        except NotConfigured as exc:
            if not last:
                return FailOver(str(exc))
            return await self._fail(item.seq, "not_configured", _after(tried, str(exc)))
        config = access.config.models[model]
        worst = _worst(endpoint, request)
        door = bool(item.args.get("door"))
        over = self._over_run_budget(worst)
        if over:
            self.log.warning("a run reached its model budget", detail=over)
            await self._crossed({"budget": "run", "message": over})
            if door:
                return await self._fail(item.seq, "budget", over)
            raise RunEnded(Outcome(RunState.FAILED, resumable(failure("budget", over))))
        ledger = access.ledger
        while (held := ledger.reserve(self.agent.name, worst)) is None:
            # Today's spend is not in memory (the day's first call here, or the clock moved):
            # read it from the store. Each pass needs the clock to change day once more.
            await self.writer.run(ledger.load)
        if isinstance(held, Refusal):
            if not last:
                return FailOver(held.message)
            await self._day_spent(held)
            if door:
                return await self._fail(item.seq, "budget", held.message, retry_after=held.until - time.time())
            raise RunEnded(Outcome(RunState.FAILED, resumable(failure("budget", held.message))))
        try:
            response = await self._ask(model, endpoint, adapter, config.breaker_wait, request, item, tried, last=last)
            if isinstance(response, dict | FailOver):
                return response
            price = cost(endpoint, response.usage)
            tally = Tally(
                input_tokens=response.usage.input_tokens,
                output_tokens=response.usage.output_tokens,
                cost_micro_usd=micro_dollars(price) if price is not None else 0,
                calls=1,
                unpriced_calls=int(price is None),
            )
            usage = {"input_tokens": tally.input_tokens, "output_tokens": tally.output_tokens}
            spent: dict[str, Any] = {
                "usage": usage,
                "cost_usd": str(price) if price is not None else None,
                "model": model,
                **_asked(endpoint),
            }
            if tried:
                spent["failed_over"] = list(tried)
            if price is not None:
                spent["cost_micro_usd"] = tally.cost_micro_usd
            value = self.redact(response.to_dict())
            day = held.day
            entry = await self.writer.run(lambda txn: self._record(txn, item.seq, value, spent, tally, day))
        finally:
            ledger.release(held)
        if entry is not None:
            self.after(entry)
        self.spent.add(tally)
        return {"t": "result", "seq": item.seq, "ok": True, "replayed": False, "value": value}

    async def _usable(self, model: str) -> tuple[Endpoint, Any]:
        """Model ``model``'s endpoint and the provider adapter that speaks to it; raises
        NotConfigured with the fix when either is missing."""
        access = self.access
        endpoint = await access.endpoints.get(model)
        adapter = access.providers.get(endpoint.provider)
        if adapter is None:
            installed = ", ".join(sorted(access.providers)) or "none"
            raise NotConfigured(
                f"model {model!r}: no installed plugin provides provider {endpoint.provider!r} (installed: "
                f"{installed}); install the plugin, or fix [models.{model}] provider"
            )
        return endpoint, adapter

    async def _ask(
        self,
        model: str,
        endpoint: Endpoint,
        adapter: Any,
        breaker_wait: float,
        request: Request,
        item: ModelCall,
        tried: list[dict[str, str]],
        *,
        last: bool,
    ) -> Response | dict[str, Any] | FailOver:
        """The provider's response; a journaled error answer for a call that cannot succeed as
        asked; a :class:`FailOver` (``last`` False) when the endpoint cannot answer now.

        While the endpoint's circuit breaker is open the last model of the chain waits for it,
        up to the model's ``breaker_wait``; a transient failure beyond that, or after every
        retry, ends the run.
        """
        from corral.models import ModelError

        client = self.access.client(model, endpoint, adapter)
        deadline = time.monotonic() + breaker_wait
        seq = item.seq
        span = traceids.step_span(self.trace_id, seq, item.execution)
        sampled = self.access.config.telemetry.enabled  # whether the call's span is exported
        headers = {"traceparent": traceids.traceparent(self.trace_id, span, sampled=sampled)}

        def on_attempt(attempt: Any) -> None:
            if attempt.status != 200 and attempt.kind:
                self.log.warning(
                    "model call retry" if attempt.wait else "model call failed",
                    seq=seq,
                    model=model,
                    status=attempt.status,
                    error=attempt.kind,
                    message=attempt.message,
                    wait_s=attempt.wait,
                )

        from corral.models.toolnames import for_provider, from_provider

        sent, aliases = for_provider(request)  # "git.git_log" is no name a model API accepts
        while True:
            try:
                return from_provider(await client.call(sent, on_attempt=on_attempt, headers=headers), aliases)
            except ModelError as exc:
                if not exc.retryable:
                    return await self._fail(seq, exc.kind, _after(tried, str(exc)), _asked(endpoint))
                if self.draining():  # not the endpoint's fault: the call is made again after the restart
                    stopped = f"the daemon stopped during a call to model {model!r}; the run resumes when it is back"
                    raise RunEnded(Outcome(RunState.INTERRUPTED, failure("stopped", stopped), retry=True)) from None
                if not last:
                    return FailOver(str(exc))
                left = deadline - time.monotonic()
                if exc.kind == "breaker_open" and left > 0 and not self.stopped():
                    wait = min(left, max(BREAKER_POLL, exc.retry_after or BREAKER_POLL))
                    self.log.info("waiting for model endpoint to recover", seq=seq, model=model, wait_s=wait)
                    await self._sleep(wait)
                    continue
                message = _after(tried, f"model {model!r} did not answer after every retry: {exc}")
                self.log.error("model calls failing", seq=seq, model=model, error=message)
                if item.args.get("door"):  # the door answers 503/529 and the agent's code decides
                    return await self._fail(seq, "model", message, _asked(endpoint), retry_after=exc.retry_after)
                raise RunEnded(Outcome(RunState.FAILED, resumable(failure("model", message)))) from None

    async def _failing_over(self, model: str, to: str, reason: str) -> None:
        """The call goes on to ``to``: logged each time; an event (and so an alert) once per
        episode of ``model`` failing over, which ends when ``model`` answers again."""
        self.log.warning("model failing over", model=model, to=to, reason=reason)
        if self.access.failing_over(model):
            data = {"model": model, "to": to, "reason": reason}
            await self.writer.run(lambda txn: self._post_failover(txn, data))

    def _post_failover(self, txn: Any, data: dict[str, Any]) -> None:
        """Post a ``model_failover`` event: a model began failing over (``to`` the next model),
        or answers again (``to`` None)."""
        self.records.post(txn, EventKind.MODEL_FAILOVER, {**data, "agent": self.agent.name}, self.journal.run_id)

    async def _sleep(self, seconds: float) -> None:
        """Sleep, waking early when the attempt is ended meanwhile."""
        until = time.monotonic() + seconds
        while (left := until - time.monotonic()) > 0 and not self.stopped() and not self.draining():
            await asyncio.sleep(min(left, BREAKER_POLL))

    def _record(
        self, txn: Any, seq: int, value: Any, spent: dict[str, Any], tally: Tally, admitted: str
    ) -> dict[str, Any] | None:
        """In one commit: the journal entry, the day's spend (``admitted``: the day whose caps
        let the call start), the run's own total, and an event for each soft threshold crossed."""
        entry = self.journal.done(txn, seq, True, value, None, spent)
        if self.access.answers_again(str(spent["model"])):
            self._post_failover(txn, {"model": spent["model"], "to": None, "reason": "it answers again"})
        crossings = self.access.ledger.record(txn, self.agent.name, str(spent["model"]), tally, admitted)
        records = self.records
        for crossing in crossings:
            self.log.warning("model budget threshold crossed", **_soft(crossing))
            self._post_crossed(txn, {"budget": "day", **_soft(crossing)})
        run = records.get_run(txn, self.journal.run_id)
        if run is not None:
            total = Tally.from_dict(run.get("spent") or {})
            total.add(tally)
            run["spent"] = total.to_dict()
            records.put_run(txn, run)
        return entry

    def _over_run_budget(self, worst: Worst) -> str | None:
        budget, spent, where = self.agent.budget.run, self.spent, f"[agents.{self.agent.name}.budget]"
        if budget.calls is not None and spent.calls + 1 > budget.calls:
            return f"model call budget reached: {spent.calls} of {budget.calls} calls made ({where} run_calls)"
        if budget.tokens is not None and spent.tokens + worst.tokens > budget.tokens:
            return (
                f"token budget reached: {spent.tokens} used, this call may use up to {worst.tokens} more, "
                f"limit {budget.tokens} ({where} run_tokens)"
            )
        worst_usd = Decimal(worst.cost_micro_usd) / MICRO
        if budget.cost_usd is not None and spent.cost_usd + worst_usd > budget.cost_usd:
            return (
                f"cost budget reached: ${spent.cost_usd:.4f} spent, this call may cost up to ${worst_usd:.4f}, "
                f"limit ${budget.cost_usd} ({where} run_cost_usd)"
            )
        return None

    async def _day_spent(self, refusal: Refusal) -> None:
        """A daily cap is spent: say so, and pause the agent until the budget renews."""
        self.log.warning("daily model budget spent", detail=refusal.message)
        await self._crossed(
            {
                "budget": "day",
                "scope": refusal.scope,
                "day": refusal.day,
                "fraction": 1.0,
                "message": refusal.message,
                "until": refusal.until,
            }
        )
        try:
            await self.pause(self.agent.name, refusal.message, refusal.until)
        except KeyError:  # removed by a reload while this run went on
            pass

    async def _crossed(self, data: dict[str, Any]) -> None:
        """A budget reached: its event, in a commit of its own."""
        await self.writer.run(lambda txn: self._post_crossed(txn, data))

    def _post_crossed(self, txn: Any, data: dict[str, Any]) -> None:
        """Post a ``budget_crossed`` event (its alert is the alerting service's business)."""
        self.records.post(txn, EventKind.BUDGET_CROSSED, {**data, "agent": self.agent.name}, self.journal.run_id)

    async def _fail(
        self,
        seq: int,
        kind: str,
        message: str,
        asked: dict[str, str] | None = None,
        *,
        retry_after: float | None = None,
    ) -> dict[str, Any]:
        error: dict[str, Any] = {"kind": kind, "message": message, "type": "ModelCallError"}
        if retry_after is not None:
            error["retry_after"] = retry_after
        journal = self.journal
        entry = await self.writer.run(lambda txn: journal.done(txn, seq, False, None, error, asked))
        if entry is not None:
            self.after(entry)
        return {"t": "result", "seq": seq, "ok": False, "replayed": False, "error": error}


def _after(tried: list[dict[str, str]], message: str) -> str:
    """``message``, preceded by the models the call failed over from, when it did."""
    if not tried:
        return message
    before = "; ".join(f"model {t['model']!r}: {t['reason']}" for t in tried)
    return f"{message} (failed over from {before})"


def _soft(crossing: Crossing) -> dict[str, Any]:
    """A soft threshold's fields, as its event and log line carry them."""
    return {
        "scope": crossing.scope,
        "day": crossing.day,
        "measure": crossing.measure,
        "fraction": crossing.fraction,
        "used": crossing.used,
        "cap": crossing.cap,
    }


def _asked(endpoint: Endpoint) -> dict[str, str]:
    """Whom a call asked, as its journal entry keeps it (telemetry names the call by it)."""
    return {"provider": endpoint.provider, "request_model": endpoint.model}


def _worst(endpoint: Endpoint, request: Request) -> Worst:
    """The most a call can use: every input token estimated high, plus the output cap."""
    from corral.models import estimate_input_tokens, micro_dollars, worst_case_cost
    from corral.models.provider import max_output_tokens

    tokens = estimate_input_tokens(request) + max_output_tokens(endpoint, request)
    price = worst_case_cost(endpoint, request)
    return Worst(tokens, micro_dollars(price) if price is not None else 0)
