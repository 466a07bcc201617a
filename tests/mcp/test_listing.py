"""An MCP server's tool list as corral tools, a call's result as a tool outcome, and the
``[mcp.NAME]`` config: in-process, with the shapes real servers send."""

from __future__ import annotations

from typing import Any

import pytest

from corral.config.loader import parse_config
from corral.config.mcp import McpServer, granted
from corral.errors import ConfigError
from corral.mcp.listing import ListingError, changes, offered, plain_listing
from corral.mcp.results import outcome
from corral.packing import MAX_DEPTH


def tool(name: str, schema: Any = None, **hints: bool) -> dict[str, Any]:
    return {
        "name": name,
        "description": f"{name} things",
        "inputSchema": schema if schema is not None else {"type": "object", "properties": {"x": {"type": "string"}}},
        "annotations": hints,
    }


SERVER = McpServer(name="srv", command=("srv",))


def test_annotations_are_mapped_conservatively() -> None:
    listing = plain_listing(
        [
            tool("look", readOnlyHint=True),
            tool("again", idempotentHint=True),
            tool("wipe", destructiveHint=True),
            tool("plain"),
            tool("careful", readOnlyHint=True, destructiveHint=True),
        ],
        "srv",
    )
    specs = offered(SERVER, listing, ("srv.*",)).specs
    assert (specs["srv.look"].read_only, specs["srv.look"].idempotent, specs["srv.look"].high_stakes) == (
        True,
        True,
        False,
    )
    assert specs["srv.again"].idempotent and not specs["srv.again"].read_only
    assert specs["srv.wipe"].high_stakes and not specs["srv.wipe"].idempotent
    assert not specs["srv.plain"].idempotent and not specs["srv.plain"].high_stakes
    assert not specs["srv.careful"].high_stakes, "a read-only tool destroys nothing, whatever else it says"
    assert specs["srv.look"].server == "srv" and specs["srv.look"].describe()["source"] == "mcp server srv"
    every = offered(McpServer(name="srv", command=("srv",), approve="all"), listing, ("srv.*",)).specs
    assert all(spec.high_stakes for spec in every.values())
    none = offered(McpServer(name="srv", command=("srv",), approve="none"), listing, ("srv.*",)).specs
    assert not any(spec.high_stakes for spec in none.values())


def test_only_granted_tools_are_offered_and_patterns_work() -> None:
    listing = plain_listing([tool("git_log"), tool("git_diff"), tool("commit")], "srv")
    assert sorted(offered(SERVER, listing, ("srv.git_*",)).specs) == ["srv.git_diff", "srv.git_log"]
    assert sorted(offered(SERVER, listing, ("srv.commit", "other.*")).specs) == ["srv.commit"]
    assert granted(("srv.*",), "srv", "anything") and not granted(("srv.*",), "other", "anything")


@pytest.mark.parametrize(
    ("schema", "why"),
    [
        ({"type": "object", "properties": {"x": {"type": "strang"}}}, "is not valid"),
        ({"type": "array"}, "tool arguments are an object"),
        ("not a schema", "not an object"),
        (
            {"type": "object", "properties": {"x": {"$ref": "https://evil.example/schema.json"}}},
            "only local references",
        ),
    ],
)
def test_a_schema_that_is_not_valid_makes_that_tool_unusable_with_server_and_tool_named(schema: Any, why: str) -> None:
    listing = plain_listing([tool("broken", schema), tool("fine")], "srv")
    result = offered(SERVER, listing, ("srv.*",))
    assert list(result.specs) == ["srv.fine"]
    message = result.unusable["srv.broken"]
    assert "MCP server 'srv'" in message and "'broken'" in message and why in message, message


def test_a_name_corral_cannot_use_is_refused_and_a_list_that_is_no_list_too() -> None:
    result = offered(SERVER, plain_listing([tool("has space")], "srv"), ("srv.*",))
    assert "whose name corral cannot use" in result.unusable["srv.has space"]
    with pytest.raises(ListingError, match="without a name"):
        plain_listing([{"description": "nameless"}], "srv")
    with pytest.raises(ListingError, match="not a list"):
        plain_listing({"tools": []}, "srv")


def test_a_changed_schema_or_a_removed_tool_is_a_change_a_new_tool_is_not() -> None:
    journaled = plain_listing([tool("a"), tool("b", readOnlyHint=True)], "srv")
    assert changes(journaled, plain_listing([tool("a"), tool("b", readOnlyHint=True), tool("c")], "srv"), "srv") is None
    wider = tool("a", {"type": "object", "properties": {"x": {"type": "string"}, "y": {"type": "integer"}}})
    assert "different input schema for tool 'a'" in str(changes(journaled, [wider, journaled[1]], "srv"))
    assert "different annotations for tool 'b'" in str(changes(journaled, [journaled[0], tool("b")], "srv"))
    assert "no longer offers tool 'b'" in str(changes(journaled, [journaled[0]], "srv"))


