"""Agents in any language (``command = [...]``) end to end: a Python script run as a plain
program (urllib only, no corral import) and shell scripts using curl, under ``corral run
--wait``: their environment, input and result files, exit status, the state and log API on
the door (every answer checked against the shipped OpenAPI document), the tree kill on
cancel, wall time and the daemon's kill -9, and a resume answered from the journal."""

from __future__ import annotations

import json
import os
import shutil
import signal
import time
from pathlib import Path

import psutil
import pytest

from corral.testing import CorralProject, wait_for
from tests.door.openapi import answer_problems
from tests.e2e.support import kill_daemon_at, run_waited, steps_of

CLIENT = """
import json, os, urllib.error, urllib.parse, urllib.request

BASE, TOKEN = os.environ["CORRAL_API_URL"], os.environ["CORRAL_DOOR_TOKEN"]
ANSWERS = []


def call(method, path, body=None, raw=None, token=TOKEN):
    data = raw if raw is not None else None if body is None else json.dumps(body).encode()
    request = urllib.request.Request(BASE + path, data=data, method=method)
    if token is not None:
        request.add_header("authorization", "Bearer " + token)
    try:
        with urllib.request.urlopen(request) as answer:
            status, got = answer.status, json.loads(answer.read())
    except urllib.error.HTTPError as error:
        status, got = error.code, json.loads(error.read())
    ANSWERS.append([method, path, status, got])
    return [status, got]
"""

API_AGENT = (
    CLIENT
    + """
import sys

print("to stdout", flush=True)
print("to stderr", file=sys.stderr, flush=True)
odd = urllib.parse.quote("a/ü", safe="")
seen = {
    "input": json.load(open(os.environ["CORRAL_INPUT"])),
    "variables": sorted(name for name in os.environ if name.startswith("CORRAL_")),
    "ids": [os.environ["CORRAL_AGENT"], os.environ["CORRAL_ATTEMPT"], os.environ["CORRAL_RUN_ID"]],
    "cwd": os.getcwd() == os.environ["HOME"],
    "empty": call("GET", "/state"),
    "put": call("PUT", "/state/count", {"value": 1}),
    "put odd": call("PUT", "/state/" + odd, {"value": {"nested": [1, 2.5, None, "é"]}}),
    "get": call("GET", "/state/count"),
    "get odd": call("GET", "/state/" + odd),
    "missing": call("GET", "/state/nope"),
    "delete": call("DELETE", "/state/count"),
    "delete missing": call("DELETE", "/state/count"),
    "all": call("GET", "/state"),
    "log": call("POST", "/log", {"level": "warning", "event": "checked", "fields": {"items": 3}}),
    "log default": call("POST", "/log", {"event": "plain"}),
    "bad level": call("POST", "/log", {"level": "loud", "event": "x"}),
    "no event": call("POST", "/log", {"fields": {}}),
    "not json": call("PUT", "/state/x", raw=b"{nope"),
    "no value": call("PUT", "/state/x", {"valu": 1}),
    "not object": call("PUT", "/state/x", [1]),
    "nan": call("PUT", "/state/x", raw=b'{"value": NaN}'),
    "infinite": call("PUT", "/state/x", raw=b'{"value": 1e999}'),
    "log like corral": call("POST", "/log", {"event": "odd names", "fields": {"event": "mine", "self": 1}}),
    "log surrogate": call("POST", "/log", raw=b'{"event": "x", "fields": {"\\ud800": 1}}'),
    "huge int": call("PUT", "/state/x", raw=b'{"value": 100000000000000000000000}'),
    "too deep": call("PUT", "/state/x", raw=b'{"value": ' + b"[" * 100 + b"]" * 100 + b"}"),
    "over limit": call("PUT", "/state/x", {"value": "x" * 3000}),
    "too big": call("PUT", "/state/x", raw=b'{"value": "' + b"x" * 5_000_000 + b'"}'),
    "long key": call("GET", "/state/" + "k" * 300),
    "no token": call("GET", "/state", token=None),
    "wrong token": call("GET", "/state", token="corral-guess"),
    "unknown path": call("GET", "/elsewhere"),
    "wrong method": call("POST", "/state"),
    "openapi": call("GET", "/openapi.json")[0],
    "still works": call("PUT", "/state/last", {"value": "fine"}),
}
seen["answers"] = ANSWERS
json.dump(seen, open(os.environ["CORRAL_RESULT"], "w"))
"""
)


