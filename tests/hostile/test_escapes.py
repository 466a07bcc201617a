"""Hostile agents: real agent code trying every escape issue 6 lists, against one real daemon.

Each agent returns (or fails with) a record of what it tried; each test asserts the
attempt was contained, that the run's ``applied`` list names the protection that did it,
that the run left no process and a clean journal, and, at the end, that the daemon and
an innocent agent are unharmed. A protection this machine lacks (``corral doctor``) skips
the tests that need it, with the reason.
"""

from __future__ import annotations

import json
import secrets
import socket
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from tests.e2e.support import Batch, Project, contained, host_pids, kill_quietly, start_batch, wait_until_dead

pytestmark = pytest.mark.hostile

SENTINEL = f"victim-data-{secrets.token_hex(6)}"
DAEMON_SECRET = f"daemon-only-{secrets.token_hex(8)}"
GRANTED = f"granted-token-{secrets.token_hex(8)}"

PROBE = '''
"""What every hostile agent uses: try something, record the errno or what it got."""
import os


def attempt(func):
    try:
        got = func()
    except OSError as exc:
        return {"denied": True, "errno": exc.errno, "error": f"{type(exc).__name__}: {exc.strerror}"}
    return {"denied": False, "got": repr(got)[:200]}


def read(path):
    with open(path, "rb") as f:
        return f.read(64)


def write(path):
    with open(path, "w") as f:
        f.write("escaped")
    return path
'''

AGENTS: dict[str, tuple[str, dict[str, Any]]] = {
    "victim": (
        """
def run(ctx):
    return "unharmed"
""",
        {},
    ),
    "reader": (
        """
import os
from probe import attempt, read

def run(ctx):
    home = ctx.input["home"]
    targets = {
        "other workdir": f"{home}/agents/victim/private.txt",
        "store": f"{home}/store/data.mdb",
        "secrets file": f"{home}/secrets.json",
        "daemon log": f"{home}/logs/corral.log",
        "dotdot": "../victim/private.txt",
        "absolute /etc/shadow": "/etc/shadow",
        "root home": "/root/.bash_history",
    }
    return {name: attempt(lambda p=path: read(p)) for name, path in targets.items()}
""",
        {},
    ),
    "writer": (
        """
import os
from probe import attempt, write

def run(ctx):
    home, code = ctx.input["home"], ctx.input["code"]
    out = {
        "code folder": attempt(lambda: write(f"{code}/planted.py")),
        "other workdir": attempt(lambda: write(f"{home}/agents/victim/planted")),
        "home": attempt(lambda: write(f"{home}/planted")),
        "tmp": attempt(lambda: write("/tmp/corral-hostile-planted")),
        "dotdot": attempt(lambda: write("../victim/planted")),
    }
    os.symlink(f"{home}/agents/victim", "to-victim")
    out["symlink"] = attempt(lambda: write("to-victim/planted"))
    out["symlink read"] = attempt(lambda: open("to-victim/private.txt").read())
    out["hardlink"] = attempt(lambda: os.link(f"{home}/secrets.json", "stolen.json"))
    open("mine.txt", "w").write("x")
    out["rename out"] = attempt(lambda: os.rename("mine.txt", f"{home}/agents/victim/mine.txt"))
    out["own workdir"] = attempt(lambda: write("inside.txt"))
    return out
""",
        {},
    ),
    "proc": (
        """
import os
from probe import attempt, read

def run(ctx):
    daemon = os.getppid()
    return {
        "daemon environ": attempt(lambda: read(f"/proc/{daemon}/environ")),
        "daemon cmdline": attempt(lambda: read(f"/proc/{daemon}/cmdline")),
        "init environ": attempt(lambda: read("/proc/1/environ")),
        "listing": attempt(lambda: os.listdir("/proc")),
        "own status": attempt(lambda: read("/proc/self/status")),
    }
""",
        {},
    ),
    "env": (
        """
import os

def run(ctx):
    return dict(os.environ)
""",
        {"secrets": ["HOSTILE_GRANTED"]},
    ),
    "net": (
        """
import socket
from probe import attempt

def tcp(port):
    s = socket.create_connection(("127.0.0.1", port), timeout=2)
    s.close()
    return port

def udp(host, port):
    s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    s.connect((host, port))
    s.send(b"escaped")
    return host

def run(ctx):
    port = ctx.input["port"]
    return {
        "tcp to the host's loopback": attempt(lambda: tcp(port)),
        "udp to the host's loopback": attempt(lambda: udp("127.0.0.1", ctx.input["udp_port"])),
        "udp to a routable address": attempt(lambda: udp("192.0.2.1", 53)),
        "listen": attempt(lambda: socket.create_server(("127.0.0.1", 0))),
    }
""",
        {},
    ),
    "ports": (
        """
import socket
from probe import attempt

def tcp(port):
    s = socket.create_connection(("127.0.0.1", port), timeout=2)
    s.close()
    return port

def run(ctx):
    return {"allowed": attempt(lambda: tcp(ctx.input["allowed"])), "other": attempt(lambda: tcp(ctx.input["other"]))}
""",
        {},
    ),
    "forkbomb": (
        """
import os, time

def run(ctx):
    children, refused = [], None
    for _ in range(64):  # bounded: a real bomb would not stop, this one must on a shared machine
        try:
            pid = os.fork()
        except OSError as exc:
            refused = exc.strerror
            break
        if pid == 0:
            time.sleep(30)
            os._exit(0)
        children.append(pid)
    return {"forked": len(children), "refused": refused}
""",
        {"limits": {"processes": 16}},
    ),
    "membomb": (
        """
import time

def run(ctx):
    hog = b"\\x01" * (400 * 2**20)
    time.sleep(30)
    return len(hog)
""",
        {"limits": {"memory_mb": 100}},
    ),
    "spin": (
        """
def run(ctx):
    while True:
        pass
""",
        {"limits": {"cpu_seconds": 1}},
    ),
    "diskfill": (
        """
def run(ctx):
    with open("big.bin", "wb") as f:
        for _ in range(8):
            f.write(b"\\0" * 2**20)
""",
        {"limits": {"file_size_mb": 2}},
    ),
    "flood": (
        """
import sys

def run(ctx):
    line = "x" * 4000 + "\\n"
    for _ in range(4_000):  # 16 MB, past the 10 MB a run may log
        sys.stdout.write(line)
    return "flooded"
""",
        {},
    ),
    "escaper": (
        """
import os, time

def run(ctx):
    if os.fork() == 0:
        os.setsid()
        if os.fork() == 0:
            with open("grandchild.pid", "w") as f:
                f.write(str(os.getpid()))
            time.sleep(120)
        os._exit(0)
    time.sleep(0.5)
    return open("grandchild.pid").read()
""",
        {},
    ),
    "sleeper": (
        """
import os, time

def run(ctx):
    open("pid", "w").write(str(os.getpid()))
    time.sleep(4)
    return "unharmed"
""",
        {},
    ),
    "signaller": (
        """
import os, signal
from probe import attempt

def run(ctx):
    return {name: attempt(lambda pid=pid: os.kill(pid, signal.SIGKILL)) for name, pid in ctx.input.items()}
""",
        {},
    ),
    "nouser": (
        """
def run(ctx):
    return "ran"
""",
        {"sandbox": {"user": "corral-no-such-user"}},
    ),
    "nouser_ok": (
        """
def run(ctx):
    return "ran"
""",
        {"sandbox": {"user": "corral-no-such-user", "degraded_ok": True}},
    ),
}


