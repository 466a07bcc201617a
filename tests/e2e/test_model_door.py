"""The model door end to end: unmodified agents using the openai and anthropic SDKs under
``corral run --wait``, their every request a model step the daemon makes to the scripted
model server on 127.0.0.1 (tests/models/fake_servers.py)."""

from __future__ import annotations

import importlib.util
import json
import os
import signal
import time
from pathlib import Path
from typing import Any

import pytest

from corral.testing import CorralProject
from tests.door.agents import AGENTS_SDK, ANTHROPIC, CROSS, OPENAI
from tests.e2e.support import run_succeeded
from tests.models.fake_servers import FakeServer, Reply, anthropic_body, openai_body
from tests.projects import KEY, KEY_VAR, fake_model

pytest.importorskip("openai")
pytest.importorskip("anthropic")


@pytest.fixture
def door(corral_project: CorralProject, server: FakeServer, monkeypatch: pytest.MonkeyPatch) -> CorralProject:
    """Models ``fake`` (Chat Completions) and ``claude`` (Messages), both on ``server``, one try each."""
    monkeypatch.setenv(KEY_VAR, KEY)
    corral_project.models["fake"] = fake_model(server.url, retry_attempts=1)
    corral_project.models["claude"] = fake_model(
        server.url, provider="anthropic", base_url=server.url, model="fake-claude", retry_attempts=1
    )
    return corral_project


def _model_steps(project: CorralProject, run_id: str) -> list[dict[str, Any]]:
    trace = json.loads(project.cli("trace", run_id, "--json", check=True).stdout)
    return [step for step in trace["steps"] if step["kind"] == "model"]


def test_an_openai_sdk_agent_runs_unmodified_sync_async_streaming_and_with_tools(
    door: CorralProject, server: FakeServer
) -> None:
    door.agent("gpt", OPENAI, models=["fake", "claude"])
    server.enqueue(
        Reply(body=openai_body("hello", usage=(30, 4))),
        Reply(body=openai_body("same")),
        Reply(body=openai_body("same")),
        Reply(body=openai_body("streamed text", usage=(9, 7))),
        Reply(body=openai_body(None, [("call_1", "add", '{"a": 2, "b": 3}')], finish="tool_calls")),
        Reply(body=openai_body('{"sum": 5}')),
    )
    run = run_succeeded(door, "gpt")
    seen = run["result"]
    assert seen["sync"] == ["hello", 30, "fake"]
    assert seen["async"] == ["same", "same"]
    assert seen["stream"] == ["streamed text", 7]
    assert seen["tools"] == ["tool_calls", "add", {"a": 2, "b": 3}, '{"sum": 5}']
    assert seen["models"] == ["claude", "fake", "fake-claude", "fake-gpt"]
    assert len(server.requests) == 6, "one upstream request per SDK call"
    sent = [request.json() for request in server.requests]
    assert sent[0]["messages"] == [{"role": "user", "content": "hi"}]
    assert sent[4]["tools"][0]["function"]["name"] == "add" and sent[4]["tool_choice"] == "auto"
    assert sent[5]["messages"][2]["tool_calls"][0]["function"]["arguments"] == '{"a": 2, "b": 3}'
    assert sent[5]["messages"][3] == {"role": "tool", "tool_call_id": "call_1", "content": "5"}
    assert sent[5]["response_format"] == {
        "type": "json_schema",
        "json_schema": {"name": "sum", "schema": {"type": "object"}},
    }
    assert all(request.headers["authorization"] == f"Bearer {KEY}" for request in server.requests)
    steps = _model_steps(door, run["id"])
    assert [step["name"] for step in steps] == ["fake"] * 6
    assert run["spent"]["calls"] == 6