def test_a_python_script_run_as_a_command_gets_its_run_and_uses_the_state_and_log_api(
    corral_project: CorralProject,
) -> None:
    corral_project.command_agent(
        "script", ["python3", "agent.py"], {"agent.py": API_AGENT}, input={"n": 2}, limits={"state_value_kb": 2}
    )
    run = run_waited(corral_project, "script")
    assert run["state"] == "succeeded", run.get("error")
    seen = run["result"]
    assert seen["input"] == {"n": 2}
    assert set(seen["variables"]) - {"CORRAL_MCP_URL"} == {
        "CORRAL_AGENT",
        "CORRAL_API_URL",
        "CORRAL_ATTEMPT",
        "CORRAL_CODE",
        "CORRAL_DOOR_TOKEN",
        "CORRAL_INPUT",
        "CORRAL_RESULT",
        "CORRAL_RUN_ID",
        "CORRAL_TRACE_ID",
    }
    assert seen["ids"] == ["script", "1", run["id"]] and seen["cwd"]
    assert seen["empty"] == [200, {"state": {}}]
    assert seen["put"] == [200, {"ok": True, "key": "count"}]
    assert seen["get"] == [200, {"key": "count", "value": 1}]
    assert seen["get odd"] == [200, {"key": "a/ü", "value": {"nested": [1, 2.5, None, "é"]}}]
    assert seen["missing"][0] == 404 and "no key 'nope'" in seen["missing"][1]["error"]["message"]
    assert seen["delete"] == [200, {"ok": True, "key": "count"}] and seen["delete missing"][0] == 404
    assert seen["all"] == [200, {"state": {"a/ü": {"nested": [1, 2.5, None, "é"]}}}]
    assert seen["log"] == [200, {"ok": True}] and seen["log default"] == [200, {"ok": True}]
    assert seen["bad level"][0] == 400 and seen["bad level"][1]["error"]["field"] == "level"
    assert seen["no event"][0] == 400 and "event is required" in seen["no event"][1]["error"]["message"]
    assert seen["not json"][0] == 400 and "not valid JSON" in seen["not json"][1]["error"]["message"]
    assert seen["no value"][0] == 400 and seen["no value"][1]["error"]["field"] == "valu"
    assert seen["not object"][0] == 400
    assert seen["nan"][0] == 400 and "NaN is not a JSON value" in seen["nan"][1]["error"]["message"]
    assert seen["infinite"][0] == 400 and "1e999 is beyond" in seen["infinite"][1]["error"]["message"]
    assert seen["log like corral"] == [200, {"ok": True}], "a field may be named like the log call's parameters"
    assert seen["log surrogate"][0] == 400 and seen["log surrogate"][1]["error"]["field"] == "fields"
    assert seen["huge int"][0] == 400 and "64 bits" in seen["huge int"][1]["error"]["message"]
    assert seen["too deep"][0] == 400 and "nests deeper" in seen["too deep"][1]["error"]["message"]
    assert seen["over limit"][0] == 413 and "limits.state_value_kb" in seen["over limit"][1]["error"]["message"]
    assert seen["too big"][0] == 413
    assert seen["long key"][0] == 400 and seen["long key"][1]["error"]["field"] == "key"
    assert seen["no token"][0] == 401 and seen["wrong token"][0] == 401
    assert seen["unknown path"][0] == 404 and "openapi.json" in seen["unknown path"][1]["error"]["message"]
    assert seen["wrong method"][0] == 405 and "use GET" in seen["wrong method"][1]["error"]["message"]
    assert seen["openapi"] == 200 and seen["still works"][0] == 200
    assert answer_problems(seen["answers"]) == []

    steps = steps_of(corral_project, run["id"])
    writes = [(step["kind"], step["name"], step["args"]["key"]) for step in steps]
    assert writes == [
        ("state", "set", "count"),
        ("state", "set", "a/ü"),
        ("state", "delete", "count"),
        ("state", "set", "last"),
    ], "each write one journaled step; no refused request reached the daemon"
    log = [json.loads(line) for line in (corral_project.home / "logs" / "script.log").read_text().splitlines()]
    by_event = {line["event"]: line for line in log}
    assert by_event["checked"]["level"] == "warning" and by_event["checked"]["items"] == 3
    assert by_event["plain"]["level"] == "info" and by_event["checked"]["run_id"] == run["id"]
    assert by_event["odd names"]["agent_event"] == "mine" and by_event["odd names"]["agent_self"] == 1
    assert {line.get("line") for line in log} >= {"to stdout", "to stderr"}

    again = run_waited(corral_project, "script")
    assert again["result"]["empty"] == [200, {"state": {"a/ü": {"nested": [1, 2.5, None, "é"]}, "last": "fine"}}]

    debug = corral_project.cli("replay", run["id"], "--pdb")
    assert debug.returncode == 2 and "runs a command (python3 agent.py)" in debug.stderr, debug.stderr