def test_results_map_to_values_and_errors() -> None:
    text = {"content": [{"type": "text", "text": "one"}, {"type": "text", "text": "two"}]}
    assert outcome(text, "srv.t", "srv", 10_000) == (True, "one\ntwo", None)
    structured = {"content": [{"type": "text", "text": "{}"}], "structuredContent": {"n": 1}}
    assert outcome(structured, "srv.t", "srv", 10_000) == (True, {"n": 1}, None)
    image = {
        "content": [{"type": "text", "text": "a chart"}, {"type": "image", "data": "AAAA", "mimeType": "image/png"}]
    }
    assert outcome(image, "srv.t", "srv", 10_000)[1][1]["type"] == "image"
    ok, _, error = outcome(
        {"isError": True, "content": [{"type": "text", "text": "no such repo"}]}, "srv.t", "srv", 10_000
    )
    assert not ok and error is not None and error["kind"] == "failed" and "no such repo" in error["message"]
    ok, _, error = outcome({"content": [{"type": "text", "text": "x" * 3000}]}, "srv.t", "srv", 2048)
    assert (
        not ok and error is not None and error["kind"] == "too_large" and "[mcp.srv] max_result_kb" in error["message"]
    )
    kept: Any = {"n": 1}
    for _ in range(MAX_DEPTH - 1):
        kept = [kept]
    assert outcome({"structuredContent": kept}, "srv.t", "srv", 10**6) == (True, kept, None)
    for depth in (1, 5000):  # one level past what corral keeps; past json's recursion too
        deep = kept
        for _ in range(depth):
            deep = [deep]
        ok, _, error = outcome({"structuredContent": deep}, "srv.t", "srv", 10**6)
        assert not ok and error is not None and error["kind"] == "too_deep", error
        assert f"nested deeper than the {MAX_DEPTH} levels corral keeps" in error["message"]


def config(mcp: dict[str, Any], tools: list[str], network: Any = "none", tmp: Any = None) -> Any:
    agent = {"code": str(tmp), "entry": "m:run", "tools": tools, "sandbox": {"network": network}}
    return parse_config({"corral": {"home": str(tmp / "home")}, "agents": {"a": agent}, "mcp": mcp}, None)


def test_bad_mcp_config_is_refused_naming_the_key(tmp_path: Any) -> None:
    with pytest.raises(ConfigError) as caught:
        config(
            {
                "both": {"command": ["x"], "url": "http://h/mcp"},
                "neither": {"timeout": "5s"},
                "Bad": {"command": ["x"]},
                "web": {"url": "ftp://h", "headers": {"A": "${env:X}", "B": 7}},
                "typo": {"command": ["x"], "timout": "5s"},
                "stdio": {"command": ["x"], "headers": {"A": "b"}},
            },
            [],
            tmp=tmp_path,
        )
    problems = "\n".join(caught.value.problems)
    for expected in (
        "[mcp.both]: give either command",
        "this table has both",
        "this table has neither",
        "[mcp.Bad]: server names use lowercase",
        "[mcp.web] url: 'ftp://h' is not an http(s) URL",
        "[mcp.web] headers.A: '${env:X}' is not a reference corral fills",
        "[mcp.web] headers.B: 7 is not a string",
        "[mcp.typo] timout: unknown key; did you mean 'timeout'?",
        "[mcp.stdio] headers: only an HTTP server (url = ...) takes headers",
    ):
        assert expected in problems, problems


def test_an_http_servers_host_must_be_in_the_agents_network_grant(tmp_path: Any) -> None:
    docs = {"docs": {"url": "https://mcp.example.com/mcp", "headers": {"Authorization": "Bearer ${secret:TOKEN}"}}}
    with pytest.raises(
        ConfigError, match=r"\[agents.a\] tools: grants tools of MCP server 'docs' at mcp.example.com:443"
    ):
        config(docs, ["docs.*"], tmp=tmp_path)
    loaded = config(docs, ["docs.*"], ["mcp.example.com:443"], tmp=tmp_path)
    assert loaded.mcp["docs"].secrets == ("TOKEN",)
    assert loaded.mcp["docs"].filled_headers({"TOKEN": "t0k"}) == {"Authorization": "Bearer t0k"}
    assert config(docs, ["docs.*"], "all", tmp=tmp_path).mcp["docs"].transport == "http"
