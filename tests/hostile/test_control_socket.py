"""Hostile agents and the daemon's control socket: the socket obeys no process of a run.

The end-to-end case is the finding of issue 13 as an attacker ran it: an agent under a
real ``corral up`` connects to ``<home>/corral.sock`` and asks the daemon to approve a
pending approval, queue a run of another agent, pause it and reload the config. Its
outcome is asserted from outside (the approval still pending, the other agent neither
run nor paused), whichever wall stopped it: the socket invisible in the sandbox, or the
daemon refusing a process of a run. The other cases test that second wall on its own,
with real processes registered as runs, so they hold whatever the sandbox hides.
"""

from __future__ import annotations

import asyncio
import json
import os
import socket
import struct
import subprocess
import sys
import time
from collections.abc import Awaitable, Callable, Iterator
from pathlib import Path
from typing import Any

import psutil
import pytest

from corral.daemon import control
from corral.daemon.root import Daemon
from corral.run.childwire import ChildWire
from corral.sandbox import linux
from corral.sandbox.processes import Child, ProcessControl
from corral.schedule.clock import ManualClock
from tests.e2e.support import Project
from tests.schedule.harness import Rig, ask, events, until

pytestmark = pytest.mark.hostile

DEPLOYER = """
def run(ctx):
    return ctx.tool("run_command", command="touch deployed.txt")
"""
"""Calls the built-in high-stakes shell tool: its run waits for a human's approval."""

VICTIM = """
def run(ctx):
    return "ran"
"""

ASK = """import json, socket


def ask(path, message):
    '''One request on the control socket, as corral's own client sends it.'''
    sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    sock.settimeout(10)
    try:
        sock.connect(path)
    except OSError as exc:
        sock.close()
        return {"reached": False, "error": f"{type(exc).__name__}: {exc}"}
    with sock:
        try:
            sock.sendall(json.dumps(message).encode() + b"\\n")
        except OSError:
            pass  # a refusal may close the socket first; its answer is still there to read
        data = b""
        try:
            while chunk := sock.recv(65536):
                data += chunk
        except ConnectionResetError:
            pass  # closed with the request unread: the answer came before this
    return {"reached": True, "answers": [json.loads(line) for line in data.splitlines() if line.strip()]}
"""
"""Agent-side code that sends one request on the control socket and reads every answer."""

INTRUDER = (
    ASK
    + """

def run(ctx):
    path, approval = ctx.input["socket"], ctx.input["approval"]
    return {
        "run": ask(path, {"op": "run", "agent": "victim", "input": "chosen by the intruder"}),
        "approve": ask(path, {"op": "approve", "id": approval, "reason": "approved by the agent"}),
        "pause": ask(path, {"op": "pause", "agent": "victim", "reason": "paused by the agent"}),
        "reload": ask(path, {"op": "reload"}),
    }
"""
)

GATED = """
import os, time

def run(ctx):
    while not os.path.exists("go"):
        time.sleep(0.02)
    return "released"
"""
"""Runs until the test creates ``go`` in the agent's workdir."""


@pytest.fixture(scope="module")
def project(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Project]:
    found = Project(tmp_path_factory.mktemp("control-socket"), {"LANG": "C.UTF-8"})
    lenient = {"degraded_ok": True}  # runs wherever this machine lacks a protection
    found.agent("deployer", DEPLOYER, tools=["run_command"], sandbox=lenient)
    found.agent("victim", VICTIM, sandbox=lenient)
    found.agent("intruder", INTRUDER, sandbox=lenient)
    found.start_daemon()
    try:
        yield found
    finally:
        found.close()


def test_an_agent_under_the_daemon_cannot_approve_run_pause_or_reload_through_the_socket(project: Project) -> None:
    held = project.cli_json("run", "deployer")
    assert project.wait_for_run(held["id"], states=("on_hold", "succeeded", "failed"))["state"] == "on_hold"
    [approval] = project.cli_json("approvals")
    socket_path = str(project.socket)

    result = project.cli(
        "run",
        "intruder",
        "--wait",
        "--json",
        "--input",
        json.dumps({"socket": socket_path, "approval": approval["id"]}),
    )
    run = project.run_record(json.loads(result.stdout)["id"])
    assert run["state"] == "succeeded", run
    tried: dict[str, Any] = run["result"]

    assert [a["id"] for a in project.cli_json("approvals")] == [approval["id"]], "the approval must still wait"
    assert not (project.workdir("deployer") / "deployed.txt").exists(), "the high-stakes call must not have run"
    assert _pause(project, "victim") is None, "the victim was paused"
    assert [r["agent"] for r in project.cli_json("runs", "victim")] == [], "a run of the victim was queued"
    for op, attempt in tried.items():
        if attempt["reached"]:  # the second wall: a refusal, and nothing else
            answers = attempt["answers"]
            assert answers and all(not a["ok"] for a in answers), f"{op}: the daemon obeyed: {answers}"
            assert "belongs to run" in answers[0]["error"], answers
    if any(attempt["reached"] for attempt in tried.values()):
        alert = _alert(project, "control-socket:intruder")
        assert alert["severity"] == "critical" and alert["run_id"] == run["id"], alert
    assert project.cli("status").returncode == 0, "the operator's own CLI still works"