class Listener:
    """A TCP and a UDP socket on the host's 127.0.0.1 that count what reaches them."""

    def __init__(self) -> None:
        self.tcp = socket.create_server(("127.0.0.1", 0))
        self.udp = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        self.udp.bind(("127.0.0.1", 0))
        self.udp.settimeout(0.2)
        self.tcp.settimeout(0.2)
        self.accepted = 0
        self.datagrams = 0
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._serve, daemon=True)
        self._thread.start()

    @property
    def ports(self) -> tuple[int, int]:
        return self.tcp.getsockname()[1], self.udp.getsockname()[1]

    def _serve(self) -> None:
        while not self._stop.is_set():
            try:
                conn, _ = self.tcp.accept()
                conn.close()
                self.accepted += 1
            except OSError:
                pass
            try:
                self.udp.recv(64)
                self.datagrams += 1
            except OSError:
                pass

    def close(self) -> None:
        self._stop.set()
        self._thread.join(2)
        self.tcp.close()
        self.udp.close()


@pytest.fixture(scope="module")
def listeners() -> Iterator[tuple[Listener, Listener]]:
    outside, allowed = Listener(), Listener()
    try:
        yield outside, allowed
    finally:
        outside.close()
        allowed.close()


@pytest.fixture(scope="module")
def batch(tmp_path_factory: pytest.TempPathFactory, listeners: tuple[Listener, Listener]) -> Iterator[Batch]:
    outside, allowed = listeners
    project = Project(
        tmp_path_factory.mktemp("hostile"),
        {"CORRAL_SECRET_HOSTILE_GRANTED": GRANTED, "CORRAL_TEST_DAEMON_ONLY": DAEMON_SECRET, "LANG": "C.UTF-8"},
    )
    project.corral.update(max_concurrent_runs=16)
    (project.agents_dir / "probe.py").write_text(PROBE)
    inputs = {
        "reader": {"home": str(project.home)},
        "writer": {"home": str(project.home), "code": str(project.agents_dir)},
        "net": {"port": outside.ports[0], "udp_port": outside.ports[1]},
        "ports": {"allowed": allowed.ports[0], "other": outside.ports[0]},
    }
    for name, (source, table) in AGENTS.items():
        extra = {"input": inputs[name]} if name in inputs else {}
        if name == "ports":
            extra["sandbox"] = {"network": [f"127.0.0.1:{allowed.ports[0]}"]}
        project.agent(name, source, **table, **extra)
    victim = project.workdir("victim")
    victim.mkdir(parents=True, mode=0o700)
    (victim / "private.txt").write_text(SENTINEL)
    try:
        yield start_batch(project, [name for name in AGENTS if name not in ("victim", "sleeper", "signaller")])
    finally:
        project.close()