SHELL = """\
#!/bin/sh
set -e
auth="authorization: Bearer $CORRAL_DOOR_TOKEN"
curl -sf -X PUT -H "$auth" -d '{"value": "from sh"}' "$CORRAL_API_URL/state/shell" > /dev/null
curl -sf -H "$auth" -d '{"event": "shell ran", "fields": {"input": '"$(cat "$CORRAL_INPUT")"'}}' "$CORRAL_API_URL/log"
case "$1" in
  ok) curl -sf -H "$auth" "$CORRAL_API_URL/state/shell" > "$CORRAL_RESULT" ;;
  none) ;;
  status) echo "step one went fine" >&2; echo "could not reach the wiki: 503" >&2; exit 3 ;;
  badjson) printf '{"done": ' > "$CORRAL_RESULT" ;;
  infinite) printf '{"done": 1e999}' > "$CORRAL_RESULT" ;;
  signal) kill -9 $$ ;;
esac
"""


@pytest.mark.skipif(shutil.which("curl") is None, reason="curl is not installed")
@pytest.mark.parametrize("case", ["ok", "none", "status", "badjson", "infinite", "signal"])
def test_a_shell_script_with_curl_succeeds_with_status_0_and_fails_naming_what_went_wrong(
    corral_project: CorralProject, case: str
) -> None:
    corral_project.command_agent("shell", ["./agent.sh", case], {"agent.sh": SHELL}, input=[1, "two"])
    run = run_waited(corral_project, "shell")
    steps = steps_of(corral_project, run["id"])
    assert [step["args"] for step in steps] == [{"key": "shell", "value": "from sh"}]
    assert '"event":"shell ran"' in (corral_project.home / "logs" / "shell.log").read_text()
    if case in ("ok", "none"):
        assert run["state"] == "succeeded", run.get("error")
        assert run["result"] == ({"key": "shell", "value": "from sh"} if case == "ok" else None)
        return
    assert run["state"] == "failed"
    error = run["error"]
    assert error["kind"] == "agent" and error["type"] == "CommandFailed"
    message = error["message"]
    if case == "status":
        assert message.startswith(f"the command '{corral_project.agents_dir / 'shell' / 'agent.sh'}' exited with")
        assert "status 3; the end of its stderr: step one went fine\ncould not reach the wiki: 503" in message
        assert error["traceback"].endswith("could not reach the wiki: 503\n")
    elif case == "badjson":
        assert "$CORRAL_RESULT" in message and "result.json) is not valid JSON: Expecting value" in message
    elif case == "infinite":
        assert "result.json) is not valid JSON: 1e999 is beyond the largest number" in message
    else:
        assert "was killed by SIGKILL" in message and "wrote nothing to stderr" in message


