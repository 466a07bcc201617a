"""One HTTP POST for the webhook and ntfy sinks, with its outcome classified for retrying.

2xx is delivered. 429, 5xx and anything that stops the request on the way (refused
connection, reset, timeout) can succeed later: retryable. Every other status will not:
not retryable, with the status and a short excerpt of the answer so the operator can
see what the receiver objected to. A failed certificate check is not retryable either:
it needs ``ca_file`` or a fixed server, not patience. The answer is read at most
:data:`EXCERPT_BYTES` far, so a receiver cannot make corral buffer a huge body.
"""

from __future__ import annotations

import ssl
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import UTC, datetime
from email.utils import parsedate_to_datetime

import httpx

import corral
from corral.alerts.sinks.base import certificate_rejected
from corral.plugins.alert_sinks._text import one_line

EXCERPT_BYTES = 1024
USER_AGENT = f"corral/{corral.__version__}"


@dataclass(frozen=True, slots=True)
class Failure:
    """Why a POST did not deliver: an operator-facing message and whether to retry."""

    message: str
    retryable: bool
    retry_after: float | None = None


def _retry_after(value: str | None) -> float | None:
    """Seconds from a Retry-After header: delta-seconds or an HTTP date."""
    if not value:
        return None
    value = value.strip()
    if value.isdigit():
        return float(value)
    try:
        when = parsedate_to_datetime(value)
    except (TypeError, ValueError):
        return None
    if when.tzinfo is None:
        when = when.replace(tzinfo=UTC)
    return max(0.0, (when - datetime.now(UTC)).total_seconds())


async def post(
    url: str,
    *,
    content: bytes,
    headers: Mapping[str, str],
    timeout: float,
    verify: ssl.SSLContext,
    shown_url: str,
) -> Failure | None:
    """POST ``content`` to ``url``; None when delivered, else the :class:`Failure`.

    ``shown_url`` is what messages call the receiver (the redacted URL). A client per
    call: alerts are rare, and nothing then outlives an event loop or needs closing.
    """
    all_headers = {"User-Agent": USER_AGENT, **headers}
    try:
        async with (
            httpx.AsyncClient(timeout=httpx.Timeout(timeout), verify=verify) as client,
            client.stream("POST", url, content=content, headers=all_headers) as response,
        ):
            if response.is_success:
                return None
            excerpt = b""
            async for chunk in response.aiter_bytes():
                excerpt += chunk
                if len(excerpt) >= EXCERPT_BYTES:
                    break
            status = response.status_code
            retry_after = _retry_after(response.headers.get("retry-after"))
    except httpx.TimeoutException:
        return Failure(f"{shown_url} did not answer within {timeout:g}s", retryable=True)
    except httpx.TransportError as exc:
        if certificate_rejected(exc):
            return Failure(
                f"{shown_url}'s TLS certificate was not trusted ({exc}); set ca_file to the CA that signed it",
                retryable=False,
            )
        return Failure(f"could not reach {shown_url}: {type(exc).__name__}: {exc}", retryable=True)
    text = one_line(excerpt[:EXCERPT_BYTES].decode("utf-8", "replace"), 200) or "(empty body)"
    retryable = status == 429 or status >= 500
    advice = "will retry" if retryable else "check the URL, the credentials and the receiver's docs"
    return Failure(f"{shown_url} answered {status}: {text}; {advice}", retryable, retry_after if retryable else None)