def test_an_anthropic_sdk_agent_runs_unmodified_sync_async_streaming_and_with_tools(
    door: CorralProject, server: FakeServer
) -> None:
    door.agent("claude", ANTHROPIC, models=["claude"])
    server.enqueue(
        Reply(body=anthropic_body("hello", usage=(30, 4), cache=(10, 0))),
        Reply(body=anthropic_body("same")),
        Reply(body=anthropic_body("same")),
        Reply(body=anthropic_body("streamed", usage=(9, 7))),
        Reply(body=anthropic_body("", [("toolu_1", "add", {"a": 2, "b": 3})], stop="tool_use")),
        Reply(body=anthropic_body("it is 5")),
    )
    seen = run_succeeded(door, "claude")["result"]
    assert seen["sync"] == ["hello", 30, "claude", "end_turn"], "input_tokens as Anthropic counts them"
    assert seen["async"] == ["same", "same"]
    assert seen["stream"] == ["streamed", 7]
    assert seen["tools"] == ["tool_use", "add", {"a": 2, "b": 3}, "it is 5"]
    sent = [request.json() for request in server.requests]
    assert len(sent) == 6
    assert all(request.path == "/v1/messages" for request in server.requests)
    assert sent[3]["system"] == "be brief"
    assert sent[5]["messages"][1]["content"] == [
        {"type": "tool_use", "id": "toolu_1", "name": "add", "input": {"a": 2, "b": 3}}
    ]
    assert sent[5]["messages"][2]["content"][0]["type"] == "tool_result"
    assert sent[5]["tools"][0]["input_schema"]["properties"]["a"] == {"type": "number"}


def test_a_request_in_one_format_goes_to_an_upstream_of_the_other(door: CorralProject, server: FakeServer) -> None:
    door.agent("cross", CROSS, models=["fake", "claude"])
    server.enqueue(Reply(body=anthropic_body("from claude")), Reply(body=openai_body("from gpt")))
    assert run_succeeded(door, "cross")["result"] == ["from claude", "from gpt"]
    to_claude, to_gpt = (request.json() for request in server.requests)
    assert server.requests[0].path == "/v1/messages" and to_claude["system"] == "sys" and to_claude["max_tokens"] == 70
    assert server.requests[1].path == "/v1/chat/completions"
    assert to_gpt["messages"] == [{"role": "system", "content": "sys"}, {"role": "user", "content": "hello"}]


BAD_INPUT = """
import json, os, urllib.request, urllib.error
import anthropic, openai


def raw(path, body=b"{}", headers=None, method="POST"):
    base = os.environ["OPENAI_BASE_URL"].removesuffix("/v1")
    sent = {"authorization": "Bearer " + os.environ["OPENAI_API_KEY"], "content-type": "application/json"}
    sent.update(headers or {})
    request = urllib.request.Request(base + path, data=body if method == "POST" else None, headers=sent, method=method)
    try:
        with urllib.request.urlopen(request) as answer:
            return [answer.status, json.loads(answer.read())]
    except urllib.error.HTTPError as error:
        return [error.code, json.loads(error.read()), error.headers.get("x-should-retry")]


def sdk(call):
    try:
        call()
    except (openai.APIStatusError, anthropic.APIStatusError) as error:
        return [type(error).__name__, error.status_code, str(error)]
    return "no error"


def run(ctx):
    gpt, claude = openai.OpenAI(max_retries=0), anthropic.Anthropic(max_retries=0)
    user = [{"role": "user", "content": "hi"}]
    big = b'{"model": "fake", "messages": [{"role": "user", "content": "' + b"x" * 5_000_000 + b'"}]}'
    seen = {
        "not json": raw("/v1/chat/completions", b"{nope"),
        "no messages": raw("/v1/chat/completions", b'{"model": "fake"}'),
        "bad role": sdk(lambda: gpt.chat.completions.create(model="fake", messages=[{"role": "robot"}])),
        "bad temperature": sdk(lambda: gpt.chat.completions.create(model="fake", messages=user, temperature=7)),
        "image": sdk(lambda: gpt.chat.completions.create(model="fake", messages=[{"role": "user", "content": [
            {"type": "image_url", "image_url": {"url": "http://x"}}]}])),
        "no max_tokens": raw("/v1/messages", b'{"model": "claude", "messages": []}', {"anthropic-version": "1"}),
        "too big": raw("/v1/chat/completions", big),
        "huge int": raw("/v1/chat/completions", b'{"model": "fake", "messages": [{"role": "user", "content": "x"}], '
                        b'"max_tokens": 100000000000000000000000}'),
        "too deep": raw("/v1/chat/completions", b'{"model": "fake", "messages": ' + b"[" * 200 + b"]" * 200 + b"}"),
        "unknown path": raw("/v1/embeddings", b'{"input": "x"}'),
        "unknown model": sdk(lambda: gpt.chat.completions.create(model="gpt-5", messages=user)),
        "unknown model claude": sdk(lambda: claude.messages.create(model="opus", max_tokens=5, messages=user)),
        "no token": raw("/v1/models", method="GET", headers={"authorization": ""}),
        "wrong token": sdk(lambda: openai.OpenAI(api_key="sk-guess", max_retries=0).models.list()),
        "wrong token claude": sdk(lambda: anthropic.Anthropic(api_key="guess", max_retries=0).messages.create(
            model="claude", max_tokens=5, messages=user)),
    }
    seen["still works"] = gpt.chat.completions.create(model="fake", messages=user).choices[0].message.content
    return seen
"""


