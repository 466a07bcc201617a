"""The model gateway: the daemon's side of ``ctx.model``.

Agents never hold API keys; the daemon calls models for them through a
:class:`ModelClient` per configured endpoint, which speaks the provider's API (OpenAI
Chat Completions and compatible servers, or Anthropic Messages), retries what is
transient with full-jitter backoff and Retry-After, and shares a circuit breaker among
all callers of the endpoint. :mod:`corral.models.pricing` prices calls before and after;
:mod:`corral.models.detect` finds a model for the examples.

Nothing here is global: the daemon creates the clients, passes them down, and closes
them.
"""

from corral.models.breaker import BreakerChange, BreakerState, CircuitBreaker, Permit
from corral.models.client import ADAPTERS, ModelClient
from corral.models.detect import NotConfigured, detect
from corral.models.endpoint import Endpoint, Prices, Secret
from corral.models.errors import KINDS, InvalidRequest, Kind, ModelError
from corral.models.pricing import cost, estimate_input_tokens, micro_dollars, worst_case_cost
from corral.models.provider import Adapter, HttpCall
from corral.models.retry import Attempt, Timing, retry_after_seconds
from corral.models.types import (
    FinishReason,
    Message,
    Options,
    Request,
    Response,
    Role,
    ToolCall,
    ToolChoice,
    ToolDefinition,
    Usage,
    parse_arguments,
)

__all__ = [
    "ADAPTERS",
    "KINDS",
    "Adapter",
    "Attempt",
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
    "NotConfigured",
    "Options",
    "Permit",
    "Prices",
    "Request",
    "Response",
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
