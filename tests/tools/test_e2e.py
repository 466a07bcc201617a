"""Real agents call the built-in tools through corral (a foreground `corral run`), refusals included.

Each run goes the whole way: the daemon side validates the call (granted, size, schema),
journals it, and the agent's sandboxed process runs the tool with its settings from the
welcome. Nothing outside the workdir may be read or written.
"""

from __future__ import annotations

import json
from typing import Any

import pytest

from corral.testing import CorralProject
from tests.projects import CALLER
from tests.tools.servers import web

__all__ = ["web"]


def call(project: CorralProject, agent: str, calls: dict[str, tuple[str, dict[str, Any]]]) -> dict[str, Any]:
    payload = {label: {"tool": tool, "args": args} for label, (tool, args) in calls.items()}
    result = project.cli("run", agent, "--input", json.dumps(payload), "--wait", "--json")
    assert result.returncode == 0, result.stdout + result.stderr
    run: dict[str, Any] = json.loads(result.stdout)
    assert run["state"] == "succeeded", run
    answers: dict[str, Any] = run["result"]
    answers["_run_id"] = run["id"]
    return answers


def test_file_tools_work_inside_and_refuse_everything_else(corral_project: CorralProject) -> None:
    project = corral_project
    project.corral["max_tool_args_bytes"] = 4096
    project.agent("scribe", CALLER, tools=["read_file", "write_file", "list_files", "search_files"])
    other = project.home / "agents" / "other"
    other.mkdir(parents=True)
    (other / "secret.txt").write_text("SECRET")
    work = project.home / "agents" / "scribe"
    work.mkdir(parents=True)
    (work / "out").symlink_to(other)
    (work / "dangling").symlink_to(other / "created.txt")

    ok = ("list_files", {})  # between refusals: the refusals guardrail stops a run after 5 in a row
    got = call(
        project,
        "scribe",
        {
            "write": ("write_file", {"path": "notes/a.md", "content": "alpha\nbeta\n"}),
            "append": ("write_file", {"path": "notes/a.md", "content": "gamma\n", "append": True}),
            "read": ("read_file", {"path": "notes/a.md"}),
            "list": ("list_files", {"path": "notes"}),
            "search": ("search_files", {"pattern": "gam"}),
            "climb": ("read_file", {"path": "../other/secret.txt"}),
            "symlink": ("read_file", {"path": "out/secret.txt"}),
            "write_through": ("write_file", {"path": "dangling", "content": "pwned"}),
            "absolute": ("write_file", {"path": str(other / "new.txt"), "content": "pwned"}),
            "ok1": ok,
            "typo": ("read_fiel", {"path": "notes/a.md"}),
            "ungranted": ("run_command", {"command": "cat ../other/secret.txt"}),
            "wrong_type": ("read_file", {"path": 7}),
            "extra": ("read_file", {"path": "notes/a.md", "mode": "rb"}),
            "ok2": ok,
            "huge": ("write_file", {"path": "big.txt", "content": "x" * 5000}),
        },
    )
    assert got["write"] == {"ok": {"path": "notes/a.md", "bytes_written": 11, "size": 11}}
    assert got["append"]["ok"]["size"] == 17
    assert got["read"]["ok"]["content"] == "alpha\nbeta\ngamma\n"
    assert [e["path"] for e in got["list"]["ok"]["entries"]] == ["notes/a.md"]
    assert got["search"]["ok"]["matches"] == [{"path": "notes/a.md", "line": 3, "text": "gamma"}]
    for label in ("climb", "symlink", "write_through", "absolute"):
        assert got[label]["error"] == "refused", got[label]
        assert "outside the agent's workdir" in got[label]["message"], got[label]
    assert got["typo"]["error"] == "refused"
    assert "did you mean 'read_file'?" in got["typo"]["message"]
    assert "granted tools: list_files, read_file, search_files, write_file" in got["typo"]["message"]
    assert "not granted to agent 'scribe'" in got["ungranted"]["message"]
    assert "invalid arguments for tool 'read_file': path: 7 is not of type" in got["wrong_type"]["message"]
    assert "mode" in got["extra"]["message"] and got["extra"]["error"] == "refused"
    assert "over the 4096-byte limit ([corral] max_tool_args_bytes)" in got["huge"]["message"]

    assert sorted(p.name for p in other.iterdir()) == ["secret.txt"]
    assert (other / "secret.txt").read_text() == "SECRET"
    assert not (work / "big.txt").exists()
    trace = project.cli_json("trace", got["_run_id"])
    refused = [s for s in trace["steps"] if not s.get("ok")]
    assert {s["name"] for s in refused} >= {"read_fiel", "run_command", "write_file", "read_file"}
    assert all(s["error"]["kind"] == "refused" for s in refused)


