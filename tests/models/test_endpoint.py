"""An endpoint's settings are checked once, with every problem named by its [models.NAME] key."""

from __future__ import annotations

from decimal import Decimal
from pathlib import Path

import pytest

from corral.config import parse_config
from corral.errors import ConfigError
from corral.models import Prices


def _models(tmp_path: Path, table: dict[str, object]) -> list[str]:
    """The problems of a config whose one ``[models.main]`` is ``table``."""
    with pytest.raises(ConfigError) as caught:
        parse_config({"models": {"main": table}}, tmp_path / "corral.toml", {})
    where = f"{tmp_path / 'corral.toml'}: "
    assert all(problem.startswith(where) for problem in caught.value.problems)
    return [problem.removeprefix(where) for problem in caught.value.problems]


def test_every_bad_setting_is_reported_at_once(tmp_path: Path) -> None:
    problems = _models(
        tmp_path,
        {
            "provider": "",
            "base_url": "ftp://example.com",
            "model": "",
            "connect_timeout": 0,
            "read_timeout": -1,
            "max_output_tokens": 0,
            "retry_attempts": 0,
            "retry_initial_wait": 5,
            "retry_max_wait": 1,
            "max_retry_after": -1,
            "breaker_failures": 0,
            "breaker_cool_down": 0,
            "prices": {"input": -1, "output": float("nan")},
        },
    )
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
def test_a_base_url_must_be_http(url: str, tmp_path: Path) -> None:
    [problem] = _models(tmp_path, {"provider": "openai", "base_url": url, "model": "x"})
    assert problem.startswith(f"[models.main] base_url: {url!r} is not an http(s) URL")


def test_prices_from_config_values_are_exact() -> None:
    prices = Prices.per_million(0.1, "2.5", cache_read=0.01)
    assert (prices.input, prices.output, prices.cache_read, prices.cache_write) == (
        Decimal("0.1"),
        Decimal("2.5"),
        Decimal("0.01"),
        None,
    )