@pytest.fixture(scope="module")
def machine(batch: Batch) -> dict[str, Any]:
    """What ``corral doctor`` says this machine offers."""
    result = batch.project.cli("doctor", "--json")
    found: dict[str, Any] = json.loads(result.stdout)["machine"]
    return found


def need(machine: dict[str, Any], *protections: str) -> None:
    for name in protections:
        offered = machine["protections"].get(name)
        if not offered or not offered["available"]:
            pytest.skip(f"{name} is not available here: {offered['reason'] if offered else 'not detected'}")


def all_denied(record: dict[str, Any], *, allowed: tuple[str, ...] = ()) -> None:
    escaped = {name: r for name, r in record.items() if not r["denied"] and name not in allowed}
    assert not escaped, f"escapes that worked: {escaped}"


# --------------------------------------------------------------------------- files


def test_cannot_read_another_agents_workdir_or_the_homes_store_and_secrets(batch: Batch, machine: dict) -> None:
    need(machine, "filesystem")
    run = contained(batch, "reader")
    assert run["state"] == "succeeded", run
    all_denied(run["result"])
    assert SENTINEL not in json.dumps(run["result"])
    assert "landlock:fs" in run["applied"], run["applied"]


def test_cannot_write_outside_its_workdir(batch: Batch, machine: dict) -> None:
    need(machine, "filesystem")
    run = contained(batch, "writer")
    assert run["state"] == "succeeded", run
    all_denied(run["result"], allowed=("own workdir",))
    assert not run["result"]["own workdir"]["denied"], "the agent must still write its own workdir"
    home, victim = batch.project.home, batch.project.workdir("victim")
    planted = [home / "planted", victim / "planted", victim / "mine.txt", batch.project.agents_dir / "planted.py"]
    assert not [p for p in planted if p.exists()], "a file was written outside the workdir"
    assert not Path("/tmp/corral-hostile-planted").exists()


# --------------------------------------------------------------------------- processes


def test_cannot_read_other_processes_environment_or_command_line(batch: Batch, machine: dict) -> None:
    need(machine, "filesystem")
    run = contained(batch, "proc")
    assert run["state"] == "succeeded", run
    all_denied(run["result"], allowed=("own status",))
    assert DAEMON_SECRET not in json.dumps(run["result"])


def test_environment_holds_exactly_what_was_granted(batch: Batch) -> None:
    run = contained(batch, "env")
    assert run["state"] == "succeeded", run
    door = {
        "CORRAL_DOOR_TOKEN",
        "CORRAL_MCP_URL",
        "CORRAL_API_URL",
    }  # set by the agent's own process: every run has a door
    assert set(run["result"]) == {"PATH", "HOME", "LANG", "TMPDIR", "HOSTILE_GRANTED", *door}, sorted(run["result"])
    logs = batch.project.home / "logs"
    log = (logs / "env.log").read_text() + (logs / "corral.log").read_text()
    assert GRANTED not in log, "a granted secret reached a log file"
    assert run["result"]["HOSTILE_GRANTED"] == "[redacted:HOSTILE_GRANTED]", "the stored result must be redacted"


def test_cannot_signal_the_daemon_or_another_agent(batch: Batch, machine: dict) -> None:
    need(machine, "signals")
    project = batch.project
    sleeper_id = project.cli_json("run", "sleeper")["id"]
    pid_file = project.workdir("sleeper") / "pid"
    deadline = time.monotonic() + 20
    while not (pid_file.exists() and pid_file.read_text()):
        assert time.monotonic() < deadline, "the sleeper never started"
        time.sleep(0.05)
    [other] = host_pids([int(pid_file.read_text())], project.workdir("sleeper"))  # it noted its namespace's pid
    targets = {"daemon": batch.daemon.pid, "other agent": other}
    result = project.cli("run", "signaller", "--wait", "--json", "--input", json.dumps(targets), timeout=60)
    run = json.loads(result.stdout)
    assert run["state"] == "succeeded", run
    all_denied(run["result"])
    assert batch.daemon.process.poll() is None, "the daemon died"
    assert project.wait_for_run(sleeper_id)["result"] == "unharmed"