def test_fetch_url_uses_the_agents_allow_list_from_config(corral_project: CorralProject, web: str) -> None:
    project = corral_project
    port = int(web.rsplit(":", 1)[1])
    project.agent(
        "reader",
        CALLER,
        tools=["fetch_url"],
        tool_settings={"fetch_url": {"allow_hosts": ["127.0.0.1"], "max_bytes": 100}},
        sandbox={"network": [f"127.0.0.1:{port}"], "degraded_ok": True},
    )
    got = call(
        project,
        "reader",
        {
            "page": ("fetch_url", {"url": f"{web}/hello"}),
            "capped": ("fetch_url", {"url": f"{web}/big"}),
            "too_big": ("fetch_url", {"url": f"{web}/big", "max_bytes": 0}),
            "bounce": ("fetch_url", {"url": f"{web}/redirect?to=http://localhost:{port}/hello"}),
            "elsewhere": ("fetch_url", {"url": "http://10.9.8.7/"}),
            "again": ("fetch_url", {"url": f"{web}/hello"}),  # the refusals guardrail stops at 5 in a row
            "scheme": ("fetch_url", {"url": "file:///etc/passwd"}),
            "settings_by_model": ("fetch_url", {"url": f"{web}/hello", "settings": {"allow_hosts": ["*"]}}),
        },
    )
    assert got["page"]["ok"]["text"] == "hello from the test server", got["page"]
    assert got["capped"]["ok"]["truncated"] is True and got["capped"]["ok"]["bytes"] == 100, "the operator's cap"
    assert "max_bytes must be 1 or more" in got["too_big"]["message"]
    assert "host 'localhost'" in got["bounce"]["message"] and "redirected from" in got["bounce"]["message"]
    assert "allowed hosts: 127.0.0.1" in got["elsewhere"]["message"]
    assert "is not http or https" in got["scheme"]["message"]
    assert "invalid arguments" in got["settings_by_model"]["message"], "settings are the operator's, not the model's"
    assert all(got[k]["error"] == "refused" for k in ("too_big", "bounce", "elsewhere", "scheme", "settings_by_model"))


@pytest.mark.slow
def test_run_command_waits_for_approval_then_runs_in_the_workdir(corral_project: CorralProject) -> None:
    """High-stakes: each call holds the run until `corral approve`; then it runs with the agent's env."""
    project = corral_project
    project.agent("ops", CALLER, tools=["run_command"], env={"GREETING": "hello"})
    calls = {
        "here": {"tool": "run_command", "args": {"command": 'pwd; echo "$GREETING"; echo made > made.txt'}},
        "slow": {"tool": "run_command", "args": {"command": "echo begun; sleep 20", "timeout": 0.5}},
    }
    result = project.cli("run", "ops", "--input", json.dumps(calls), "--wait", "--json")
    run = json.loads(result.stdout)
    workdir = (project.home / "agents" / "ops").resolve()
    approved = []
    while run["state"] == "on_hold":
        assert "waits for approval" in run["hold_reason"], run
        assert not (workdir / "made.txt").exists() or approved, "nothing runs before it is approved"
        [pending] = project.cli_json("approvals")
        assert pending["tool"] == "run_command"
        approved.append(pending["args"]["command"])
        run = json.loads(project.cli("approve", pending["id"], "--json").stdout)  # exit 1 while still on hold
    assert run["state"] == "succeeded", run
    assert approved == [calls["here"]["args"]["command"], calls["slow"]["args"]["command"]]
    got = run["result"]
    assert got["here"]["ok"]["stdout"] == f"{workdir}\nhello\n", got["here"]
    assert (workdir / "made.txt").read_text() == "made\n"
    assert got["slow"]["ok"]["timed_out"] is True and got["slow"]["ok"]["stdout"] == "begun\n"


