"""The plugin the retry and breaker tests grant: tools that call the failing server, the way
a plugin author would write them (urllib, ``corral.ToolError``, a retry policy, a downstream).

Written to a file in the test's project and loaded by the daemon and the agent's process
like any plugin (:func:`install`); :data:`SOURCE` is its text.
"""

from __future__ import annotations

from typing import Any

from corral.testing import CorralProject
from tests.projects import CALLER
from tests.resilience.faults import Faults


def install(project: CorralProject, faults: Faults, *agents: str, **agent: Any) -> None:
    """Load the plugin in ``project`` and add ``agents`` (the caller agent), each allowed to
    reach the failing server and with the ``agent`` table's other keys (``tools``...)."""
    plugin = project.root / "flaky_service.py"
    plugin.write_text(SOURCE)
    project.corral["plugins"] = [str(plugin)]
    host = faults.url.removeprefix("http://")
    for name in agents:
        project.agent(name, CALLER, sandbox={"network": [host], "degraded_ok": True}, **agent)


SOURCE = '''
import json
import urllib.error
import urllib.request
from urllib.parse import urlsplit

import corral

FAST = corral.RetryPolicy(retries=3, backoff="100ms..400ms", max_retry_after="5s")


def _host(url, **_):
    return urlsplit(url).netloc


def _call(url, method="GET"):
    request = urllib.request.Request(url, method=method, data=b"{}" if method == "POST" else None)
    try:
        with urllib.request.urlopen(request, timeout=10) as answer:
            return answer.read().decode()
    except urllib.error.HTTPError as exc:
        if exc.code in (429, 503):
            wait = exc.headers.get("Retry-After")
            raise corral.ToolError(
                f"HTTP {exc.code} from {_host(url)}; nothing was done",
                retryable=True,
                retry_after=float(wait) if wait else None,
            ) from None
        if exc.code == 401:
            raise corral.ToolError(
                f"HTTP 401 from {_host(url)}: the token was refused; set a valid one with "
                "`corral secrets set API_TOKEN`"
            ) from None
        raise corral.ToolError(f"HTTP {exc.code} from {_host(url)}") from None


@corral.tool(read_only=True, retry=FAST, downstream=_host)
def get(url: str) -> str:
    """Read a page of the service.

    Args:
        url: The page.
    """
    return _call(url)


@corral.tool(retry=FAST, downstream=_host)
def post(url: str) -> str:
    """Create something at the service; not idempotent.

    Args:
        url: Where.
    """
    return _call(url, "POST")


@corral.hookimpl
def corral_register_tools(register):
    register(get)
    register(post)
'''
