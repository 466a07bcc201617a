"""One HTTP exchange with a model endpoint, and what each way it can go wrong means.

:func:`post` sends one request through the endpoint's pooled ``httpx.AsyncClient`` and
returns the whole body, or raises a :class:`~corral.models.errors.ModelError` for a
timeout or a broken connection (a body cut short included). :func:`status_error` turns
a non-2xx answer into the error that says what to fix, with the provider's own words
(redacted) and whether waiting can help.

Every error here is raised ``from None``: httpx exceptions carry the request, whose
headers hold the API key, and a traceback must never lead to it.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass

import httpx
import msgspec

from corral import __version__
from corral.models.endpoint import Endpoint
from corral.models.errors import Kind, ModelError, redact
from corral.models.provider import HttpCall, provider_message

MAX_RESPONSE_BYTES = 16 * 2**20
"""Largest answer read; a model reply is kilobytes, anything near this is a broken or hostile server."""

RETRIED_STATUSES = frozenset({408, 409, 429, 500, 502, 503, 504, 529})
"""Statuses worth another try: the same request can succeed once the server recovers."""

_KIND_BY_STATUS: dict[int, Kind] = {
    400: "bad_request",
    401: "auth",
    403: "auth",
    404: "not_found",
    408: "timeout",
    409: "conflict",
    422: "bad_request",
    429: "rate_limited",
    503: "overloaded",
    529: "overloaded",
}


@dataclass(frozen=True, slots=True)
class Reply:
    """What came back: status, headers and the whole body."""

    status: int
    headers: httpx.Headers
    body: bytes


def new_client(endpoint: Endpoint, transport: httpx.AsyncBaseTransport | None = None) -> httpx.AsyncClient:
    """The endpoint's pooled client; ``read_timeout`` bounds each wait for bytes, writes and a free connection."""
    timeout = httpx.Timeout(
        connect=endpoint.connect_timeout,
        read=endpoint.read_timeout,
        write=endpoint.read_timeout,
        pool=endpoint.read_timeout,
    )
    return httpx.AsyncClient(
        timeout=timeout,
        transport=transport,
        follow_redirects=False,
        headers={"user-agent": f"corral/{__version__}"},
    )


async def post(client: httpx.AsyncClient, endpoint: Endpoint, call: HttpCall) -> Reply:
    """Send ``call`` and read the full answer; transport failures become retryable ModelErrors."""
    url = endpoint.base_url.rstrip("/") + call.path
    content = msgspec.json.encode(call.body)
    try:
        async with client.stream("POST", url, content=content, headers=call.headers) as response:
            chunks: list[bytes] = []
            size = 0
            async for chunk in response.aiter_bytes():
                size += len(chunk)
                if size > MAX_RESPONSE_BYTES:
                    raise ModelError(
                        f"model endpoint {endpoint.name!r} sent more than {MAX_RESPONSE_BYTES // 2**20} MiB;"
                        f" check that base_url {endpoint.base_url!r} is a model API.",
                        kind="bad_response",
                        retryable=False,
                        endpoint=endpoint.name,
                        status=response.status_code,
                    )
                chunks.append(chunk)
            return Reply(response.status_code, response.headers, b"".join(chunks))
    except httpx.TimeoutException as exc:
        raise _timeout(endpoint, exc) from None
    except httpx.HTTPError as exc:
        raise ModelError(
            f"model endpoint {endpoint.name!r} at {endpoint.base_url} could not be reached or dropped the"
            f" connection ({type(exc).__name__}: {redact(str(exc), endpoint.api_key)}); check that the server is"
            " running and base_url is right.",
            kind="connection",
            retryable=True,
            endpoint=endpoint.name,
        ) from None


def _timeout(endpoint: Endpoint, exc: httpx.TimeoutException) -> ModelError:
    if isinstance(exc, httpx.ConnectTimeout):
        what = f"did not accept a connection within connect_timeout ({endpoint.connect_timeout:g} s)"
    elif isinstance(exc, httpx.PoolTimeout):
        what = f"had no free connection within read_timeout ({endpoint.read_timeout:g} s)"
    else:
        what = f"went silent for longer than read_timeout ({endpoint.read_timeout:g} s)"
    return ModelError(
        f"model endpoint {endpoint.name!r} at {endpoint.base_url} {what}; raise the timeout if the model is"
        " slow to answer.",
        kind="timeout",
        retryable=True,
        endpoint=endpoint.name,
    )


def status_error(
    endpoint: Endpoint, reply: Reply, *, retry_after: float | None, request_id: str | None, path: str
) -> ModelError:
    """The error for a non-2xx answer: its kind, whether to retry, and the fix in words."""
    status = reply.status
    said = provider_message(reply.body)
    quoted = f' The provider said: "{redact(said, endpoint.api_key).rstrip(".")}".' if said else ""
    kind = _KIND_BY_STATUS.get(status, "server_error" if status >= 500 else "bad_request")
    retryable = status in RETRIED_STATUSES
    head = f"model endpoint {endpoint.name!r} answered HTTP {status}"
    if kind == "auth":
        if endpoint.api_key is None:
            fix = f"no API key is configured for it; set [models.{endpoint.name}] api_key_env to the variable with one"
        else:
            source = endpoint.key_source or f"[models.{endpoint.name}] api_key_env"
            fix = (
                f"the API key from {source} is wrong, expired or lacks access to model {endpoint.model!r};"
                " put a valid key there and reload the config"
            )
    elif kind == "not_found":
        fix = (
            f"there is nothing at POST {endpoint.base_url.rstrip('/')}{path} for model {endpoint.model!r}; check"
            f" [models.{endpoint.name}] base_url and model"
        )
    elif not retryable:
        fix = (
            "the endpoint refused this request and sending it again will not help; fix the request"
            f" (messages, tools, options) or [models.{endpoint.name}] settings"
        )
    else:
        fix = "the endpoint is overloaded or failing, which usually passes"
    suffix = f" Its request id: {request_id}." if request_id else ""
    return ModelError(
        f"{head}: {fix}.{quoted}{suffix}",
        kind=kind,
        retryable=retryable,
        endpoint=endpoint.name,
        status=status,
        retry_after=retry_after,
        request_id=request_id,
    )


def request_id(headers: Mapping[str, str]) -> str | None:
    """The provider's id for the call, as OpenAI (``x-request-id``) or Anthropic (``request-id``) send it."""
    return headers.get("x-request-id") or headers.get("request-id")
