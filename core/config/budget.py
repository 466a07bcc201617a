"""``[budget]`` and ``[agents.NAME.budget]``: caps on model calls' tokens, dollars and count.

An agent's budget caps one run (``run_*``) and one local calendar day (``day_*``); the
global ``[budget]`` caps a day of every agent's calls together. ``soft_alerts`` are the
fractions of a day cap at which an alert is raised, once each per day (docs/models.md).
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from decimal import Decimal
from typing import TYPE_CHECKING, Annotated

from corral.config.kinds import Dollars, Fractions, Key, PositiveInt
from corral.config.problems import Problems, table_keys

if TYPE_CHECKING:
    from corral.config.models import ModelConfig

DEFAULT_SOFT = (0.5, 0.8)


@dataclass(frozen=True)
class Caps:
    """Hard limits on model calls over some span (a run, a day); None is no limit."""

    tokens: int | None = None
    cost_usd: Decimal | None = None
    calls: int | None = None

    def __bool__(self) -> bool:
        return any(v is not None for v in (self.tokens, self.cost_usd, self.calls))


@dataclass(frozen=True)
class Budget:
    """``run`` caps one run; ``day`` caps a local calendar day; ``soft`` are the fractions of a
    day cap at which an alert is raised, once each per day."""

    run: Caps = Caps()
    day: Caps = Caps()
    soft: tuple[float, ...] = DEFAULT_SOFT


_DOLLARS = "give dollars, e.g. 0.50"


class GlobalBudgetKeys:
    """The keys of ``[budget]``: a day of every agent's calls together."""

    day_tokens: Annotated[PositiveInt, Key("give the most tokens of a day")]
    day_cost_usd: Annotated[Dollars, Key(_DOLLARS)]
    day_calls: Annotated[PositiveInt, Key("give the most model calls of a day")]
    soft_alerts: Annotated[Fractions, Key("e.g. [0.5, 0.8]")]


class AgentBudgetKeys(GlobalBudgetKeys):
    """The keys of ``[agents.NAME.budget]``: a day's, and one run's."""

    run_tokens: Annotated[PositiveInt, Key("give the most tokens of one run")]
    run_cost_usd: Annotated[Dollars, Key(_DOLLARS)]
    run_calls: Annotated[PositiveInt, Key("give the most model calls of one run")]


def read_budget(p: Problems, section: str, data: object, declared: type = AgentBudgetKeys) -> Budget:
    """A budget table (``[agents.NAME.budget]``, or ``[budget]`` with :class:`GlobalBudgetKeys`)."""
    known = table_keys(declared)
    table = p.table(section, data, f"a table with any of {', '.join(known)}")
    p.unknown(section, table, known)
    before = len(p.items)
    values = p.keys(section, table, declared)
    if len(p.items) > before:
        return Budget()
    caps = {
        span: Caps(**{kind: values.get(f"{span}_{kind}") for kind in ("tokens", "cost_usd", "calls")})
        for span in ("run", "day")
    }
    return Budget(caps["run"], caps["day"], tuple(sorted(values.get("soft_alerts", DEFAULT_SOFT))))


def unpriced_cost_caps(p: Problems, section: str, budget: Budget, models: Mapping[str, ModelConfig]) -> None:
    """A cost cap cannot be kept for a model without prices: name each such pairing.

    ``budget`` is the one at ``[section]``; ``models`` are the models it covers.
    """
    if budget.run.cost_usd is None and budget.day.cost_usd is None:
        return
    for name, model in models.items():
        if model.endpoint is not None and model.endpoint.prices is None:
            p.fail(
                section,
                None,
                f"a cost limit is set but [models.{name}] has no prices, so its cost is unknown; add "
                f"prices = {{ input = ..., output = ... }} (dollars per million tokens) to [models.{name}]",
            )
