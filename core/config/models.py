"""``[models.NAME]`` tables, the budgets of ``[agents.NAME.budget]`` and the global ``[budget]``.

A model's API key is named, never written in the file: ``api_key_env`` names a variable
of the daemon's environment, read when the config is loaded. The key then lives only in
the daemon (agents' processes never see it; see docs/models.md).
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from decimal import Decimal, InvalidOperation
from typing import TYPE_CHECKING, Any

from corral.errors import ConfigError

if TYPE_CHECKING:
    from corral.models.endpoint import Endpoint

_NUMBERS = {
    "connect_timeout": float,
    "read_timeout": float,
    "max_output_tokens": int,
    "retry_attempts": int,
    "retry_initial_wait": float,
    "retry_max_wait": float,
    "max_retry_after": float,
    "breaker_failures": int,
    "breaker_cool_down": float,
}
MODEL_KEYS = ("provider", "base_url", "model", "api_key_env", "prices", "breaker_wait", *_NUMBERS)
DEFAULT_BREAKER_WAIT = 300.0
PRICE_KEYS = ("input", "output", "cache_read", "cache_write")
CAP_KINDS = ("tokens", "cost_usd", "calls")
AGENT_BUDGET_KEYS = (*(f"run_{k}" for k in CAP_KINDS), *(f"day_{k}" for k in CAP_KINDS), "soft_alerts")
GLOBAL_BUDGET_KEYS = (*(f"day_{k}" for k in CAP_KINDS), "soft_alerts")
DEFAULT_SOFT = (0.5, 0.8)


@dataclass(frozen=True)
class ModelConfig:
    """One endpoint, the environment variable its key should come from if it is missing, and
    how long a call waits for the endpoint's open circuit breaker (0: the run fails at once).

    ``endpoint`` is None for ``provider = "auto"``: the daemon finds one when it is first
    needed (an API key in its environment, or a local Ollama; :mod:`corral.models.detection`).
    """

    endpoint: Endpoint | None
    missing_key: str | None = None
    breaker_wait: float = DEFAULT_BREAKER_WAIT


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


def read_models(where: str, data: object, environ: Mapping[str, str]) -> tuple[dict[str, ModelConfig], list[str]]:
    """Every ``[models.NAME]`` table; returns the models and the problems found."""
    from corral.models.endpoint import Endpoint, Prices
    from corral.secrets import Secret

    models: dict[str, ModelConfig] = {}
    problems: list[str] = []
    if not isinstance(data, dict):
        return models, [f"{where}: [models]: must be tables such as [models.NAME]"]
    for name, table in data.items():
        at = f"{where}: [models.{name}]"
        if not isinstance(table, dict):
            problems.append(f"{at}: must be a table with provider, base_url and model")
            continue
        unknown = sorted(set(table) - set(MODEL_KEYS))
        problems += [f"{at} {key}: unknown key; known keys: {', '.join(MODEL_KEYS)}" for key in unknown]
        breaker_wait = table.get("breaker_wait", DEFAULT_BREAKER_WAIT)
        if isinstance(breaker_wait, bool) or not isinstance(breaker_wait, int | float) or breaker_wait < 0:
            problems.append(
                f"{at} breaker_wait: {breaker_wait!r} must be the seconds a call waits for the endpoint to recover"
                " while its circuit breaker is open (0 to fail the run at once)"
            )
        if table.get("provider") == "auto":
            chosen = sorted(set(table) & set(MODEL_KEYS) - {"provider", "breaker_wait"})
            problems += [
                f'{at} {key}: with provider = "auto" corral chooses the endpoint itself; remove {key}, or name '
                'the provider ("openai" or "anthropic") to configure it'
                for key in chosen
            ]
            if not any(p.startswith(at) for p in problems):
                models[name] = ModelConfig(None, None, float(breaker_wait))
            continue
        values: dict[str, Any] = {}
        for key in ("provider", "base_url", "model"):
            value = table.get(key)
            if not isinstance(value, str) or not value:
                problems.append(f"{at} {key}: is required and must be a string")
            values[key] = value if isinstance(value, str) else ""
        for key, kind in _NUMBERS.items():
            if key in table:
                value = table[key]
                ok = isinstance(value, int | float) and not isinstance(value, bool)
                if kind is int and not isinstance(value, int):
                    ok = False
                if not ok:
                    problems.append(f"{at} {key}: {value!r} is not a number of the right kind ({kind.__name__})")
                else:
                    values[key] = kind(value)
        prices = table.get("prices")
        if prices is not None:
            values["prices"] = _prices(at, prices, problems, Prices)
        missing = None
        key_env = table.get("api_key_env")
        if key_env is not None:
            if not isinstance(key_env, str) or not key_env:
                problems.append(f'{at} api_key_env: must name an environment variable, e.g. "OPENAI_API_KEY"')
            elif environ.get(key_env):
                values["api_key"] = Secret(environ[key_env], key_env)
                values["key_source"] = f'[models.{name}] api_key_env = "{key_env}"'
            else:
                missing = key_env
        if any(p.startswith(at) for p in problems):
            continue
        try:
            models[name] = ModelConfig(Endpoint(name=name, **values), missing, float(breaker_wait))
        except ConfigError as exc:
            problems += [f"{where}: {problem}" for problem in exc.problems]
    return models, problems


def _prices(at: str, data: object, problems: list[str], prices: Any) -> Any:
    if not isinstance(data, dict) or not {"input", "output"} <= set(data) or set(data) - set(PRICE_KEYS):
        problems.append(
            f"{at} prices: must be a table with input and output (and optionally cache_read, cache_write), "
            "in dollars per million tokens, e.g. prices = { input = 0.4, output = 1.6 }"
        )
        return None
    try:
        return prices.per_million(**{k: Decimal(str(v)) for k, v in data.items()})
    except (InvalidOperation, ValueError, TypeError, ConfigError) as exc:
        problems.append(f"{at} prices: {exc}")
        return None


def read_budget(at: str, data: object, keys: tuple[str, ...] = AGENT_BUDGET_KEYS) -> tuple[Budget, list[str]]:
    """A budget table (``[agents.NAME.budget]`` or ``[budget]``); returns it and the problems found."""
    if data is None:
        return Budget(), []
    if not isinstance(data, dict):
        return Budget(), [f"{at}: must be a table with any of {', '.join(keys)}"]
    problems = [f"{at} {key}: unknown key; known keys: {', '.join(keys)}" for key in sorted(set(data) - set(keys))]
    caps: dict[str, Caps] = {}
    for span in ("run", "day"):
        values: dict[str, Any] = {}
        for kind in CAP_KINDS:
            key = f"{span}_{kind}"
            value = data.get(key)
            if value is None or key not in keys:
                continue
            if kind == "cost_usd":
                if isinstance(value, bool) or not isinstance(value, int | float) or value <= 0:
                    problems.append(f"{at} {key}: {value!r} is not a positive amount of dollars, e.g. 0.50")
                else:
                    values[kind] = Decimal(str(value))
            elif isinstance(value, bool) or not isinstance(value, int) or value <= 0:
                problems.append(f"{at} {key}: {value!r} is not a positive integer")
            else:
                values[kind] = value
        caps[span] = Caps(**values)
    soft = data.get("soft_alerts", list(DEFAULT_SOFT))
    if not isinstance(soft, list) or not all(
        isinstance(f, int | float) and not isinstance(f, bool) and 0 < f < 1 for f in soft
    ):
        problems.append(f"{at} soft_alerts: {soft!r} must be a list of fractions between 0 and 1, e.g. [0.5, 0.8]")
        soft = list(DEFAULT_SOFT)
    if problems:
        return Budget(), problems
    return Budget(caps["run"], caps["day"], tuple(sorted(float(f) for f in soft))), []


def unpriced_cost_caps(budgets: Mapping[str, Budget], models: Mapping[str, ModelConfig]) -> list[str]:
    """A cost cap cannot be kept for a model without prices: name each such pairing.

    ``budgets`` maps a config location (``[agents.NAME.budget]``) to its budget, ``models``
    the models that budget covers.
    """
    problems = []
    for where, budget in budgets.items():
        if budget.run.cost_usd is None and budget.day.cost_usd is None:
            continue
        for name, model in models.items():
            if model.endpoint is not None and model.endpoint.prices is None:
                problems.append(
                    f"{where}: a cost limit is set but [models.{name}] has no prices, so its cost is unknown; add "
                    f"prices = {{ input = ..., output = ... }} (dollars per million tokens) to [models.{name}]"
                )
    return problems
