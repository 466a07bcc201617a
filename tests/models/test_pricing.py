"""Cost of a call from usage, exact in Decimal, and the worst case reserved before it."""

from __future__ import annotations

from decimal import Decimal

import pytest

from corral.models import (
    Endpoint,
    Message,
    Options,
    Prices,
    Request,
    ToolCall,
    ToolDefinition,
    Usage,
    cost,
    estimate_input_tokens,
    micro_dollars,
    worst_case_cost,
)

SONNET = Prices.per_million(3, 15, cache_read="0.30", cache_write="3.75")


def _endpoint(prices: Prices | None, max_output_tokens: int = 1000) -> Endpoint:
    return Endpoint(
        "p", "anthropic", "https://api.anthropic.com", "m", prices=prices, max_output_tokens=max_output_tokens
    )


def test_cost_prices_each_kind_of_token_at_its_rate() -> None:
    usage = Usage(input_tokens=10_000, output_tokens=2_000, cache_read_tokens=6_000, cache_write_tokens=1_000)
    # 3000 uncached * 3 + 6000 * 0.30 + 1000 * 3.75 + 2000 * 15, per million
    assert cost(_endpoint(SONNET), usage) == Decimal("0.04455")


def test_cache_prices_default_to_the_input_price() -> None:
    usage = Usage(input_tokens=1_000, output_tokens=0, cache_read_tokens=400, cache_write_tokens=100)
    assert cost(_endpoint(Prices.per_million(2, 8)), usage) == Decimal("0.002")


def test_many_small_calls_add_up_exactly() -> None:
    cheap = _endpoint(Prices.per_million(0.1, 0.4))
    total = sum((cost(cheap, Usage(7, 3)) or Decimal(0) for _ in range(10_000)), Decimal(0))
    assert total == Decimal("0.019")
    drifting = 0.0
    for _ in range(10_000):
        drifting += 0.1 * 7 / 1e6 + 0.4 * 3 / 1e6
    assert drifting != 0.019, "floats drift here; Decimal does not"


def test_an_unpriced_endpoint_has_no_cost_rather_than_zero() -> None:
    request = Request((Message.user("hi"),))
    assert cost(_endpoint(None), Usage(1, 1)) is None and worst_case_cost(_endpoint(None), request) is None
    assert cost(_endpoint(Prices.free()), Usage(10**6, 10**6)) == 0


def test_the_input_estimate_is_an_upper_bound_from_the_bytes() -> None:
    text = "héllo wörld " * 100  # 1400 bytes in UTF-8
    call = ToolCall("id1", "f", {}, '{"a": 1}')
    tool = ToolDefinition("f", "does f", {"type": "object", "properties": {}})
    request = Request((Message.user(text), Message.assistant("", (call,)), Message.tool_result("id1", "ok")), (tool,))
    schema = '{"type":"object","properties":{}}'
    expected = 16 + (8 + 1400) + (8 + 3 + 1 + 8) + (8 + 2 + 3) + (8 + 1 + 6 + len(schema))
    assert estimate_input_tokens(request) == expected


def test_the_worst_case_is_the_estimate_at_the_dearest_input_rate_plus_the_output_cap() -> None:
    request = Request((Message.user("x" * 976),))  # 16 + 8 + 976 = 1000 tokens at most
    endpoint = _endpoint(SONNET, max_output_tokens=2_000)
    assert worst_case_cost(endpoint, request) == Decimal(1000 * 3.75 + 2000 * 15) / 1_000_000
    own_cap = Request(request.messages, options=Options(max_tokens=10))
    assert worst_case_cost(endpoint, own_cap) == (Decimal("3750") + Decimal("150")) / 1_000_000


def test_the_worst_case_covers_what_the_call_then_costs() -> None:
    request = Request((Message.user("what is two plus two? " * 20),))
    endpoint = _endpoint(SONNET, max_output_tokens=50)
    actual = cost(endpoint, Usage(input_tokens=110, output_tokens=50))
    reserved = worst_case_cost(endpoint, request)
    assert actual is not None and reserved is not None and reserved >= actual


@pytest.mark.parametrize(
    ("amount", "micros"),
    [(Decimal("0.04455"), 44_550), (Decimal("0.0000001"), 1), (Decimal(0), 0), (Decimal("1.5"), 1_500_000)],
)
def test_micro_dollars_round_up(amount: Decimal, micros: int) -> None:
    assert micro_dollars(amount) == micros
