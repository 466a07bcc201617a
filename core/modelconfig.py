"""``[models.NAME]`` tables and the per-run model budget of ``[agents.NAME.budget]``.

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
MODEL_KEYS = ("provider", "base_url", "model", "api_key_env", "prices", *_NUMBERS)
PRICE_KEYS = ("input", "output", "cache_read", "cache_write")
BUDGET_KEYS = ("run_tokens", "run_cost_usd", "run_calls")


@dataclass(frozen=True)
class ModelConfig:
    """One endpoint, and the environment variable its key should come from if it is missing."""

    endpoint: Endpoint
    missing_key: str | None = None


@dataclass(frozen=True)
class RunBudget:
    """Hard limits for one run's model calls; None is no limit."""

    tokens: int | None = None
    cost_usd: Decimal | None = None
    calls: int | None = None


def read_models(where: str, data: object, environ: Mapping[str, str]) -> tuple[dict[str, ModelConfig], list[str]]:
    """Every ``[models.NAME]`` table; returns the models and the problems found."""
    from corral.models.endpoint import Endpoint, Prices, Secret

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
                values["api_key"] = Secret(environ[key_env])
                values["key_source"] = f'[models.{name}] api_key_env = "{key_env}"'
            else:
                missing = key_env
        if any(p.startswith(at) for p in problems):
            continue
        try:
            models[name] = ModelConfig(Endpoint(name=name, **values), missing)
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


def read_budget(at: str, data: object) -> tuple[RunBudget, list[str]]:
    """``[agents.NAME.budget]``: run_tokens, run_cost_usd, run_calls."""
    if data is None:
        return RunBudget(), []
    if not isinstance(data, dict):
        return RunBudget(), [f"{at}: must be a table with {', '.join(BUDGET_KEYS)}"]
    problems = [
        f"{at} {key}: unknown key; known keys: {', '.join(BUDGET_KEYS)}" for key in set(data) - set(BUDGET_KEYS)
    ]
    tokens, calls, cost = data.get("run_tokens"), data.get("run_calls"), data.get("run_cost_usd")
    for key, value in (("run_tokens", tokens), ("run_calls", calls)):
        if value is not None and (isinstance(value, bool) or not isinstance(value, int) or value <= 0):
            problems.append(f"{at} {key}: {value!r} is not a positive integer")
    if cost is not None and (isinstance(cost, bool) or not isinstance(cost, int | float) or cost <= 0):
        problems.append(f"{at} run_cost_usd: {cost!r} is not a positive amount of dollars, e.g. 0.50")
    if problems:
        return RunBudget(), problems
    return RunBudget(tokens, Decimal(str(cost)) if cost is not None else None, calls), []
