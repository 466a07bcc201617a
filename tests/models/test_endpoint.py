"""An endpoint's settings are checked once, with every problem named by its [models.NAME] key."""

from __future__ import annotations

from decimal import Decimal

import pytest

from corral.errors import ConfigError
from corral.models import Endpoint, Prices


def test_every_bad_setting_is_reported_at_once() -> None:
    with pytest.raises(ConfigError) as caught:
        Endpoint(
            "main",
            "",
            "ftp://example.com",
            "",
            connect_timeout=0,
            read_timeout=-1,
            max_output_tokens=0,
            retry_attempts=0,
            retry_initial_wait=5,
            retry_max_wait=1,
            max_retry_after=-1,
            breaker_failures=0,
            breaker_cool_down=0,
            prices=Prices(Decimal(-1), Decimal("NaN")),
        )
    problems = caught.value.problems
    assert all(problem.startswith("[models.main] ") for problem in problems)
    keys = [problem.split()[1].rstrip(":") for problem in problems]
    assert sorted(keys) == sorted(
        [
            "provider",
            "model",
            "base_url",
            "connect_timeout",
            "read_timeout",
            "breaker_cool_down",
            "max_output_tokens",
            "retry_attempts",
            "breaker_failures",
            "max_retry_after",
            "retry_max_wait",
            "prices.input",
            "prices.output",
        ]
    )


@pytest.mark.parametrize("url", ["not a url", "http://", "127.0.0.1:11434"])
def test_a_base_url_must_be_http(url: str) -> None:
    with pytest.raises(ConfigError, match="base_url"):
        Endpoint("m", "openai", url, "x")


def test_prices_from_config_values_are_exact() -> None:
    prices = Prices.per_million(0.1, "2.5", cache_read=0.01)
    assert (prices.input, prices.output, prices.cache_read, prices.cache_write) == (
        Decimal("0.1"),
        Decimal("2.5"),
        Decimal("0.01"),
        None,
    )