# --------------------------------------------------------------------------- limits


def test_fork_bomb_is_stopped_by_the_process_limit(batch: Batch) -> None:
    run = contained(batch, "forkbomb")
    if not {"pids.max", "rlimit:processes"} & set(run["applied"]):
        pytest.skip(
            "no process limit applies here: cgroup pids.max needs the pids controller in a writable cgroup v2, "
            "and RLIMIT_NPROC needs agents under their own uid (the daemon runs as root without an agent user)"
        )
    assert run["state"] == "succeeded", run
    assert run["result"]["refused"] and run["result"]["forked"] <= 16, run["result"]


def test_memory_bomb_kills_the_run(batch: Batch) -> None:
    run = contained(batch, "membomb")
    assert run["state"] == "failed" and run["error"]["kind"] == "limit", run
    assert "limits.memory_mb" in run["error"]["message"]


def test_cpu_spin_is_stopped(batch: Batch) -> None:
    run = contained(batch, "spin")
    assert run["state"] == "failed" and run["error"]["kind"] == "limit", run
    assert "limits.cpu_seconds" in run["error"]["message"]


def test_filling_the_disk_stops_at_the_file_size_limit(batch: Batch) -> None:
    run = contained(batch, "diskfill")
    assert run["state"] == "failed", run
    assert "limits.file_size_mb" in run["error"]["message"], run["error"]
    assert (batch.project.workdir("diskfill") / "big.bin").stat().st_size <= 2 * 2**20


def test_flooding_stdout_does_not_flood_the_log(batch: Batch) -> None:
    run = contained(batch, "flood")
    assert run["state"] == "succeeded", run
    log = batch.project.home / "logs" / "flood.log"
    assert log.stat().st_size < 11 * 2**20, f"the agent's 16 MB reached its log ({log.stat().st_size} bytes)"
    assert '"output dropped"' in log.read_text()


def test_setsid_double_fork_does_not_outlive_the_run(batch: Batch) -> None:
    run = contained(batch, "escaper")
    assert run["state"] == "succeeded", run
    grandchild = host_pids([int(run["result"])], batch.project.workdir("escaper"))
    survivors = wait_until_dead(grandchild)
    kill_quietly(survivors)
    assert not survivors, "a setsid double-forked grandchild outlived its run"


# --------------------------------------------------------------------------- network


def test_no_network_when_network_is_none(batch: Batch, machine: dict, listeners: tuple[Listener, Listener]) -> None:
    need(machine, "network")
    run = contained(batch, "net")
    assert run["state"] == "succeeded", run
    result = run["result"]
    all_denied(result, allowed=("udp to the host's loopback", "listen"))
    outside, _ = listeners
    time.sleep(0.3)
    assert outside.accepted == 0 and outside.datagrams == 0, "the agent reached the host's loopback"
    assert "ns:net" in run["applied"], run["applied"]


def test_network_list_allows_only_the_listed_port(batch: Batch, machine: dict) -> None:
    need(machine, "tcp_ports")
    run = contained(batch, "ports")
    assert run["state"] == "succeeded", run
    assert not run["result"]["allowed"]["denied"], run["result"]
    assert run["result"]["other"]["denied"], run["result"]
    assert "landlock:tcp" in run["applied"]


# --------------------------------------------------------------------------- refusal


def test_missing_protection_refuses_the_agent_with_a_clear_record(batch: Batch) -> None:
    run = contained(batch, "nouser")
    assert run["state"] == "failed", run
    assert run["error"]["kind"] == "sandbox", run["error"]
    assert "corral-no-such-user" in run["error"]["message"] and "degraded_ok" in run["error"]["message"]
    assert not (batch.project.home / "logs" / "nouser.log").read_text().count('"run started"')


def test_degraded_ok_runs_and_records_what_was_missing(batch: Batch) -> None:
    run = contained(batch, "nouser_ok")
    assert run["state"] == "succeeded" and run["result"] == "ran", run
    assert "missing:user" in run["applied"], run["applied"]


# --------------------------------------------------------------------------- afterwards


def test_the_daemon_and_an_innocent_agent_are_unharmed(batch: Batch) -> None:
    assert batch.daemon.process.poll() is None, batch.project.daemon_stderr()
    result = batch.project.cli("run", "victim", "--wait", "--json", timeout=60)
    assert result.returncode == 0, result.stderr
    assert json.loads(result.stdout)["result"] == "unharmed"
    assert (batch.project.workdir("victim") / "private.txt").read_text() == SENTINEL
    assert sorted(p.name for p in batch.project.workdir("victim").iterdir()) == [".tmp", "private.txt"]
    assert batch.daemon.stop() == 0, batch.project.daemon_stderr()