def test_bad_input_gets_the_apis_own_errors_and_the_run_goes_on(door: CorralProject, server: FakeServer) -> None:
    door.agent("bad", BAD_INPUT, models=["fake", "claude"])
    server.enqueue(Reply(body=openai_body("fine")))
    run = run_succeeded(door, "bad")
    seen = run["result"]
    assert seen["not json"][0] == 400 and "not valid JSON" in seen["not json"][1]["error"]["message"]
    assert seen["no messages"][0] == 400 and seen["no messages"][1]["error"]["param"] == "messages"
    assert seen["bad role"][:2] == ["BadRequestError", 400] and "messages[0].role" in seen["bad role"][2]
    assert seen["bad temperature"][:2] == ["BadRequestError", 400] and "temperature" in seen["bad temperature"][2]
    assert "messages[0].content[0].type" in seen["image"][2]
    assert seen["no max_tokens"][0] == 400
    assert seen["no max_tokens"][1] == {
        "type": "error",
        "error": {"type": "invalid_request_error", "message": "max_tokens: is required"},
    }
    assert seen["too big"][0] == 413
    assert seen["huge int"][0] == 400 and "64 bits" in seen["huge int"][1]["error"]["message"]
    assert seen["too deep"][0] == 400 and "nests deeper" in seen["too deep"][1]["error"]["message"]
    assert seen["unknown path"][0] == 404 and "/v1/embeddings" in seen["unknown path"][1]["error"]["message"]
    assert seen["unknown model"][:2] == ["NotFoundError", 404] and "granted models: fake" in seen["unknown model"][2]
    assert seen["unknown model claude"][:2] == ["NotFoundError", 404]
    assert seen["no token"][0] == 401 and seen["no token"][2] == "false"
    assert seen["wrong token"][:2] == ["AuthenticationError", 401]
    assert seen["wrong token claude"][:2] == ["AuthenticationError", 401]
    assert seen["still works"] == "fine"
    assert len(server.requests) == 1, "no bad request reaches the daemon, nor the model"
    assert len(_model_steps(door, run["id"])) == 1


BUDGETED = """
import anthropic, openai


def run(ctx):
    user = [{"role": "user", "content": "hi"}]
    gpt = openai.OpenAI()
    first = gpt.chat.completions.create(model="fake", messages=user).choices[0].message.content
    try:
        gpt.chat.completions.create(model="fake", messages=user)
    except openai.RateLimitError as error:
        over = [error.status_code, error.body["message"], error.response.headers.get("x-should-retry")]
    try:
        anthropic.Anthropic().messages.create(model="claude", max_tokens=5, messages=user)
    except anthropic.RateLimitError as error:
        over_claude = error.body["error"]["type"]
    return [first, over, over_claude]
"""


