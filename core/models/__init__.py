"""The model gateway: the daemon's side of ``ctx.model``.

Agents never hold API keys; the daemon calls models for them through a
:class:`ModelClient` per configured endpoint, which speaks the provider's API through
the adapter a provider plugin registered (:mod:`corral.models.provider` says what an
adapter is; the built-ins, OpenAI Chat Completions and Anthropic Messages, are in
:mod:`corral.plugins.model_providers`), retries what is transient with full-jitter
backoff and Retry-After, and shares a circuit breaker among all callers of the endpoint.
:mod:`corral.models.pricing` prices calls before and after; :mod:`corral.models.detection`
finds a model for the examples.

Nothing here is global: the daemon creates the clients, passes them down, and closes
them.
"""

import importlib
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from corral.breaker import BreakerChange, BreakerState, CircuitBreaker, Permit
    from corral.models.client import ModelClient
    from corral.models.detection import Undetected, detect
    from corral.models.endpoint import Endpoint, Prices
    from corral.models.errors import KINDS, InvalidRequest, Kind, ModelError
    from corral.models.pricing import cost, estimate_input_tokens, micro_dollars, worst_case_cost
    from corral.models.provider import Adapter, HttpCall
    from corral.models.retry import Timing
    from corral.models.tries import Try
    from corral.models.types import (
        FinishReason,
        Message,
        Options,
        Request,
        Response,
        ResponseFormat,
        Role,
        ToolCall,
        ToolChoice,
        ToolDefinition,
        Usage,
        parse_arguments,
    )
    from corral.retrypolicy import retry_after_seconds

_WHERE = {
    "BreakerChange": "corral.breaker",
    "BreakerState": "corral.breaker",
    "CircuitBreaker": "corral.breaker",
    "Permit": "corral.breaker",
    "ModelClient": "corral.models.client",
    "Undetected": "corral.models.detection",
    "detect": "corral.models.detection",
    "Endpoint": "corral.models.endpoint",
    "Prices": "corral.models.endpoint",
    "Secret": "corral.secrets",
    "KINDS": "corral.models.errors",
    "InvalidRequest": "corral.models.errors",
    "Kind": "corral.models.errors",
    "ModelError": "corral.models.errors",
    "cost": "corral.models.pricing",
    "estimate_input_tokens": "corral.models.pricing",
    "micro_dollars": "corral.models.pricing",
    "worst_case_cost": "corral.models.pricing",
    "Adapter": "corral.models.provider",
    "HttpCall": "corral.models.provider",
    "Try": "corral.models.tries",
    "Timing": "corral.models.retry",
    "retry_after_seconds": "corral.retrypolicy",
    "FinishReason": "corral.models.types",
    "Message": "corral.models.types",
    "Options": "corral.models.types",
    "Request": "corral.models.types",
    "Response": "corral.models.types",
    "ResponseFormat": "corral.models.types",
    "Role": "corral.models.types",
    "ToolCall": "corral.models.types",
    "ToolChoice": "corral.models.types",
    "ToolDefinition": "corral.models.types",
    "Usage": "corral.models.types",
    "parse_arguments": "corral.models.types",
}
"""Where each public name lives; imported on first use, so an agent's process can load
:mod:`corral.models.types` for ``ctx.model`` without the HTTP client (httpx takes ~0.5 s)."""


def __getattr__(name: str) -> Any:
    if name not in _WHERE:
        raise AttributeError(f"module 'corral.models' has no attribute {name!r}")
    return getattr(importlib.import_module(_WHERE[name]), name)


__all__ = [
    "KINDS",
    "Adapter",
    "Try",
    "BreakerChange",
    "BreakerState",
    "CircuitBreaker",
    "Endpoint",
    "FinishReason",
    "HttpCall",
    "InvalidRequest",
    "Kind",
    "Message",
    "ModelClient",
    "ModelError",
    "Undetected",
    "Options",
    "Permit",
    "Prices",
    "Request",
    "Response",
    "ResponseFormat",
    "Role",
    "Secret",
    "Timing",
    "ToolCall",
    "ToolChoice",
    "ToolDefinition",
    "Usage",
    "cost",
    "detect",
    "estimate_input_tokens",
    "micro_dollars",
    "parse_arguments",
    "retry_after_seconds",
    "worst_case_cost",
]
