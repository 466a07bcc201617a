"""One configured model endpoint (a ``[models.NAME]`` table).

The config loader builds an :class:`Endpoint` from the file; ``Endpoint`` checks every
value once and raises :class:`~corral.errors.ConfigError` listing each problem with the
``[models.NAME]`` key to fix (the loader adds the file name). Field names are the TOML
keys, except ``api_key`` (a :class:`~corral.secrets.Secret` named after the variable the
loader read it from, ``api_key_env``) and ``key_source`` (where the loader found it, e.g.
``[models.default] api_key_env = "OPENAI_API_KEY"``, quoted in "wrong key" errors).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from decimal import Decimal

import httpx

from corral.errors import ConfigError
from corral.secrets import Secret


@dataclass(frozen=True, slots=True)
class Prices:
    """US dollars per million tokens (``[models.NAME.prices]``).

    Cache prices default to the input price when the provider has no separate one.
    Decimal throughout, so adding up thousands of small calls does not drift.
    """

    input: Decimal
    output: Decimal
    cache_read: Decimal | None = None
    cache_write: Decimal | None = None

    @classmethod
    def per_million(
        cls,
        input: str | int | float | Decimal,
        output: str | int | float | Decimal,
        cache_read: str | int | float | Decimal | None = None,
        cache_write: str | int | float | Decimal | None = None,
    ) -> Prices:
        """Build from config values; floats go through ``str`` so ``0.1`` stays exactly 0.1."""

        def money(value: str | int | float | Decimal | None) -> Decimal | None:
            return None if value is None else Decimal(str(value))

        return cls(Decimal(str(input)), Decimal(str(output)), money(cache_read), money(cache_write))

    @classmethod
    def free(cls) -> Prices:
        """A local model: every token costs nothing."""
        return cls(Decimal(0), Decimal(0))


@dataclass(frozen=True, slots=True)
class Endpoint:
    """Where and how to call one model, with its retry, breaker and price settings.

    Retries: ``retry_attempts`` tries in all, waiting a random time between 0 and
    ``retry_initial_wait * 2**(n-1)`` (capped at ``retry_max_wait``) before try n+1, or
    longer when the server says so (``Retry-After``), but never more than
    ``max_retry_after``. Breaker: ``breaker_failures`` consecutive failures open it for
    ``breaker_cool_down`` seconds.
    """

    name: str
    provider: str
    base_url: str
    model: str
    api_key: Secret | None = None
    key_source: str = ""
    connect_timeout: float = 10.0
    read_timeout: float = 120.0
    max_output_tokens: int = 4096
    retry_attempts: int = 4
    retry_initial_wait: float = 1.0
    retry_max_wait: float = 30.0
    max_retry_after: float = 120.0
    breaker_failures: int = 5
    breaker_cool_down: float = 30.0
    prices: Prices | None = field(default=None)

    def __post_init__(self) -> None:
        problems = self._problems()
        if problems:
            raise ConfigError([f"[models.{self.name}] {problem}" for problem in problems])

    def _problems(self) -> list[str]:
        problems: list[str] = []
        if not self.provider:
            problems.append('provider: is empty; use "openai" (any Chat Completions server) or "anthropic"')
        if not self.model:
            problems.append('model: is empty; set the provider\'s model id, e.g. model = "gpt-4.1-mini"')
        try:
            url = httpx.URL(self.base_url)
            valid_url = url.scheme in ("http", "https") and bool(url.host)
        except httpx.InvalidURL:
            valid_url = False
        if not valid_url:
            problems.append(
                f'base_url: {self.base_url!r} is not an http(s) URL; e.g. "https://api.openai.com/v1",'
                ' "http://127.0.0.1:11434/v1" or "https://api.anthropic.com"'
            )
        positive = {
            "connect_timeout": self.connect_timeout,
            "read_timeout": self.read_timeout,
            "breaker_cool_down": self.breaker_cool_down,
        }
        problems += [f"{key}: must be more than 0 seconds, got {val}" for key, val in positive.items() if val <= 0]
        at_least_one = {
            "max_output_tokens": self.max_output_tokens,
            "retry_attempts": self.retry_attempts,
            "breaker_failures": self.breaker_failures,
        }
        problems += [f"{key}: must be at least 1, got {value}" for key, value in at_least_one.items() if value < 1]
        not_negative = {"retry_initial_wait": self.retry_initial_wait, "max_retry_after": self.max_retry_after}
        problems += [f"{key}: must not be negative, got {value}" for key, value in not_negative.items() if value < 0]
        if self.retry_max_wait < self.retry_initial_wait:
            problems.append(
                f"retry_max_wait: {self.retry_max_wait} is less than retry_initial_wait {self.retry_initial_wait};"
                " make it at least as long"
            )
        if self.prices is not None:
            for name in ("input", "output", "cache_read", "cache_write"):
                price = getattr(self.prices, name)
                if price is not None and (not price.is_finite() or price < 0):
                    problems.append(f"prices.{name}: must be a non-negative number of dollars per million tokens")
        return problems