def test_a_request_over_budget_is_a_429_naming_the_budget_and_the_run_goes_on(
    door: CorralProject, server: FakeServer
) -> None:
    door.agent("thrifty", BUDGETED, models=["fake", "claude"], budget={"run_calls": 1})
    server.enqueue(Reply(body=openai_body("one")))
    first, over, over_claude = run_succeeded(door, "thrifty")["result"]
    assert first == "one"
    assert over[0] == 429 and "run_calls" in over[1] and over[2] == "false"
    assert over_claude == "rate_limit_error"
    assert len(server.requests) == 1, "SDK retries of a spent budget never reach the model"


DOWN = """
import anthropic, openai


def run(ctx):
    user = [{"role": "user", "content": "hi"}]
    try:
        openai.OpenAI(max_retries=0).chat.completions.create(model="fake", messages=user)
    except openai.InternalServerError as error:
        gpt = [error.status_code, error.response.headers.get("retry-after"), "after every retry" in error.message]
    try:
        anthropic.Anthropic(max_retries=0).messages.create(model="claude", max_tokens=5, messages=user)
    except anthropic.APIStatusError as error:
        claude = [error.status_code, type(error).__name__]
    return [gpt, claude]
"""


def test_an_endpoint_down_after_corrals_retries_is_503_or_529_with_retry_after(
    door: CorralProject, server: FakeServer
) -> None:
    door.agent("down", DOWN, models=["fake", "claude"])
    server.enqueue(Reply(status=503, headers={"Retry-After": "3"}), Reply(status=529))
    gpt, claude = run_succeeded(door, "down")["result"]
    assert gpt == [503, "3", True]
    assert claude == [529, "OverloadedError"]


RESUMED = """
import os, time
from pathlib import Path
from openai import OpenAI


def run(ctx):
    client = OpenAI(max_retries=0)
    stamp = Path("stamp.txt").read_text() if Path("stamp.txt").exists() else "first"
    texts = []
    for i in range(3):
        messages = [{"role": "user", "content": f"question {i} at {stamp}"}]
        if i == 2:
            Path("asked-two").touch()
            while not Path("go").exists():
                time.sleep(0.05)
        stream = client.chat.completions.create(model="fake", messages=messages, stream=True)
        texts.append("".join(c.choices[0].delta.content or "" for c in stream if c.choices))
    return texts
"""


def _wait_file(path: Path, timeout: float = 30.0) -> None:
    deadline = time.monotonic() + timeout
    while not path.exists():
        assert time.monotonic() < deadline, f"{path} never appeared"
        time.sleep(0.05)


def _crash_daemon_mid_run(project: CorralProject, server: FakeServer, stamp: str | None) -> tuple[str, Path]:
    """Two calls answered, the daemon killed -9 while the agent waits before its third; the
    workdir's stamp (which the prompts carry) set to ``stamp`` for the resume."""
    workdir = project.home / "agents" / "resumed"
    daemon = project.start_daemon()
    server.enqueue(Reply(body=openai_body("one")), Reply(body=openai_body("two")))
    run_id = project.cli_json("run", "resumed")["id"]
    _wait_file(workdir / "asked-two")
    os.kill(daemon.pid, signal.SIGKILL)
    daemon.process.wait(10)
    (workdir / "asked-two").unlink()
    if stamp is not None:
        (workdir / "stamp.txt").write_text(stamp)
    (workdir / "go").touch()
    return run_id, workdir


def test_a_resume_after_kill_9_answers_finished_calls_from_the_journal(door: CorralProject, server: FakeServer) -> None:
    door.agent("resumed", RESUMED, models=["fake"])
    run_id, _ = _crash_daemon_mid_run(door, server, None)
    assert len(server.requests) == 2
    server.enqueue(Reply(body=openai_body("three")))
    door.start_daemon()
    run = door.wait_for_run(run_id)
    assert run["state"] == "succeeded", run.get("error")
    assert run["result"] == ["one", "two", "three"], "the journaled answers are streamed back"
    assert len(server.requests) == 3, "no finished call is paid for again"
    assert run["spent"]["calls"] == 3