def _pause(project: Project, agent: str) -> Any:
    return project.cli_json("status")["agents"][agent]["pause"]


def _alert(project: Project, key: str, timeout: float = 10.0) -> dict[str, Any]:
    deadline = time.monotonic() + timeout
    while True:
        for entry in project.cli_json("alerts"):
            if entry["alert"]["key"] == key:
                found: dict[str, Any] = entry["alert"]
                return found
        assert time.monotonic() < deadline, f"no alert {key}"
        time.sleep(0.1)


def test_the_operators_cli_still_pauses_and_resumes_while_an_agent_runs(project: Project) -> None:
    project.agent("busy", GATED, sandbox={"degraded_ok": True})
    project.write()
    assert project.cli("reload").returncode == 0
    started = project.cli_json("run", "busy")
    project.wait_for_run(started["id"], states=("running",))
    try:
        paused = project.cli("pause", "victim", "--reason", "operator")
        assert paused.returncode == 0, paused.stderr
        assert _pause(project, "victim")["reason"] == "operator"
        assert project.cli("resume", "victim").returncode == 0
        assert _pause(project, "victim") is None
    finally:
        (project.workdir("busy") / "go").write_text("go")
    assert project.wait_for_run(started["id"])["state"] == "succeeded"


# --------------------------------------------------------------------------- the second wall alone


CONNECTOR = (
    ASK
    + """
import sys

if len(sys.argv) > 2:
    sys.stdin.readline()  # the test moves this process somewhere first, then says go
print(json.dumps(ask(sys.argv[1], {"op": "pause", "agent": "victim"})["answers"]), flush=True)
"""
)
"""Asks the daemon to pause ``victim`` and prints the answers; with a second argument,
waits for a line on stdin before connecting."""

SPAWNER = """
import subprocess, sys, time

subprocess.run([sys.executable, "-c", sys.argv[1], sys.argv[2]], check=True)
time.sleep(60)
"""
"""A run's started process whose child (the connector) talks to the socket; it stays."""


class Server:
    """A real control socket with a real gate over a real ProcessControl; it records the
    ops it executed and the intrusions it heard of."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self.processes = ProcessControl()
        self.agents: dict[str, str] = {}
        self.executed: list[str] = []
        self.intrusions: list[control.Intrusion] = []
        self.gate = control.Gate(lambda: self.processes.live, self.agents.get, self.intrusions.append)

    async def handle(self, request: dict[str, Any], reply: Callable[[dict[str, Any]], Awaitable[None]]) -> None:
        self.executed.append(request["op"])
        await reply({"ok": True})

    async def register(self, run_id: str, agent: str, *argv: str, cgroup: Path | None = None) -> Child:
        """Start ``argv`` as run ``run_id``'s process, as ProcessControl.spawn would record it."""
        process = await asyncio.create_subprocess_exec(*argv, stdout=asyncio.subprocess.PIPE)
        read, write = os.pipe()
        child = Child(process=process, wire=ChildWire(read, write, max_bytes=1 << 16), cgroup=cgroup)
        self.processes.live[run_id] = child
        self.agents[run_id] = agent
        return child


async def _connect(path: Path, *, move: Callable[[int], None] | None = None) -> list[dict[str, Any]]:
    """Run the connector from the test process (no run's descendant); ``move`` is called with
    its pid before it connects."""
    args = [sys.executable, "-c", CONNECTOR, str(path)] + (["wait"] if move else [])
    proc = await asyncio.create_subprocess_exec(*args, stdin=subprocess.PIPE, stdout=subprocess.PIPE)
    if move is not None:
        move(proc.pid)
    out, _ = await asyncio.wait_for(proc.communicate(b"go\n"), 20)
    answers: list[dict[str, Any]] = json.loads(out)
    return answers


