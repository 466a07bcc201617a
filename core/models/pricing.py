"""What a model call costs, exactly, and the most it can cost before it is made.

The daemon reserves :func:`worst_case_cost` against the run's, the agent's and the
day's money budgets before the call, then settles with :func:`cost` of the usage the
provider reported. Amounts are ``Decimal`` US dollars, exact for any number of calls;
:func:`micro_dollars` rounds one up to whole millionths of a dollar for integer counters.
An endpoint without a price table gives ``None``: its cost is unknown, not zero (a local
model says so with ``Prices.free()``).
"""

from __future__ import annotations

import json
from decimal import ROUND_CEILING, Decimal

from corral.models.endpoint import Endpoint
from corral.models.provider import max_output_tokens
from corral.models.types import Request, Usage

_MILLION = Decimal(1_000_000)
_PER_MESSAGE = 8  # role markers and separators the chat template adds around each turn
_PER_REQUEST = 16  # the template's framing of the whole conversation and its tool list


def cost(endpoint: Endpoint, usage: Usage) -> Decimal | None:
    """The price of ``usage`` at ``endpoint``: uncached input, cache reads, cache writes, output, each at its rate."""
    prices = endpoint.prices
    if prices is None:
        return None
    cache_read = prices.cache_read if prices.cache_read is not None else prices.input
    cache_write = prices.cache_write if prices.cache_write is not None else prices.input
    uncached = max(0, usage.input_tokens - usage.cache_read_tokens - usage.cache_write_tokens)
    total = (
        uncached * prices.input
        + usage.cache_read_tokens * cache_read
        + usage.cache_write_tokens * cache_write
        + usage.output_tokens * prices.output
    )
    return total / _MILLION


def estimate_input_tokens(request: Request) -> int:
    """An upper bound on the input tokens ``request`` will be billed for.

    Byte-level BPE tokenizers (OpenAI's, Anthropic's, Llama's) never make a token of
    less than one byte, so the UTF-8 size of the text, tool calls and tool schemas,
    plus the chat template's few tokens per turn, cannot be exceeded. It is typically
    three to four times the real count: safe to reserve, settled by :func:`cost`.
    """
    size = _PER_REQUEST
    for message in request.messages:
        size += _PER_MESSAGE + len(message.text.encode())
        for call in message.tool_calls:
            size += len(call.id.encode()) + len(call.name.encode()) + len(call.arguments_json().encode())
        size += len((message.tool_call_id or "").encode())
    for tool in request.tools:
        schema = json.dumps(tool.parameters, ensure_ascii=False, separators=(",", ":"))
        size += _PER_MESSAGE + len(tool.name.encode()) + len(tool.description.encode()) + len(schema.encode())
    return size


def worst_case_cost(endpoint: Endpoint, request: Request) -> Decimal | None:
    """The most ``request`` can cost at ``endpoint``: every input token at the dearest input rate, plus the output cap.

    The output cap is the ``max_tokens`` the adapter sends, so the model cannot exceed it.
    """
    prices = endpoint.prices
    if prices is None:
        return None
    dearest_input = max(prices.input, prices.cache_write or prices.input)
    input_cost = estimate_input_tokens(request) * dearest_input
    output_cost = max_output_tokens(endpoint, request) * prices.output
    return (input_cost + output_cost) / _MILLION


def micro_dollars(amount: Decimal) -> int:
    """``amount`` in millionths of a dollar, rounded up so that a reservation never falls short."""
    return int((amount * _MILLION).to_integral_value(rounding=ROUND_CEILING))
