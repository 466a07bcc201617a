"""What a provider adapter is: turn a neutral request into an HTTP call, and an HTTP body into a response.

Adapters do no I/O, so they are tested on plain data and a plugin can add one for
another API. They raise :class:`~corral.models.errors.ModelError` (``bad_response``) for
a body they cannot read and :class:`~corral.models.errors.InvalidRequest` for a request
their API cannot express; anything else escaping them is a bug.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any, Protocol, TypeVar

import msgspec

from corral.models.endpoint import Endpoint
from corral.models.errors import ModelError, redact
from corral.models.types import Request, Response

_T = TypeVar("_T")


@dataclass(frozen=True, slots=True)
class HttpCall:
    """A POST to ``base_url + path`` with these headers and JSON body."""

    path: str
    headers: dict[str, str]
    body: dict[str, Any]


class Adapter(Protocol):
    """A model API: the request it wants and the response it gives."""

    name: str

    def build(self, endpoint: Endpoint, request: Request) -> HttpCall:
        """The HTTP call for ``request``; the API key goes in ``headers`` and nowhere else."""
        ...

    def parse(self, endpoint: Endpoint, body: bytes, headers: Mapping[str, str]) -> Response:
        """Read a 2xx body; raise ModelError ``bad_response`` when it is not what the API promises."""
        ...


def max_output_tokens(endpoint: Endpoint, request: Request) -> int:
    """The output cap sent with every call: the request's own, else the endpoint's; never
    more than the endpoint's (an agent's ``max_tokens=10**12`` would reach the provider and
    the budget's reservation as asked)."""
    return min(request.options.max_tokens or endpoint.max_output_tokens, endpoint.max_output_tokens)


def decode_body(endpoint: Endpoint, body: bytes, schema: type[_T], api: str) -> _T:
    """Decode and check a 2xx JSON body against ``schema``; garbage becomes a typed error, never a KeyError."""
    try:
        return msgspec.json.decode(body, type=schema)
    except msgspec.ValidationError as exc:
        said = provider_message(body) if b'"error"' in body else None
        problem = f"it holds an error instead: {said}" if said else f"it is not a {api} response ({exc})"
    except msgspec.DecodeError as exc:
        problem = f"it is not valid JSON ({exc}; it starts {body[:80]!r})"
    except RecursionError:
        problem = "it nests deeper than any answer corral reads"
    raise unreadable(endpoint, problem, api)


def unreadable(endpoint: Endpoint, problem: str, api: str) -> ModelError:
    """The error for a 2xx answer that cannot be used (it is not retried: the same server says the same)."""
    return ModelError(
        f"model endpoint {endpoint.name!r} sent an answer corral cannot read: {redact(problem, endpoint.api_key)}."
        f" Check that base_url {endpoint.base_url!r} points at a {api} API (provider = {endpoint.provider!r}).",
        kind="bad_response",
        retryable=False,
        endpoint=endpoint.name,
    )


def provider_message(body: bytes) -> str | None:
    """The provider's own explanation in an error body, whatever its dialect; None when there is none.

    OpenAI and Anthropic send ``{"error": {"message": ...}}``, Ollama and some proxies
    ``{"error": "..."}``, vLLM ``{"message": ...}``, FastAPI servers ``{"detail": ...}``;
    anything else is quoted as text.
    """
    try:
        data = msgspec.json.decode(body)
    except (msgspec.DecodeError, RecursionError):
        text = body.decode("utf-8", "replace").strip()
        return text or None
    if isinstance(data, dict):
        error = data.get("error")
        if isinstance(error, dict) and isinstance(error.get("message"), str):
            return str(error["message"])
        for key in ("error", "message", "detail"):
            if isinstance(data.get(key), str):
                return str(data[key])
    return msgspec.json.encode(data).decode()