def _serve(tmp_path: Path, scenario: Callable[[Server], Awaitable[None]]) -> Server:
    server = Server(tmp_path / "corral.sock")

    async def main() -> None:
        listening = await control.serve(server.path, server.handle, server.gate)
        try:
            await scenario(server)
        finally:
            listening.close()
            for child in list(server.processes.live.values()):
                server.processes.kill_tree(child)
                await child.process.wait()
                child.wire.close()

    asyncio.run(main())
    return server


def _refused(answers: list[dict[str, Any]], run_id: str) -> None:
    assert len(answers) == 1 and not answers[0]["ok"], answers
    assert f"belongs to run {run_id}" in answers[0]["error"], answers


def test_a_descendant_of_a_runs_process_is_refused_unread_and_reported(tmp_path: Path) -> None:
    async def scenario(server: Server) -> None:
        child = await server.register("run-a", "hostile", sys.executable, "-c", SPAWNER, CONNECTOR, str(server.path))
        assert child.process.stdout is not None
        line = await asyncio.wait_for(child.process.stdout.readline(), 20)
        _refused(json.loads(line), "run-a")
        assert await _connect(server.path) == [{"ok": True}], "a process of no run is served"

    server = _serve(tmp_path, scenario)
    assert server.executed == ["pause"], "only the outsider's request was executed"
    [intrusion] = server.intrusions
    assert (intrusion.run_id, intrusion.agent, intrusion.evidence) == ("run-a", "hostile", control.Evidence.TREE)
    alert = intrusion.alert()
    assert alert.severity == "critical" and alert.key == "control-socket:hostile" and alert.agent == "hostile"


def test_a_process_seen_in_a_runs_tree_is_refused_after_it_escaped_it(tmp_path: Path) -> None:
    async def scenario(server: Server) -> None:
        child = await server.register("run-b", "hostile", "sleep", "60")
        answers = await _connect(server.path, move=lambda pid: child.known.add(psutil.Process(pid)))
        _refused(answers, "run-b")

    server = _serve(tmp_path, scenario)
    assert server.executed == []
    assert [i.evidence for i in server.intrusions] == [control.Evidence.SEEN]


def test_a_process_in_a_runs_cgroup_is_refused(tmp_path: Path) -> None:
    root = linux.cgroup2_root() if sys.platform.startswith("linux") else None
    parent = root / f"corral-test-{os.getpid()}" if root is not None else None
    try:
        assert parent is not None
        parent.mkdir()
    except (AssertionError, OSError) as exc:
        pytest.skip(f"no writable cgroup v2 directory here ({exc})")
    cgroup, _ = linux.create_run_cgroup(parent, "c-0001", None, None)
    assert cgroup is not None

    def move(pid: int) -> None:
        (cgroup / "cgroup.procs").write_text(str(pid))

    async def scenario(server: Server) -> None:
        await server.register("run-c", "hostile", "sleep", "60", cgroup=cgroup)
        _refused(await _connect(server.path, move=move), "run-c")

    try:
        server = _serve(tmp_path, scenario)
    finally:
        linux.kill_cgroup(cgroup)
        deadline = time.monotonic() + 5
        while not (linux.remove_cgroup(cgroup) and linux.remove_cgroup(parent)) and time.monotonic() < deadline:
            time.sleep(0.05)
    assert server.executed == []
    assert [i.evidence for i in server.intrusions] == [control.Evidence.CGROUP]


def test_a_loop_of_attempts_is_reported_once_with_the_count_held_back(tmp_path: Path) -> None:
    async def scenario(server: Server) -> None:
        child = await server.register("run-d", "hostile", "sleep", "60")
        for _ in range(3):
            _refused(await _connect(server.path, move=lambda pid: child.known.add(psutil.Process(pid))), "run-d")
        server.gate.report_every = 0.0
        _refused(await _connect(server.path, move=lambda pid: child.known.add(psutil.Process(pid))), "run-d")

    server = _serve(tmp_path, scenario)
    assert [i.attempts for i in server.intrusions] == [1, 3], "the first at once, then the two held back and the last"