@pytest.mark.parametrize("policy", ["fail", "live"])
def test_a_resumed_request_that_differs_fails_showing_the_change_or_goes_live(
    door: CorralProject, server: FakeServer, policy: str
) -> None:
    door.agent("resumed", RESUMED, models=["fake"], on_divergence=policy)
    run_id, _ = _crash_daemon_mid_run(door, server, "second")
    server.enqueue(*(Reply(body=openai_body(text)) for text in ("one again", "two again", "three")))
    door.start_daemon()
    run = door.wait_for_run(run_id)
    if policy == "fail":
        assert run["state"] == "failed" and run["error"]["kind"] == "nondeterminism", run
        message = run["error"]["message"]
        assert "messages[0].text: journal 'question 0 at first', now 'question 0 at second'" in message, message
        assert 'on_divergence = "live"' in message
        assert len(server.requests) == 2
        return
    assert run["state"] == "succeeded", run.get("error")
    assert run["result"] == ["one again", "two again", "three"]
    assert len(server.requests) == 5, "from the first request that differs, every call goes upstream"
    steps = _model_steps(door, run_id)
    assert steps[0]["diverged"].startswith("messages[0].text") and steps[1]["live"]
    trace = door.cli("trace", run_id, check=True).stdout
    assert "live: differs from the journal" in trace
    assert "on_divergence = live" in (door.home / "logs" / "resumed.log").read_text()


REPEATING = """
import anthropic, openai


def run(ctx):
    user = [{"role": "user", "content": "same question"}]
    gpt, seen = openai.OpenAI(max_retries=0), []
    for _ in range(2):
        seen.append(gpt.chat.completions.create(model="fake", messages=user).choices[0].message.content)
    try:
        gpt.chat.completions.create(model="fake", messages=user)
    except openai.PermissionDeniedError as error:
        seen.append([error.status_code, error.body["type"], "3 times" in error.body["message"]])
    other = [{"role": "user", "content": "a new question"}]
    seen.append(gpt.chat.completions.create(model="fake", messages=other).choices[0].message.content)
    return seen
"""


def test_a_guardrail_refusal_is_the_apis_403_and_the_run_goes_on(door: CorralProject, server: FakeServer) -> None:
    """The built-in ``repeats`` guardrail refuses the third identical model request; the
    agent is told in the SDK's own exception (Anthropic's form: tests/test_model_door.py)."""
    door.agent("loop", REPEATING, models=["fake"], guardrails={"repeat_stop": 10})
    server.enqueue(*(Reply(body=openai_body(text)) for text in ("a", "b", "c")))
    seen = run_succeeded(door, "loop")["result"]
    assert seen == ["a", "b", [403, "permission_error", True], "c"]
    assert len(server.requests) == 3


@pytest.mark.framework
def test_an_openai_agents_sdk_agent_with_a_function_tool_and_a_handoff_runs_over_the_responses_api(
    door: CorralProject, server: FakeServer
) -> None:
    if importlib.util.find_spec("agents") is None:  # not imported here: tests/mcp/ shadows the SDK's mcp
        pytest.skip("the OpenAI Agents SDK is not installed (pip install openai-agents)")
    door.agent("agents_sdk", AGENTS_SDK, models=["fake"])
    for a, b in ((2, 3), (4, 5)):
        server.enqueue(
            Reply(body=openai_body(None, [("h1", "transfer_to_mathematician", "{}")], finish="tool_calls")),
            Reply(body=openai_body(None, [("t1", "add", json.dumps({"a": a, "b": b}))], finish="tool_calls")),
            Reply(body=openai_body(f"it is {a + b}")),
        )
    run = run_succeeded(door, "agents_sdk")
    assert run["result"] == ["it is 5", "Mathematician", "it is 9", "Mathematician", True]
    sent = [request.json() for request in server.requests]
    assert len(sent) == 6
    assert [tool["function"]["name"] for tool in sent[0]["tools"]] == ["transfer_to_mathematician"]
    assert sent[1]["messages"][0] == {"role": "system", "content": "Do sums with add."}
    assert sent[2]["messages"][-1]["role"] == "tool" and sent[2]["messages"][-1]["content"] == "5"
    assert {step["args"]["door"] for step in _model_steps(door, run["id"])} == {"responses"}


