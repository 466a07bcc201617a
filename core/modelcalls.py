"""``ctx.model`` on the daemon's side: checks, the budget, the call, and its journal entry.

The agent's ``model`` step is journaled "started" on the writer thread like any step
(:mod:`corral.steps`); the call itself is made here, on the event loop, through the
endpoint's shared :class:`corral.models.ModelClient` (retries, breaker). Its answer or
final error is journaled with what it cost before the agent hears of it, so a resumed
run gets every finished call from the journal, free and not billed again.

The run's budget (``[agents.NAME.budget]``) is checked before each call against what the
run has spent so far plus the call's worst case (its output cap at the model's price);
a call that would cross a hard limit is not made and the run stops.
"""

from __future__ import annotations

from dataclasses import dataclass
from decimal import Decimal
from typing import TYPE_CHECKING, Any

from corral.outcome import Outcome, RunEnded, failure
from corral.states import RunState

if TYPE_CHECKING:
    from corral.config import AgentConfig
    from corral.engine import Engine
    from corral.journal import Journal
    from corral.models import Request
    from corral.tools import ToolSpec


@dataclass(frozen=True)
class ModelCall:
    """Forwarded to the event loop by :mod:`corral.steps`: make this call for step ``seq``."""

    seq: int
    name: str
    args: dict[str, Any]


@dataclass
class Spent:
    """What a run's model calls have used so far."""

    tokens: int = 0
    cost_usd: Decimal = Decimal(0)
    calls: int = 0

    def add(self, entry: dict[str, Any]) -> None:
        usage = entry.get("usage") or {}
        self.tokens += int(usage.get("input_tokens", 0)) + int(usage.get("output_tokens", 0))
        self.cost_usd += Decimal(entry.get("cost_usd") or 0)
        self.calls += 1


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
    try:
        build_request(args, granted)
    except ValueError as exc:
        return f"invalid model request: {exc}"
    return None


class ModelCaller:
    """Makes one attempt's model calls, in order, and keeps its budget."""

    def __init__(
        self, engine: Engine, agent: AgentConfig, journal: Journal, log: Any, granted: dict[str, ToolSpec | None]
    ) -> None:
        self.engine = engine
        self.agent = agent
        self.journal = journal
        self.log = log
        self.spent = Spent()
        self.granted = granted

    async def load_spent(self) -> None:
        """What the run's earlier attempts already spent (their calls replay free)."""
        records, run_id = self.engine.records, self.journal.run_id

        def read(txn: Any) -> list[dict[str, Any]]:
            return [e for e in records.steps(txn, run_id) if e["kind"] == "model" and e.get("status") == "done"]

        for entry in await self.engine.writer.run(read):
            self.spent.add(entry)

    async def call(self, item: ModelCall) -> dict[str, Any]:
        """Make the call; journal its outcome; return the answer for the agent.

        Raises RunEnded when the run must stop: a hard budget limit (after journaling the
        refusal), or a transient failure that outlasted every retry (the step stays
        "started", so the resumed run makes the call again).
        """
        from corral.models import ModelError, cost, micro_dollars, worst_case_cost

        model = resolve(self.agent, item.name)
        assert model is not None  # checked before the step was journaled
        config = self.engine.config.models[model]
        request = build_request(item.args, self.granted)
        if config.missing_key:
            return await self._fail(
                item.seq,
                "not_configured",
                f"model {model!r} is not configured: its API key is not in the daemon's environment; set "
                f'{config.missing_key} where corral runs ([models.{model}] api_key_env = "{config.missing_key}")',
            )
        over = self._over_budget(request, config.endpoint.max_output_tokens, worst_case_cost(config.endpoint, request))
        if over:
            await self._fail(item.seq, "budget", over)
            raise RunEnded(Outcome(RunState.FAILED, failure("budget", over)))
        client = self.engine.model_client(model)

        def on_attempt(attempt: Any) -> None:
            if attempt.status != 200 and attempt.kind:
                self.log.warning(
                    "model call retry" if attempt.wait else "model call failed",
                    seq=item.seq,
                    model=model,
                    status=attempt.status,
                    error=attempt.kind,
                    message=attempt.message,
                    wait_s=attempt.wait,
                )

        try:
            response = await client.call(request, on_attempt=on_attempt)
        except ModelError as exc:
            if exc.retryable:
                message = f"model {model!r} did not answer after every retry: {exc}"
                raise RunEnded(Outcome(RunState.INTERRUPTED, failure("model", message), retry=True)) from None
            return await self._fail(item.seq, exc.kind, str(exc))
        price = cost(config.endpoint, response.usage)
        usage = {"input_tokens": response.usage.input_tokens, "output_tokens": response.usage.output_tokens}
        spent = {"usage": usage, "cost_usd": str(price) if price is not None else None, "model": model}
        if price is not None:
            spent["cost_micro_usd"] = micro_dollars(price)
        value = response.to_dict()
        journal, seq = self.journal, item.seq
        entry = await self.engine.writer.run(lambda txn: journal.done(txn, seq, True, value, None, spent))
        if entry is not None:
            self.spent.add(entry)
        return {"t": "result", "seq": seq, "ok": True, "replayed": False, "value": value}

    def _over_budget(self, request: Request, output_cap: int, worst: Decimal | None) -> str | None:
        budget, spent, where = self.agent.budget, self.spent, f"[agents.{self.agent.name}.budget]"
        if budget.calls is not None and spent.calls + 1 > budget.calls:
            return f"model call budget reached: {spent.calls} of {budget.calls} calls made ({where} run_calls)"
        if budget.tokens is not None:
            cap = request.options.max_tokens or output_cap
            if spent.tokens + cap > budget.tokens:
                return (
                    f"token budget reached: {spent.tokens} used, this call may use up to {cap} more, "
                    f"limit {budget.tokens} ({where} run_tokens)"
                )
        if budget.cost_usd is not None and spent.cost_usd + (worst or 0) > budget.cost_usd:
            return (
                f"cost budget reached: ${spent.cost_usd} spent, this call may cost up to ${worst}, "
                f"limit ${budget.cost_usd} ({where} run_cost_usd)"
            )
        return None

    async def _fail(self, seq: int, kind: str, message: str) -> dict[str, Any]:
        error = {"kind": kind, "message": message, "type": "ModelCallError"}
        journal = self.journal
        await self.engine.writer.run(lambda txn: journal.done(txn, seq, False, None, error))
        return {"t": "result", "seq": seq, "ok": False, "replayed": False, "error": error}