def test_under_a_real_daemon_the_refusal_raises_a_critical_alert_naming_the_agent(tmp_path: Path) -> None:
    """Independent of what the sandbox hides: a process the test starts is recorded as seen
    in a live run's tree (as the watchdog records an escaped one) and tries the socket."""
    rig = Rig(tmp_path)
    rig.agent("hostile", GATED, sandbox={"degraded_ok": True})
    rig.agent("victim")

    async def scenario(daemon: Daemon, clock: ManualClock) -> dict[str, Any]:
        started = (await ask(daemon, {"op": "run", "agent": "hostile"}))["run"]
        await until(lambda: started["id"] in daemon.engine.processes.live)
        child = daemon.engine.processes.live[started["id"]]
        answers = await _connect(daemon.config.socket_path, move=lambda pid: child.known.add(psutil.Process(pid)))
        _refused(answers, started["id"])
        assert daemon.engine.paused("victim") is None, "the pause was not executed"
        assert (await ask(daemon, {"op": "ping"}))["ok"], "the operator's own connection is served"

        def stored() -> list[dict[str, Any]]:
            with daemon.engine.store.read() as txn:
                return [r["alert"] for r in daemon.alerting.outbox.since(txn, 0)]

        await until(lambda: any(a["key"] == "control-socket:hostile" for a in stored()))
        rig.release("hostile")
        await until(lambda: not daemon.queue.tasks())
        [alert] = [a for a in stored() if a["key"] == "control-socket:hostile"]
        return alert

    alert = rig.drive(scenario, start=time.time())
    assert alert["severity"] == "critical" and alert["agent"] == "hostile" and alert["run_id"], alert
    [logged] = events(rig, "control socket refused an agent's process")
    assert logged["agent"] == "hostile" and logged["evidence"] == "seen", logged


# --------------------------------------------------------------------------- peer credentials, per platform


class Recorded:
    """A socket whose options are canned bytes: stands in for a macOS kernel on Linux."""

    def __init__(self, options: dict[tuple[int, int], bytes]) -> None:
        self.options = options
        self.asked: list[tuple[int, int, int]] = []

    def getsockopt(self, level: int, option: int, buflen: int, /) -> bytes:
        self.asked.append((level, option, buflen))
        if (level, option) not in self.options:
            raise OSError(92, "Protocol not available")
        return self.options[(level, option)][:buflen]


def test_macos_peer_pid_and_uid_come_from_local_peerpid_and_local_peercred() -> None:
    xucred = control.XUCRED.pack(0, 501, 2, 20, 12, *[0] * 14)
    sock = Recorded({(0, 2): struct.pack("=i", 4242), (0, 1): xucred})
    assert control.peer_credentials(sock, "darwin") == control.Peer(pid=4242, uid=501)
    assert sock.asked == [(0, 2, 4), (0, 1, 76)], "SOL_LOCAL=0, LOCAL_PEERPID=2, LOCAL_PEERCRED=1, sizeof(xucred)=76"


def test_macos_an_unknown_xucred_version_or_a_kernel_that_will_not_say_leaves_the_peer_unknown() -> None:
    future = control.XUCRED.pack(1, 501, 0, *[0] * 16)
    assert control.peer_credentials(Recorded({(0, 2): struct.pack("=i", 7), (0, 1): future}), "darwin").uid is None
    assert control.peer_credentials(Recorded({}), "darwin") == control.Peer(None, None)
    assert control.peer_credentials(Recorded({}), "freebsd13") == control.Peer(None, None)


def test_linux_peer_credentials_of_a_real_connection_name_this_process() -> None:
    if not sys.platform.startswith("linux"):
        pytest.skip("SO_PEERCRED is Linux's")
    left, right = socket.socketpair(socket.AF_UNIX)
    with left, right:
        assert control.peer_credentials(left) == control.Peer(os.getpid(), os.getuid())


def test_an_unidentified_peer_is_refused_while_runs_are_live_and_served_when_none_is() -> None:
    heard: list[control.Intrusion] = []
    live: dict[str, Any] = {}
    gate = control.Gate(lambda: live, lambda run_id: None, heard.append, platform="darwin")
    unknown = Recorded({})
    assert gate.refusal(unknown) is None, "no run is live: the uid check was all there was"
    live["run-e"] = object()
    assert "could not identify" in (gate.refusal(unknown) or "")
    assert [i.evidence for i in heard] == [control.Evidence.UNIDENTIFIED]
    foreign = Recorded({(0, 2): struct.pack("=i", 1), (0, 1): control.XUCRED.pack(0, os.getuid() + 1, 0, *[0] * 16)})
    assert gate.refusal(foreign) == "permission denied: not the daemon's user"
    assert len(heard) == 1, "another user's refusal is the file mode's business, not an intrusion"