def test_a_program_that_cannot_start_fails_the_run_saying_why(corral_project: CorralProject) -> None:
    """Executable, but no ``#!`` line: the system cannot start it (corral check cannot tell)."""
    folder = corral_project.command_agent("bare", ["./agent"], {"agent": "echo hi\n"})
    (folder / "agent").chmod(0o755)
    run = run_waited(corral_project, "bare")
    assert run["state"] == "failed" and run["error"]["type"] == "CommandFailed"
    message = run["error"]["message"]
    assert message.startswith("the command could not be started: ") and "without a #! line?" in message, message
    assert 'command = ["sh", "agent"]' in message


TREE = """\
#!/bin/sh
sleep "$1" &
echo started > started
sleep "$1"
"""
ENDS = {"cancel": "313", "wall time": "314", "kill -9 of the daemon": "315"}
"""How each case ends the run, and the seconds its sleepers sleep: what tells them from another case's."""


def _sleepers(seconds: str) -> list[psutil.Process]:
    return [p for p in psutil.process_iter(["cmdline"]) if p.info["cmdline"] == ["sleep", seconds]]


@pytest.mark.parametrize("end", ENDS)
def test_a_cancel_the_wall_time_or_the_daemons_death_ends_the_commands_whole_tree(
    corral_project: CorralProject, end: str
) -> None:
    seconds = ENDS[end]
    assert not _sleepers(seconds), "sleepers of another run of this test are still about"
    limits = {"wall_seconds": 3} if end == "wall time" else {}
    corral_project.command_agent("tree", ["sh", "agent.sh", seconds], {"agent.sh": TREE}, limits=limits)
    daemon = corral_project.start_daemon()
    run_id = corral_project.cli_json("run", "tree")["id"]
    wait_for(lambda: (corral_project.home / "agents" / "tree" / "started").exists(), "the script to start")
    wait_for(lambda: len(_sleepers(seconds)) == 2, "the script and its background child to sleep")
    if end == "cancel":
        corral_project.cli("cancel", run_id, check=True)
    elif end == "kill -9 of the daemon":
        os.kill(daemon.pid, signal.SIGKILL)
        daemon.process.wait(10)
    wait_for(lambda: not _sleepers(seconds), "every process of the run to be gone", timeout=15)
    if end != "kill -9 of the daemon":
        run = corral_project.wait_for_run(run_id)
        assert run["state"] == ("cancelled" if end == "cancel" else "failed"), run


LEAVER = """\
#!/bin/sh
sleep 316 &
echo '"left one behind"' > "$CORRAL_RESULT"
"""


def test_a_program_that_leaves_a_child_running_ends_its_run_and_the_child_with_it(
    corral_project: CorralProject,
) -> None:
    """The child holds the program's stderr open; the run ends all the same, and its tree with it."""
    corral_project.command_agent("leaver", ["sh", "agent.sh"], {"agent.sh": LEAVER})
    started = time.monotonic()
    run = run_waited(corral_project, "leaver")
    assert run["state"] == "succeeded" and run["result"] == "left one behind", run.get("error")
    assert time.monotonic() - started < 20, "the run did not wait for the child"
    wait_for(lambda: not _sleepers("316"), "the child to be ended with the run", timeout=10)


RESUMED = (
    CLIENT
    + """
import time
from pathlib import Path

first = call("PUT", "/state/first", {"value": "written once"})
Path("asked").touch()
while not Path("go").exists():
    time.sleep(0.05)
second = call("PUT", "/state/second", {"value": os.environ["CORRAL_ATTEMPT"]})
json.dump([first, second, call("GET", "/state")[1]["state"]], open(os.environ["CORRAL_RESULT"], "w"))
"""
)


