"""How a tool call's tries speak to its downstream's breaker, and whose policy applies."""

from __future__ import annotations

from urllib.parse import urlsplit

import corral
from corral.breaker import Breakers, BreakerState
from corral.config.tools import ToolConfig
from corral.run.toolretries import ToolCalls, tool_policy
from corral.sandbox.spec import HostPort, SandboxPolicy
from corral.tools import spec_for

POLICY = corral.RetryPolicy(retries=2, backoff="1s..2s")


@corral.tool(read_only=True, retry=POLICY, downstream=lambda url, **_: urlsplit(url).hostname)
def get(url: str) -> str:
    """Read a page.

    Args:
        url: The page.
    """
    return url


@corral.tool
def plain(text: str) -> str:
    """No policy, no downstream.

    Args:
        text: Anything.
    """
    return text


GET, PLAIN = spec_for(get).with_plugin("web"), spec_for(plain).with_plugin("misc")
TRANSIENT = {"transient": True, "message": "HTTP 503"}


OPEN_NETWORK = SandboxPolicy(network="all")


def _calls(**tables: ToolConfig) -> tuple[ToolCalls, Breakers]:
    breakers = Breakers()
    return ToolCalls({"get": GET, "plain": PLAIN}, tables, breakers, OPEN_NETWORK.reaches), breakers


def test_an_agent_whose_sandbox_walls_off_a_host_cannot_open_its_breaker_for_others() -> None:
    """Two agents share the breaker of api.github.com: the one with network "none" (its
    calls fail with DNS errors inside its own sandbox) and one granted the host."""
    breakers, tables = Breakers(), {"get": ToolConfig(breaker_failures=2)}
    walled = ToolCalls({"get": GET}, tables, breakers, SandboxPolicy(network="none").reaches)
    granted = SandboxPolicy(network="list", endpoints=(HostPort("api.github.com", 443),))
    allowed = ToolCalls({"get": GET}, tables, breakers, granted.reaches)
    url = {"url": "https://api.github.com/repos"}
    for seq in range(1, 6):
        assert walled.admit(seq, "get", url) is None
        walled.settle(seq, False, {"transient": True, "message": "[Errno -3] Temporary failure in name resolution"})
    assert breakers.states() == {"tool:api.github.com": BreakerState.CLOSED}
    assert allowed.admit(1, "get", url) is None, "the agent granted the host still calls it"
    allowed.settle(1, True, None)
    for seq in (2, 3):
        assert allowed.admit(seq, "get", url) is None
        allowed.settle(seq, False, TRANSIENT)
    assert breakers.states() == {"tool:api.github.com": BreakerState.OPEN}, "the host's own failures still count"
    assert SandboxPolicy(network="list", endpoints=(HostPort("*", 443),)).reaches("api.github.com")
    assert not granted.reaches("example.com")
    assert granted.reaches("api.github.com:443") and not granted.reaches("api.github.com:80")


def test_the_downstream_is_declared_or_the_plugin() -> None:
    assert GET.downstream_of({"url": "https://api.example.com/x"}) == "tool:api.example.com"
    assert GET.downstream_of({"url": "not a url"}) == "tool:web", "no host: the plugin's breaker"
    assert PLAIN.downstream_of({"text": "x"}) == "tool:misc"


def test_config_overrides_the_decorator_key_by_key() -> None:
    assert tool_policy(GET, {}).retry == POLICY
    assert tool_policy(PLAIN, {}).retry is None and not tool_policy(PLAIN, {}).retries
    tuned = tool_policy(GET, {"get": ToolConfig(retries=5, breaker_failures=2)})
    assert tuned.retry == corral.RetryPolicy(retries=5, backoff="1s..2s") and tuned.failures == 2
    assert tool_policy(PLAIN, {"plain": ToolConfig(backoff=(0.5, 1.0))}).retry == corral.RetryPolicy(
        backoff="500ms..1s"
    )
    assert not tool_policy(GET, {"get": ToolConfig(retries=0)}).retries


def test_transient_failures_open_the_breaker_and_the_next_call_is_refused() -> None:
    calls, breakers = _calls(get=ToolConfig(breaker_failures=2))
    url = {"url": "https://api.example.com/x"}
    for seq in (1, 2):
        assert calls.admit(seq, "get", url) is None
        calls.settle(seq, False, TRANSIENT)
    assert breakers.states() == {"tool:api.example.com": BreakerState.OPEN}
    refusal = calls.admit(3, "get", url)
    assert refusal is not None and refusal.startswith("tool 'get' was not called: 'tool:api.example.com' is failing")
    assert calls.admit(4, "get", {"url": "https://other.example.org/"}) is None, "another host is not blocked"


def test_what_counts_against_the_downstream() -> None:
    calls, breakers = _calls(get=ToolConfig(breaker_failures=1))
    url = {"url": "https://h.example/"}
    breaker = breakers.get("tool:h.example", failures=1)
    for error in (
        {"deliberate": True, "message": "HTTP 401"},  # it answered: up
        {"transient": True, "retry_after": 5.0},  # rate-limited: no verdict
        {"message": "KeyError: 'x'"},  # the tool's own bug: no verdict
    ):
        assert calls.admit(1, "get", url) is None
        calls.settle(1, False, error)
        assert breaker.state is BreakerState.CLOSED
    calls.admit(1, "get", url)
    calls.release_all()  # the child died with the try out: no verdict either
    assert breaker.state is BreakerState.CLOSED and breaker.consecutive_failures == 0


def test_only_what_is_safe_is_tried_again() -> None:
    calls, _ = _calls()
    assert calls.next_try("get", 1, TRANSIENT).wait is not None
    assert calls.next_try("get", 3, TRANSIENT).wait is None
    assert calls.next_try("plain", 1, TRANSIENT).wait is None, "no policy"
    assert calls.next_try("unknown", 1, TRANSIENT).wait is None
