"""One configured model endpoint (a ``[models.NAME]`` table).

The config loader builds an :class:`Endpoint` from the file once every value is checked
(:mod:`corral.config.models` declares each key's kind), so an endpoint holds no wrong
value. Field names are the TOML keys, except ``api_key`` (a
:class:`~corral.secrets.Secret` named after the variable the loader read it from,
``api_key_env``) and ``key_source`` (where the loader found it, e.g. ``[models.default]
api_key_env = "OPENAI_API_KEY"``, quoted in "wrong key" errors).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from decimal import Decimal

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