def test_a_command_agent_killed_with_its_daemon_resumes_from_the_top_its_writes_answered_from_the_journal(
    corral_project: CorralProject,
) -> None:
    corral_project.command_agent("again", ["python3", "agent.py"], {"agent.py": RESUMED})
    daemon = corral_project.start_daemon()
    run_id = corral_project.cli_json("run", "again")["id"]
    kill_daemon_at(daemon, corral_project.home / "agents" / "again" / "asked")
    time.sleep(0.5)  # the old attempt's program, had it survived, would write now
    corral_project.start_daemon()
    run = corral_project.wait_for_run(run_id)
    assert run["state"] == "succeeded", run.get("error")
    assert run["attempt"] == 2
    first, second, state = run["result"]
    assert first == [200, {"ok": True, "key": "first"}] and second == [200, {"ok": True, "key": "second"}]
    assert state == {"first": "written once", "second": "2"}
    steps = steps_of(corral_project, run_id)
    assert [(step["seq"], step["args"]["key"]) for step in steps] == [(1, "first"), (2, "second")]
    log = (corral_project.home / "logs" / "again.log").read_text()
    replayed = [json.loads(line) for line in log.splitlines() if '"event":"step"' in line]
    assert {(line["seq"], line["replayed"]) for line in replayed} == {(1, False), (1, True), (2, False)}, (
        "the first write answered from the journal on the resume, the second made once"
    )


BOTH_DOORS = (
    CLIENT
    + """
MCP = os.environ["CORRAL_MCP_URL"]
META = {"io.modelcontextprotocol/protocolVersion": "2026-07-28", "io.modelcontextprotocol/clientCapabilities": {}}


def tool(name, arguments):
    params = {"name": name, "arguments": arguments, "_meta": META}
    body = {"jsonrpc": "2.0", "id": 1, "method": "tools/call", "params": params}
    headers = {"authorization": "Bearer " + TOKEN, "content-type": "application/json", "mcp-method": "tools/call",
               "mcp-name": name, "accept": "application/json, text/event-stream", "mcp-protocol-version": "2026-07-28"}
    request = urllib.request.Request(MCP, data=json.dumps(body).encode(), headers=headers, method="POST")
    with urllib.request.urlopen(request) as answer:
        return json.loads(answer.read())["result"]


written = tool("write_file", {"path": "notes.txt", "content": "from a plain program"})
call("PUT", "/state/wrote", {"value": written["isError"]})
read = tool("read_file", {"path": "notes.txt"})
json.dump([written["isError"], read["structuredContent"]["content"]], open(os.environ["CORRAL_RESULT"], "w"))
"""
)


def test_a_command_agent_calls_its_granted_tools_through_the_tool_door_journaled_like_its_state(
    corral_project: CorralProject,
) -> None:
    corral_project.command_agent(
        "tooled", ["python3", "agent.py"], {"agent.py": BOTH_DOORS}, tools=["write_file", "read_file"]
    )
    run = run_waited(corral_project, "tooled")
    assert run["state"] == "succeeded", run.get("error")
    assert run["result"] == [False, "from a plain program"]
    steps = [(step["kind"], step["name"]) for step in steps_of(corral_project, run["id"])]
    assert steps == [("tool", "write_file"), ("state", "set"), ("tool", "read_file")]
    assert (corral_project.home / "agents" / "tooled" / "notes.txt").read_text() == "from a plain program"


def test_the_openapi_document_is_served_by_every_command_agents_door_as_shipped(
    corral_project: CorralProject,
) -> None:
    shipped = Path(__file__).parents[2] / "sandbox" / "door" / "openapi.json"
    agent = CLIENT + '\njson.dump(call("GET", "/openapi.json")[1], open(os.environ["CORRAL_RESULT"], "w"))\n'
    corral_project.command_agent("doc", ["python3", "agent.py"], {"agent.py": agent})
    run = run_waited(corral_project, "doc")
    assert run["result"] == json.loads(shipped.read_text())


