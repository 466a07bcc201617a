"""The daemon's calls to an MCP server over Streamable HTTP.

Each call opens its own MCP session (``tools/list`` or one ``tools/call``) and closes it:
no session outlives a step, so a daemon restart or a server's restart loses nothing.
The headers, secrets filled in, exist only here, in the daemon: the agent's process
never sees them. The SDK reports an HTTP error status only as a generic JSON-RPC error,
so the responses are watched on the way in and a failure is explained by its status:
401/403 (not retried: the credentials are wrong), 429 (with its ``Retry-After``), 5xx.
Each response's body is counted as it arrives and cut off past a cap, so a server cannot
fill the daemon's memory with one answer before ``max_result_kb`` is checked.
"""

from __future__ import annotations

import time
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, TypeVar

from corral.config.mcp import McpServer
from corral.retrypolicy import retry_after_seconds

if TYPE_CHECKING:
    from mcp import Client

T = TypeVar("T")

FRAMING_BYTES = 64 * 1024
"""Room for the JSON-RPC envelope and SSE framing around a result of the largest size allowed."""


class HttpFailure(Exception):
    """A call to an HTTP MCP server that got no answer from its tool; the message says why,
    for the model and the operator. ``transient``: it may pass; ``no_effect``: the server
    refused before running anything, so trying again cannot repeat a side effect."""

    def __init__(
        self, message: str, *, kind: str, transient: bool, no_effect: bool, retry_after: float | None = None
    ) -> None:
        super().__init__(message)
        self.kind = kind
        self.transient = transient
        self.no_effect = no_effect
        self.retry_after = retry_after


@dataclass
class _Seen:
    """The last error status the server answered, and its ``Retry-After``."""

    status: int | None = None
    headers: dict[str, str] | None = None
    over: int | None = None
    """The cap a response's body went past, if one did."""


async def request(
    server: McpServer,
    headers: dict[str, str],
    timeout: float,
    use: Callable[[Client], Awaitable[T]],
    max_bytes: int,
) -> T:
    """Open a session with ``server``, ``use`` it, close it; no response's body may pass
    ``max_bytes`` plus :data:`FRAMING_BYTES`. Raises :class:`HttpFailure`."""
    import httpx2
    from mcp import Client
    from mcp.client.streamable_http import streamable_http_client

    seen = _Seen()

    async def watch(response: Any) -> None:
        if response.status_code >= 400:
            seen.status, seen.headers = response.status_code, {k.lower(): v for k, v in response.headers.items()}

    http = httpx2.AsyncClient(
        # identity: the cap counts bytes as they come, and compressed ones could expand past it
        headers={**headers, "accept-encoding": "identity"},
        timeout=httpx2.Timeout(timeout),
        event_hooks={"response": [watch]},
        follow_redirects=False,
        transport=_capped_transport(httpx2.AsyncHTTPTransport(), max_bytes + FRAMING_BYTES, seen),
    )
    try:
        async with http, Client(streamable_http_client(server.url or "", http_client=http), cache=None) as client:
            return await use(client)
    except HttpFailure:
        raise
    except BaseException as exc:  # noqa: BLE001 - the SDK's task groups wrap what happened in groups
        cause = _leaf(exc)
        if not isinstance(cause, Exception):
            raise
        raise _explain(server, seen, cause) from None


class _TooLarge(Exception):
    """A response's body went past the cap; raised inside the SDK, explained from ``_Seen``."""


def _capped_transport(inner: Any, cap: int, seen: _Seen) -> Any:
    """``inner`` with every response body counted as it is read and cut off past ``cap``."""
    import httpx2

    class Capped(httpx2.AsyncByteStream):
        def __init__(self, stream: Any) -> None:
            self.stream = stream

        async def __aiter__(self) -> AsyncIterator[bytes]:
            read = 0
            async for chunk in self.stream:
                read += len(chunk)
                if read > cap:
                    seen.over = cap
                    raise _TooLarge(f"the response passed {cap} bytes")
                yield chunk

        async def aclose(self) -> None:
            await self.stream.aclose()

    class Transport(httpx2.AsyncBaseTransport):
        async def handle_async_request(self, request: Any) -> Any:
            response = await inner.handle_async_request(request)
            return httpx2.Response(
                response.status_code,
                headers=response.headers,
                stream=Capped(response.stream),
                extensions=response.extensions,
            )

        async def aclose(self) -> None:
            await inner.aclose()

    return Transport()


def _leaf(exc: BaseException) -> BaseException:
    while isinstance(exc, BaseExceptionGroup) and exc.exceptions:
        exc = exc.exceptions[0]
    return exc


def _explain(server: McpServer, seen: _Seen, cause: Exception) -> HttpFailure:
    import httpx2

    name, where = server.name, server.url
    if seen.over is not None:
        return HttpFailure(
            f"MCP server {name!r} ({where}) sent a response over {seen.over // 1024} KiB, more than "
            f"[mcp.{name}] max_result_kb allows; it was cut off unread: ask for less, or raise the cap",
            kind="too_large",
            transient=False,
            no_effect=False,
        )
    status = seen.status
    if status in (401, 403):
        refs = ", ".join(server.secrets)
        fix = (
            f"the secret it sends ({refs}) is wrong or expired: `corral secrets set {server.secrets[0]}`"
            if refs
            else (f"give it credentials in [mcp.{name}] headers")
        )
        return HttpFailure(
            f"MCP server {name!r} ({where}) answered {status}: it does not accept corral's credentials; {fix}",
            kind="unauthorized",
            transient=False,
            no_effect=True,
        )
    if status == 429 or (status is not None and status >= 500):
        retry_after = retry_after_seconds(seen.headers or {}, time.time())
        wait = f"; it asked to wait {retry_after:g}s" if retry_after is not None else ""
        return HttpFailure(
            f"MCP server {name!r} ({where}) answered {status}{wait}",
            kind="rate_limited" if status == 429 else "unavailable",
            transient=True,
            no_effect=True,
            retry_after=retry_after,
        )
    if status is not None:
        return HttpFailure(
            f"MCP server {name!r} ({where}) answered {status}; check [mcp.{name}] url",
            kind="failed",
            transient=False,
            no_effect=True,
        )
    if isinstance(cause, httpx2.ConnectError | ConnectionError):
        return HttpFailure(
            f"MCP server {name!r} ({where}) cannot be reached: {cause}",
            kind="unavailable",
            transient=True,
            no_effect=True,
        )
    if isinstance(cause, httpx2.TimeoutException | TimeoutError):
        return HttpFailure(
            f"MCP server {name!r} ({where}) did not answer within {server.timeout:g}s ([mcp.{name}] timeout)",
            kind="timeout",
            transient=True,
            no_effect=False,
        )
    return HttpFailure(
        f"MCP server {name!r} ({where}) failed: {type(cause).__name__}: {cause}",
        kind="failed",
        transient=False,
        no_effect=False,
    )
