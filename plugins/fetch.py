"""Built-in ``fetch_url``: GET a web page from a host the operator allowed for this agent.

The allow-list is the operator's, never the model's: ``[agents.NAME.tool_settings.fetch_url]
allow_hosts = [...]`` reaches the tool as its hidden ``settings``. Every hop of a redirect
is checked against it, so an allowed host cannot bounce the call elsewhere. Only http
and https; the body is capped in bytes and the whole call in time. The agent's sandbox
must also let it connect (``[agents.NAME.sandbox] network``); the sandbox enforces ports,
this tool the hosts.

A busy or briefly unavailable host (HTTP 429, 502, 503, 504, a refused or dropped
connection) is retried under the tool's policy, honouring ``Retry-After``, and counted
against that host's circuit breaker: its downstream is the URL's host, so one host that
is down does not block fetches from the others. Other statuses are returned, not raised.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import TYPE_CHECKING, Annotated, Any, Required, TypedDict

import corral
from corral.errors import ToolCallError
from corral.sandbox.paths import refused

if TYPE_CHECKING:
    import httpx

MAX_BYTES_DEFAULT = 1_000_000
MAX_BYTES_LIMIT = 10_000_000
"""``fetch_url``'s body cap by default, and the most an operator may allow."""
TIMEOUT_DEFAULT = 20.0
TIMEOUT_LIMIT = 120.0
MAX_REDIRECTS = 5
DEFAULT_PORTS = {"http": 80, "https": 443}
UNAVAILABLE = frozenset({429, 502, 503, 504})
"""Statuses that say the host did not serve the request now: raised as retryable, not returned."""
RETRY = corral.RetryPolicy(retries=3, backoff="1s..30s", max_retry_after="1m")


def _host(url: object = "", **_: object) -> str | None:
    """The downstream of a fetch: the URL's host (None for a URL without one: the plugin's breaker)."""
    from urllib.parse import urlsplit

    try:
        return urlsplit(str(url)).hostname or None
    except ValueError:
        return None


class FetchSettings(TypedDict, total=False):
    """``[agents.NAME.tool_settings.fetch_url]``: what the operator allows this agent to fetch."""

    allow_hosts: Required[
        Annotated[
            list[str],
            'hosts the agent may fetch from: "example.com" (that host, any port), "*.example.com" '
            '(its sub-domains), "example.com:8080" (that port only), "127.0.0.1", "[::1]:8000"',
        ]
    ]
    max_bytes: Annotated[int, "the most bytes of a body the model may ask for (default 1000000)"]
    timeout: Annotated[float, "the longest a call may take, in seconds (default 20)"]


@corral.tool(read_only=True, retry=RETRY, downstream=_host)
def fetch_url(
    url: str, settings: FetchSettings, max_bytes: int = MAX_BYTES_DEFAULT, timeout: float = TIMEOUT_DEFAULT
) -> dict[str, Any]:
    """Fetch a web page or file over http or https (GET), from an allowed host.

    Redirects are followed (at most 5), each to an allowed host only. Returns the final
    ``url``, the HTTP ``status``, the ``content_type``, the body as ``text`` (decoded
    with the charset the server names, else UTF-8), its ``bytes``, and ``truncated``:
    true when the body was longer than max_bytes and was cut. A status such as 404 is
    returned, not raised; a busy or unavailable host (429, 502, 503, 504) is tried again
    a few times, then reported as an error.

    Args:
        url: Full URL, e.g. "https://example.com/page".
        max_bytes: Most bytes of the body to return (lowered to the operator's cap, 1000000 unless set).
        timeout: Most seconds the whole fetch may take (lowered to the operator's cap, 20 unless set).
    """
    import httpx  # here, not at the top: every agent's process imports this plugin

    allowed = _allow_list(settings)
    byte_cap = _setting(settings, "max_bytes", MAX_BYTES_DEFAULT, MAX_BYTES_LIMIT)
    time_cap = _setting(settings, "timeout", TIMEOUT_DEFAULT, TIMEOUT_LIMIT)
    if max_bytes < 1:
        raise refused("max_bytes must be 1 or more")
    if timeout <= 0:
        raise refused("timeout must be more than 0 seconds")
    max_bytes, timeout = min(max_bytes, int(byte_cap)), min(timeout, time_cap)  # the operator's caps win
    deadline = time.monotonic() + timeout
    target = _checked(url, allowed)
    try:
        with httpx.Client(follow_redirects=False, trust_env=False, timeout=timeout) as client:
            for _ in range(MAX_REDIRECTS + 1):
                with client.stream("GET", target, headers={"User-Agent": f"corral/{corral.__version__}"}) as response:
                    location = response.headers.get("location")
                    if response.is_redirect and location:
                        target = _checked(str(response.url.join(location)), allowed, redirected_from=str(target))
                        continue
                    if response.status_code in UNAVAILABLE:
                        raise _unavailable(response)
                    return _read(response, max_bytes, deadline, timeout)
    except httpx.TimeoutException:
        raise _timed_out(timeout) from None
    except (httpx.ConnectError, httpx.RemoteProtocolError, httpx.ReadError) as exc:
        # a GET the host refused or dropped changed nothing: worth another try
        raise corral.ToolError(f"fetching {url!r} failed: {type(exc).__name__}: {exc}", retryable=True) from None
    except httpx.HTTPError as exc:
        raise ToolCallError(f"fetching {url!r} failed: {type(exc).__name__}: {exc}", kind="failed") from None
    raise ToolCallError(f"{url!r} redirected more than {MAX_REDIRECTS} times; fetch the final URL", kind="failed")


