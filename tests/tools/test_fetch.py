"""fetch_url against a real HTTP server on 127.0.0.1: the allow-list holds on every hop."""

from __future__ import annotations

from typing import Any

import pytest

from corral.errors import ToolCallError
from corral.plugins.fetch import FetchSettings, _checked, _split, fetch_url
from corral.tools import spec_for
from tests.tools.servers import web

__all__ = ["web"]

LOCAL: FetchSettings = {"allow_hosts": ["127.0.0.1"]}


def test_metadata_and_settings_schema() -> None:
    spec = spec_for(fetch_url)
    assert (spec.read_only, spec.idempotent, spec.high_stakes) == (True, True, False)
    assert list(spec.parameters["properties"]) == ["url", "max_bytes", "timeout"]
    assert spec.settings_schema is not None and spec.settings_schema["required"] == ["allow_hosts"]


def test_fetch_an_allowed_page(web: str) -> None:
    got = fetch_url(f"{web}/hello", settings=LOCAL)
    assert got == {
        "url": f"{web}/hello",
        "status": 200,
        "content_type": "text/plain; charset=utf-8",
        "text": "hello from the test server",
        "bytes": 26,
        "truncated": False,
    }
    assert fetch_url(f"{web}/latin1", settings=LOCAL)["text"] == "café"
    assert fetch_url(f"{web}/missing", settings=LOCAL)["status"] == 404, "a status is returned, not raised"


def test_body_is_capped(web: str) -> None:
    got = fetch_url(f"{web}/big", settings=LOCAL, max_bytes=1000)
    assert (got["bytes"], got["truncated"], len(got["text"])) == (1000, True, 1000)
    capped = fetch_url(f"{web}/big", settings={"allow_hosts": ["127.0.0.1"], "max_bytes": 2000}, max_bytes=5000)
    assert (capped["bytes"], capped["truncated"]) == (2000, True), "the operator's cap wins over the model's ask"
    with pytest.raises(ToolCallError, match="max_bytes must be 1 or more"):
        fetch_url(f"{web}/big", settings=LOCAL, max_bytes=0)


def test_redirects_are_followed_only_to_allowed_hosts(web: str) -> None:
    port = web.rsplit(":", 1)[1]
    got = fetch_url(f"{web}/redirect?to=/hello", settings=LOCAL)
    assert (got["url"], got["text"]) == (f"{web}/hello", "hello from the test server")
    with pytest.raises(ToolCallError, match=r"host 'localhost' of .* \(redirected from .*\) is not allowed") as caught:
        fetch_url(f"{web}/redirect?to=http://localhost:{port}/hello", settings=LOCAL)
    assert caught.value.kind == "refused"
    with pytest.raises(ToolCallError, match="is not http or https"):
        fetch_url(f"{web}/redirect?to=file:///etc/passwd", settings=LOCAL)
    with pytest.raises(ToolCallError, match="redirected more than 5 times"):
        fetch_url(f"{web}/loop", settings=LOCAL)


def test_time_limit(web: str) -> None:
    with pytest.raises(ToolCallError, match="took longer than 0.3 s") as caught:
        fetch_url(f"{web}/slow", settings=LOCAL, timeout=0.3)
    assert caught.value.kind == "timeout"
    with pytest.raises(ToolCallError, match="took longer than 0.3 s"):
        fetch_url(f"{web}/slow", settings={"allow_hosts": ["127.0.0.1"], "timeout": 0.3}, timeout=60)
    with pytest.raises(ToolCallError, match="timeout must be more than 0 seconds"):
        fetch_url(f"{web}/hello", settings=LOCAL, timeout=0)


@pytest.mark.parametrize(
    ("url", "settings", "message"),
    [
        ("http://127.0.0.1:1/x", {}, r"no allowed hosts for this agent.*allow_hosts"),
        ("http://127.0.0.1:1/x", {"allow_hosts": []}, "no allowed hosts"),
        ("http://10.0.0.1/x", LOCAL, r"host '10.0.0.1' .* is not allowed for this agent; allowed hosts: 127.0.0.1"),
        ("ftp://127.0.0.1/x", LOCAL, "is not http or https"),
        ("file:///etc/passwd", LOCAL, "is not http or https"),
        ("not a url", LOCAL, "is not http or https"),
        ("http://127.0.0.1:1/x", {"allow_hosts": ["127.0.0.1:8080"]}, "allowed hosts: 127.0.0.1:8080"),
        ("http://127.0.0.1/x", {"allow_hosts": ["127.0.0.1:http"]}, "is not a host or host:port"),
        ("http://127.0.0.1/x", {"allow_hosts": ["127.0.0.1"], "timeout": "slow"}, "setting timeout = 'slow'"),
    ],
)
def test_refusals(url: str, settings: Any, message: str) -> None:
    with pytest.raises(ToolCallError, match=message) as caught:
        fetch_url(url, settings=settings)
    assert caught.value.kind == "refused"


def test_host_patterns() -> None:
    allowed = [_split(e) for e in ["Example.com", "*.corral.dev", "api.test:8443", "[::1]"]]
    assert allowed == [("example.com", None), ("*.corral.dev", None), ("api.test", 8443), ("::1", None)]
    for good in [
        "https://example.com/a",
        "http://EXAMPLE.com:81/",
        "https://x.corral.dev/",
        "https://a.b.corral.dev/",
        "https://api.test:8443/v1",
        "http://[::1]:9/",
    ]:
        assert _checked(good, allowed)
    for bad in ["https://corral.dev/", "https://evilcorral.dev/", "https://api.test/", "https://example.com.evil.io/"]:
        with pytest.raises(ToolCallError, match="is not allowed"):
            _checked(bad, allowed)
