"""A value nested deeper than corral keeps (msgpack takes about 1,000 levels; Python's
recursion in the daemon's walks over it did not) is cut from a log line or refused to the
agent with the limit named, and the run goes on; ``corral logs`` reads every line back.

Before the bound, ``ctx.log.info("deep", x=<a list 900 deep>)`` crashed the daemon's
handling of the run and left it ``running`` for good (tests/e2e/test_daemon_failures.py
covers that path for any cause).
"""

from __future__ import annotations

import json

from corral.packing import MAX_DEPTH
from corral.sandbox.door.problems import MAX_BODY_DEPTH
from corral.testing import CorralProject

from .support import assert_journal, assert_not_resumed, log_events, run_waited

AGENT = """
import json, os, urllib.error, urllib.request


def nest(depth):
    value = "bottom"
    for _ in range(depth):
        value = [value]
    return value


def door(method, path, body):
    request = urllib.request.Request(os.environ["CORRAL_API_URL"] + path, data=json.dumps(body).encode(), method=method)
    request.add_header("authorization", "Bearer " + os.environ["CORRAL_DOOR_TOKEN"])
    try:
        with urllib.request.urlopen(request) as answer:
            return [answer.status, json.loads(answer.read())]
    except urllib.error.HTTPError as error:
        return [error.code, json.loads(error.read())]


def run(ctx):
    ctx.log.info("deep", x=nest(900), beside="kept")
    ctx.log.info("at the limit", x=nest(LIMIT))
    refused = {}
    for name, call in [
        ("state", lambda: ctx.state.__setitem__("k", nest(150))),
        ("tool", lambda: ctx.tool("word_count", text=nest(150))),
        ("model", lambda: ctx.model([{"role": "user", "text": "hi"}, {"role": "assistant", "tool_calls": [
            {"id": "c1", "name": "word_count", "arguments": {"text": nest(150)}}]}])),
        ("content", lambda: ctx.model([{"role": "user", "content": "hi"}])),
    ]:
        try:
            call()
            refused[name] = "not refused"
        except Exception as exc:
            refused[name] = f"{type(exc).__name__}: {exc}"
    refused["door log"] = door("POST", "/log", {"event": "deep", "fields": {"x": nest(150)}})
    ctx.state["after"] = "the run went on"
    ctx.log.info("after", words=ctx.tool("word_count", text="still counting"))
    return refused
"""


BODY = f"nests deeper than {MAX_BODY_DEPTH} levels"


def test_deep_values_are_cut_from_logs_or_refused_and_the_run_goes_on(corral_project: CorralProject) -> None:
    corral_project.agent("deep", AGENT.replace("LIMIT", str(MAX_DEPTH)), tools=["word_count"])
    corral_project.start_daemon()
    run = run_waited(corral_project, "deep")
    assert run["state"] == "succeeded", run
    refused = run["result"]
    limit = f"more than {MAX_DEPTH} levels deep"
    assert refused["state"].startswith("TooDeep: ctx.state['k']: lists and maps nested " + limit), refused
    assert refused["tool"].startswith("TooDeep: the arguments of tool 'word_count'"), refused
    assert "the request of ctx.model" in refused["model"] and limit in refused["model"], refused
    assert "messages[0] has an unknown key 'content'; write 'text' instead" in refused["content"], refused
    assert refused["door log"] == [400, {"error": {"status": 400, "message": f"the request body {BODY}"}}], refused

    events = {e["event"]: e for e in log_events(corral_project, "deep", run["id"]) if e.get("source") == "agent"}
    assert events["deep"]["x"] == f"[not logged: nests more than {MAX_DEPTH} lists and maps deep]"
    assert events["deep"]["beside"] == "kept"
    assert "bottom" in json.dumps(events["at the limit"]["x"])  # kept (the log writes what is past 8 levels as text)
    assert events["after"]["words"] == {"still": 1, "counting": 1}
    daemon = log_events(corral_project, None)
    assert not [e for e in daemon if e["level"] == "error"], [e["event"] for e in daemon if e["level"] == "error"]
    assert_not_resumed(corral_project, run)
    assert [s["name"] for s in assert_journal(corral_project, run["id"])] == ["set", "word_count"]

    shown = corral_project.cli("logs", "deep", "--json")
    assert shown.returncode == 0, shown.stderr
    lines = [json.loads(line) for line in shown.stdout.splitlines()]
    assert any(line.get("event") == "at the limit" for line in lines), shown.stdout[-2000:]


def test_a_run_input_nested_too_deep_is_refused_by_name(corral_project: CorralProject) -> None:
    corral_project.agent("echo", "def run(ctx):\n    return ctx.input\n")
    deep = "[" * (MAX_DEPTH + 1) + "]" * (MAX_DEPTH + 1)
    result = corral_project.cli("run", "echo", "--input", deep)
    assert result.returncode != 0
    assert f"up to {MAX_DEPTH} levels deep" in result.stderr, result.stderr
    within = "[" * MAX_DEPTH + "]" * MAX_DEPTH
    corral_project.start_daemon()
    run = run_waited(corral_project, "echo", "--input", within)
    assert run["state"] == "succeeded", run