def test_corral_check_names_a_missing_allow_list(corral_project: CorralProject) -> None:
    corral_project.agent("reader", CALLER, tools=["fetch_url"])
    result = corral_project.cli("check")
    assert result.returncode == 1
    assert "[agents.reader.tool_settings.fetch_url]: tool 'fetch_url' needs settings allow_hosts" in (
        result.stdout + result.stderr
    )


NESTED_PLUGIN = '''
import corral

CONTEXT = []
"""The agent's ctx, which the agent hands the tool: a tool gets none of its own."""


@corral.tool
def nested(what: str) -> str:
    """Use the agent's ctx from inside this tool.

    :param what: tool, state, model or log
    """
    ctx = CONTEXT[0]
    if what == "tool":
        ctx.tool("word_count", text="a b")
    elif what == "state":
        ctx.state["inner"] = 1
    elif what == "model":
        ctx.model([{"role": "user", "text": "hi"}])
    else:
        ctx.log.info("from inside a tool")
    return what


@corral.hookimpl
def corral_register_tools(register):
    register(nested)
'''
NESTING = """
import sys
import time

import corral

def run(ctx):
    sys.modules["corral_dropin_nested_tools"].CONTEXT.append(ctx)
    seen = {}
    for what in ("tool", "state", "model", "log"):
        started = time.monotonic()
        try:
            seen[what] = {"ok": ctx.tool("nested", what=what)}
        except corral.ToolCallError as exc:
            seen[what] = {"kind": exc.kind, "message": str(exc)}
        seen[what]["seconds"] = time.monotonic() - started
    ctx.state["after"] = "the run went on"
    return seen
"""


def test_a_tool_that_calls_ctx_from_inside_itself_fails_at_once_and_the_run_goes_on(
    corral_project: CorralProject,
) -> None:
    """Its own call would wait for ever on the wire the tool holds (until the run's wall time)."""
    plugin = corral_project.root / "nested_tools.py"
    plugin.write_text(NESTED_PLUGIN)
    corral_project.corral["plugins"] = [str(plugin)]
    corral_project.agent("nesting", NESTING, tools=["nested", "word_count"], limits={"wall_seconds": 30})
    result = corral_project.cli("run", "nesting", "--wait", "--json", timeout=60)
    run = json.loads(result.stdout)
    assert run["state"] == "succeeded", run["error"]
    seen = run["result"]
    for what, call in (("tool", "ctx.tool('word_count')"), ("state", "ctx.state"), ("model", "ctx.model")):
        assert seen[what]["kind"] == "failed" and seen[what]["seconds"] < 5, seen[what]
        message = seen[what]["message"]
        assert message.startswith(f"tool 'nested' failed: {call} was called from inside tool 'nested'"), message
        assert "make the call in the agent" in message, message
    assert seen["log"]["ok"] == "log", "ctx.log waits for no step: a tool may log"
    steps = corral_project.cli_json("trace", run["id"])["steps"]
    assert [(step["name"], (step.get("error") or {}).get("kind")) for step in steps] == [
        ("nested", "failed"),
        ("nested", "failed"),
        ("nested", "failed"),
        ("nested", None),
        ("set", None),
    ], "the inner calls never reached the daemon"