CROWDED = """
import json, os, time
from pathlib import Path
import openai


def run(ctx):
    shared = Path(ctx.input)
    (shared / "port").write_text(os.environ["OPENAI_BASE_URL"].split(":")[-1].split("/")[0])
    while not (shared / "go").exists():
        time.sleep(0.05)
    answer = openai.OpenAI(max_retries=0).chat.completions.create(
        model="fake", messages=[{"role": "user", "content": "hi"}])
    held = [open(__file__) for _ in range(150)]
    opened = len(held)
    for handle in held:
        handle.close()
    return [answer.choices[0].message.content, opened]
"""


def test_idle_connections_from_outside_cannot_use_up_the_agents_descriptors(
    door: CorralProject, server: FakeServer, tmp_path: Path
) -> None:
    """A run with a network list has its door on the host's loopback: 300 idle connections
    from another process (no token, no request) are capped and cut, not a thread and a
    descriptor each in the agent's process."""
    import socket
    import subprocess
    import sys

    shared = tmp_path / "shared"
    shared.mkdir()
    door.agent("crowded", CROWDED, models=["fake"], sandbox={"network": ["127.0.0.1:9"], "read_write": [str(shared)]})
    server.enqueue(Reply(body=openai_body("still here")))
    started = subprocess.Popen(
        [sys.executable, "-m", "corral", "run", "crowded", "--input", json.dumps(str(shared)), "--wait", "--json"],
        env=door.env,
        cwd=door.root,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    deadline = time.monotonic() + 60
    while not (shared / "port").exists() or not (shared / "port").read_text():
        assert time.monotonic() < deadline and started.poll() is None, started.communicate()
        time.sleep(0.05)
    port = int((shared / "port").read_text())
    crowd = [socket.create_connection(("127.0.0.1", port)) for _ in range(300)]
    try:
        probe = socket.create_connection(("127.0.0.1", port), timeout=10)
        probe.sendall(b"GET /v1/models HTTP/1.1\r\nhost: x\r\n\r\n")
        head = probe.recv(4096).split(b"\r\n\r\n")[0].lower()
        probe.close()
        assert b" 401 " in head and b"server:" not in head, "no Server header naming corral"
        (shared / "go").write_text("")
        out, err = started.communicate(timeout=60)
    finally:
        for conn in crowd:
            conn.close()
    run = json.loads(out)
    assert run["state"] == "succeeded", (run.get("error"), err)
    assert run["result"] == ["still here", 150]


HUGE_CAP = """
import anthropic, openai


def run(ctx):
    user = [{"role": "user", "content": "hi"}]
    gpt = openai.OpenAI(max_retries=0).chat.completions.create(model="fake", messages=user, max_tokens=10**12)
    claude = anthropic.Anthropic(max_retries=0, timeout=60)  # a timeout: no refusal of a long wait
    claude = claude.messages.create(model="claude", max_tokens=10**12, messages=user)
    small = ctx.model([{"role": "user", "text": "hi"}], model="fake", max_tokens=7)
    return [gpt.choices[0].message.content, claude.content[0].text, small.text]
"""


def test_an_agents_max_tokens_is_clamped_to_the_models_max_output_tokens(
    door: CorralProject, server: FakeServer
) -> None:
    door.models["fake"]["max_output_tokens"] = 500
    door.models["claude"]["max_output_tokens"] = 300
    door.agent("greedy", HUGE_CAP, models=["fake", "claude"])
    server.enqueue(Reply(body=openai_body("a")), Reply(body=anthropic_body("b")), Reply(body=openai_body("c")))
    assert run_succeeded(door, "greedy")["result"] == ["a", "b", "c"]
    sent = [request.json()["max_tokens"] for request in server.requests]
    assert sent == [500, 300, 7], "never more than the model's max_output_tokens; less when asked"