def _unavailable(response: httpx.Response) -> corral.ToolError:
    from corral.retrypolicy import retry_after_seconds

    wait = retry_after_seconds(response.headers, time.time())
    asked = f", asking to wait {wait:g} s" if wait is not None else ""
    return corral.ToolError(
        f"{response.url.host} answered HTTP {response.status_code} ({response.reason_phrase}){asked}",
        retryable=True,
        retry_after=wait,
    )


def _read(response: httpx.Response, max_bytes: int, deadline: float, timeout: float) -> dict[str, Any]:
    body = bytearray()
    truncated = False
    for chunk in response.iter_bytes():
        if time.monotonic() > deadline:
            raise _timed_out(timeout)
        body += chunk
        if len(body) > max_bytes:
            del body[max_bytes:]
            truncated = True
            break
    try:
        text = body.decode(response.encoding or "utf-8", errors="replace")
    except LookupError:  # a charset Python does not know
        text = body.decode("utf-8", errors="replace")
    return {
        "url": str(response.url),
        "status": response.status_code,
        "content_type": response.headers.get("content-type", ""),
        "text": text,
        "bytes": len(body),
        "truncated": truncated,
    }


def _timed_out(timeout: float) -> ToolCallError:
    return ToolCallError(f"the fetch took longer than {timeout:g} s and was stopped", kind="timeout")


def _allow_list(settings: FetchSettings) -> list[tuple[str, int | None]]:
    """(host pattern, port or None) from the operator's ``allow_hosts``."""
    hosts = settings.get("allow_hosts")
    if not hosts:
        raise refused(
            "fetch_url has no allowed hosts for this agent, so every URL is refused; the operator "
            'lists them in [agents.NAME.tool_settings.fetch_url] allow_hosts = ["example.com"]'
        )
    allowed = []
    for entry in hosts:
        host, port = _split(str(entry))
        if not host:
            raise refused(f"allow_hosts entry {entry!r} is not a host or host:port; the operator must fix it")
        allowed.append((host, port))
    return allowed


def _split(entry: str) -> tuple[str, int | None]:
    """``"Example.com:8080"`` -> ("example.com", 8080); ``"[::1]"`` -> ("::1", None)."""
    entry = entry.strip().lower()
    if entry.startswith("["):
        host, _, rest = entry[1:].partition("]")
        port = rest[1:] if rest.startswith(":") else ""
    elif entry.count(":") == 1:
        host, _, port = entry.partition(":")
    else:
        host, port = entry, ""
    if port and not port.isdigit():
        return "", None
    return host, int(port) if port else None


def _setting(settings: FetchSettings, key: str, default: float, limit: float) -> float:
    value = settings.get(key, default)
    if isinstance(value, bool) or not isinstance(value, int | float) or not 0 < value <= limit:
        raise refused(f"the operator's fetch_url setting {key} = {value!r} must be a number above 0, at most {limit:g}")
    return float(value)


def _checked(url: str, allowed: list[tuple[str, int | None]], *, redirected_from: str = "") -> httpx.URL:
    """``url`` parsed, if it is http(s) to an allowed host; a refusal the model can act on if not."""
    import httpx

    via = f" (redirected from {redirected_from!r})" if redirected_from else ""
    try:
        parsed = httpx.URL(url)
    except (httpx.InvalidURL, TypeError) as exc:
        raise refused(f"{url!r} is not a valid URL{via}: {exc}") from None
    if parsed.scheme not in DEFAULT_PORTS:
        raise refused(f"{url!r}{via} is not http or https; only web pages can be fetched")
    host = parsed.host.lower().rstrip(".")
    port = parsed.port or DEFAULT_PORTS[parsed.scheme]
    for pattern, allowed_port in allowed:
        if allowed_port is not None and allowed_port != port:
            continue
        if host == pattern or (pattern.startswith("*.") and host.endswith(pattern[1:])):
            return parsed
    hosts = ", ".join(h if p is None else f"{h}:{p}" for h, p in allowed)
    raise refused(f"host {host!r} of {url!r}{via} is not allowed for this agent; allowed hosts: {hosts}")


@corral.hookimpl
def corral_register_tools(register: Callable[..., Any]) -> None:
    register(fetch_url)
