"""``[models.NAME]``: the model endpoints agents may call.

A model's API key is named, never written in the file: ``api_key_env`` names a variable
of the daemon's environment, read when the config is loaded. The key then lives only in
the daemon (agents' processes never see it; see docs/models.md).
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Annotated, Any

from corral.config.kinds import EnvName, HttpUrl, Key, PositiveInt, PositiveSeconds, Price, Seconds, Text, Texts
from corral.config.problems import Problems, table_keys
from corral.models.endpoint import Endpoint, Prices
from corral.secrets import Secret

DEFAULT_BREAKER_WAIT = 300.0
_AUTO = "auto"


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
    fallbacks: tuple[str, ...] = ()
    """The models a call goes to, in order, when this one cannot answer (its breaker open,
    its retries exhausted, a daily budget refusing it): :mod:`corral.run.modelcalls`."""


class ModelKeys:
    """The keys of one ``[models.NAME]`` table; what is not given keeps the endpoint's default."""

    provider: Annotated[Text, Key('"openai" (any Chat Completions server), "anthropic" or "auto"', required=True)]
    base_url: Annotated[
        HttpUrl, Key('give the endpoint\'s URL, e.g. "https://api.openai.com/v1" or "http://127.0.0.1:11434/v1"')
    ]
    model: Annotated[Text, Key('give the provider\'s model id, e.g. model = "gpt-4.1-mini"')]
    api_key_env: Annotated[EnvName, Key('name the variable holding the key, e.g. "OPENAI_API_KEY"')]
    breaker_wait: Annotated[
        Seconds, Key("give the seconds a call waits for the endpoint to recover while its breaker is open (0: fail)")
    ]
    fallbacks: Annotated[Texts, Key('list the [models.NAME] to fail over to, in order, e.g. fallbacks = ["local"]')]
    connect_timeout: Annotated[PositiveSeconds, Key("give the seconds to wait for a connection")]
    read_timeout: Annotated[PositiveSeconds, Key("give the seconds to wait for an answer")]
    max_output_tokens: Annotated[PositiveInt, Key("give the most tokens one answer may hold")]
    retry_attempts: Annotated[PositiveInt, Key("give how many tries a call gets in all")]
    retry_initial_wait: Annotated[Seconds, Key("give the wait before the second try")]
    retry_max_wait: Annotated[Seconds, Key("give the longest wait between tries")]
    max_retry_after: Annotated[Seconds, Key("give the longest wait a server's Retry-After may ask for")]
    breaker_failures: Annotated[PositiveInt, Key("give how many failures in a row open the breaker")]
    breaker_cool_down: Annotated[PositiveSeconds, Key("give the seconds an open breaker stays open")]


class PriceKeys:
    """``prices = { input = ..., output = ... }``: dollars per million tokens."""

    input: Annotated[Price, Key(required=True)]
    output: Annotated[Price, Key(required=True)]
    cache_read: Annotated[Price, Key()]
    cache_write: Annotated[Price, Key()]


_PRICES = "give dollars per million tokens, e.g. prices = { input = 0.4, output = 1.6 }"


def read_models(p: Problems, data: object, environ: Mapping[str, str]) -> dict[str, ModelConfig]:
    """Every ``[models.NAME]`` table."""
    models: dict[str, ModelConfig] = {}
    for name, raw in p.table("models", data, "tables such as [models.NAME]").items():
        section = f"models.{name}"
        table = p.table(section, raw, "a table with provider, base_url and model")
        p.unknown(section, table, [*table_keys(ModelKeys), "prices"])
        before = len(p.items)
        values = p.keys(section, table, ModelKeys)
        breaker_wait = values.pop("breaker_wait", DEFAULT_BREAKER_WAIT)
        fallbacks = tuple(values.pop("fallbacks", ()))
        if table.get("provider") == _AUTO:
            for key in sorted(set(table) - {"provider", "breaker_wait", "fallbacks"}):
                p.fail(
                    section,
                    key,
                    f'with provider = "auto" corral chooses the endpoint itself; remove {key}, or name '
                    'the provider ("openai" or "anthropic") to configure it',
                )
            if len(p.items) == before:
                models[name] = ModelConfig(None, None, breaker_wait, fallbacks)
            continue
        for key in ("base_url", "model"):
            if key not in table:
                p.fail(section, key, f"is required; {table_keys(ModelKeys)[key][1].fix}")
        _check_waits(p, section, values)
        prices = _read_prices(p, section, table.get("prices"))
        missing = None
        key_env = values.pop("api_key_env", None)
        if key_env is not None:
            if environ.get(key_env):
                values["api_key"] = Secret(environ[key_env], key_env)
                values["key_source"] = f'[models.{name}] api_key_env = "{key_env}"'
            else:
                missing = key_env
        if len(p.items) == before:
            endpoint = Endpoint(name=name, prices=Prices(**prices) if prices else None, **values)
            models[name] = ModelConfig(endpoint, missing, breaker_wait, fallbacks)
    _check_fallbacks(p, models)
    return models


def _check_fallbacks(p: Problems, models: Mapping[str, ModelConfig]) -> None:
    """Each fallback names another configured model, once."""
    for name, model in models.items():
        seen: set[str] = set()
        for fallback in model.fallbacks:
            if fallback == name:
                p.fail(f"models.{name}", "fallbacks", f"{name!r} cannot be its own fallback; name another model")
            elif fallback not in models:
                known = ", ".join(sorted(set(models) - {name})) or "none"
                p.fail(
                    f"models.{name}",
                    "fallbacks",
                    f"{fallback!r} is not a configured model (configured: {known}); add [models.{fallback}] or "
                    "remove it",
                )
            elif fallback in seen:
                p.fail(f"models.{name}", "fallbacks", f"{fallback!r} is listed twice; keep one")
            seen.add(fallback)


def _check_waits(p: Problems, section: str, values: Mapping[str, Any]) -> None:
    """What no single key's kind can say: the longest wait between tries is not below the first."""
    first, most = values.get("retry_initial_wait", 1.0), values.get("retry_max_wait", 30.0)
    if most < first:
        p.fail(
            section, "retry_max_wait", f"{most:g}s is less than retry_initial_wait {first:g}s; make it at least as long"
        )


def _read_prices(p: Problems, section: str, data: object) -> dict[str, Any]:
    """``prices`` as keys ``prices.input`` ... of the model's own table."""
    if data is None:
        return {}
    if not isinstance(data, Mapping):
        p.fail(
            section,
            "prices",
            f"must be a table with input and output (and optionally cache_read, cache_write), {_PRICES}",
        )
        return {}
    flat = {f"prices.{key}": value for key, value in data.items()}
    p.unknown(section, flat, [f"prices.{key}" for key in table_keys(PriceKeys)])
    prices: dict[str, Any] = {}
    for key, (kind, declared) in table_keys(PriceKeys).items():
        if key in data:
            prices[key] = p.value(section, flat, f"prices.{key}", kind, None, _PRICES)
        elif declared.required:
            p.fail(section, f"prices.{key}", f"is required; {_PRICES}")
    return prices