@pytest.mark.skipif(shutil.which("curl") is None, reason="curl is not installed")
def test_the_shell_agent_in_docs_agents_md_counts_its_runs(corral_project: CorralProject) -> None:
    page = (Path(__file__).parents[2] / "docs" / "agents.md").read_text()
    script = page.split("A shell agent with curl", 1)[1].split("```sh\n", 1)[1].split("```", 1)[0]
    corral_project.command_agent("counter", ["sh", "agent.sh"], {"agent.sh": script})
    assert [run_waited(corral_project, "counter")["result"] for _ in range(2)] == [{"count": 1}, {"count": 2}]
    assert '"event":"counted"' in (corral_project.home / "logs" / "counter.log").read_text()


SLEEPER = """\
#!/bin/sh
[ "$CORRAL_ATTEMPT" = 1 ] || exit 0
echo started > started
sleep 317
"""


def _runtime_of(run_id: str) -> psutil.Process:
    """The run's runtime (the launcher's Python process; bubblewrap's own carry its argv too)."""
    for proc in psutil.process_iter(["cmdline"]):
        command = proc.info["cmdline"] or []
        if command and "python" in os.path.basename(command[0]) and "corral.sandbox.launcher" in command:
            if run_id in " ".join(command):
                return proc
    raise AssertionError(f"no runtime of run {run_id} is running")


@pytest.mark.parametrize("end", ["kill -9 of the runtime", "cancel"])
def test_a_command_runs_input_folder_is_removed_however_its_attempt_ends(
    corral_project: CorralProject, end: str
) -> None:
    """The runtime removes ``$TMPDIR/corral-RUN-*/`` itself when the program ends; killed, it
    cannot, and the run's input (perhaps private) would stay in the workdir: the daemon removes it."""
    corral_project.command_agent("sleeper", ["sh", "agent.sh"], {"agent.sh": SLEEPER}, input={"private": "yes"})
    corral_project.start_daemon()
    run_id = corral_project.cli_json("run", "sleeper")["id"]
    workdir = corral_project.home / "agents" / "sleeper"
    wait_for(lambda: (workdir / "started").exists(), "the program to start")
    [folder] = (workdir / ".tmp").glob(f"corral-{run_id}-*")
    assert json.loads((folder / "input.json").read_text()) == {"private": "yes"}
    if end == "cancel":
        corral_project.cli("cancel", run_id, check=True)
    else:
        _runtime_of(run_id).kill()
    run = corral_project.wait_for_run(run_id, states=("succeeded", "cancelled", "failed"))
    assert run["state"] == ("cancelled" if end == "cancel" else "succeeded"), run
    assert run["attempt"] == (1 if end == "cancel" else 2)
    assert not list((workdir / ".tmp").glob(f"corral-{run_id}-*")), "the run's input stayed in its workdir"
    wait_for(lambda: not _sleepers("317"), "the program to be ended with its attempt", timeout=10)


def test_a_command_runs_input_folder_goes_when_the_run_is_abandoned_after_the_daemons_death(
    corral_project: CorralProject,
) -> None:
    """Its attempt died with the daemon and no other follows: abandoning it at the next start ends it."""
    corral_project.corral["max_resume_age"] = "1s"
    corral_project.command_agent("sleeper", ["sh", "agent.sh"], {"agent.sh": SLEEPER}, input={"private": "yes"})
    daemon = corral_project.start_daemon()
    run_id = corral_project.cli_json("run", "sleeper")["id"]
    workdir = corral_project.home / "agents" / "sleeper"
    wait_for(lambda: (workdir / "started").exists(), "the program to start")
    assert list((workdir / ".tmp").glob(f"corral-{run_id}-*"))
    os.kill(daemon.pid, signal.SIGKILL)
    daemon.process.wait(10)
    wait_for(lambda: not _sleepers("317"), "the program to die with the daemon", timeout=10)
    time.sleep(1.5)
    corral_project.start_daemon()
    assert corral_project.wait_for_run(run_id)["state"] == "abandoned"
    assert not list((workdir / ".tmp").glob(f"corral-{run_id}-*")), "the run's input stayed in its workdir"
