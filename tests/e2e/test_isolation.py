"""The first layer of isolation: environment, session, resource limits, the process tree.

Most scenarios run at once as one batch against one daemon (whose environment holds a
sentinel secret); the kill -9 of the daemon gets a daemon of its own.
"""

from __future__ import annotations

import json
import os
import secrets
import socket
import stat
import sys
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import psutil
import pytest

from corral.daemon import control

from .support import (
    Batch,
    Project,
    assert_journal,
    assert_no_processes,
    contained,
    host_pids,
    kill_quietly,
    snapshot_outside,
    start_batch,
    wait_until_dead,
)

SECRET = "CORRAL_TEST_SECRET"
BASE_ENV = {"PATH", "HOME", "LANG", "TMPDIR", "CORRAL_DOOR_TOKEN", "CORRAL_MCP_URL", "CORRAL_API_URL"}
"""The daemon's four, and the two the agent's process sets for its door (every run has one)."""
NOBODY = 65534

TREEKIT = '''
"""Spawn a child and a setsid double-forked grandchild; note their pids in pids.txt."""
import os, subprocess, time


def spawn_tree():
    child = subprocess.Popen(["sleep", "300"])
    r, w = os.pipe()
    middle = os.fork()
    if middle == 0:
        os.setsid()
        if os.fork() == 0:
            os.close(r)
            os.write(w, str(os.getpid()).encode())
            os.close(w)
            time.sleep(300)
        os._exit(0)
    os.close(w)
    grandchild = int(os.read(r, 64))
    os.close(r)
    os.waitpid(middle, 0)
    with open("pids.txt", "a") as f:
        f.write(f"{child.pid} {grandchild}\\n")
    return [child.pid, grandchild]
'''

AGENTS: dict[str, tuple[str, dict[str, Any]]] = {
    "env_plain": (
        """
import json, os, sys, tempfile

def run(ctx):
    fds = {}
    for fd in os.listdir("/proc/self/fd"):
        try:
            fds[fd] = os.readlink(f"/proc/self/fd/{fd}")
        except OSError:
            pass
    policy = json.loads(sys.argv[1])
    return {"env": dict(os.environ), "cwd": os.getcwd(), "pid": os.getpid(), "sid": os.getsid(0),
            "pgid": os.getpgid(0), "fds": fds, "wire": [policy["wire_in"], policy["wire_out"]],
            "tempdir": tempfile.gettempdir()}
""",
        {},
    ),
    "env_granted": (
        """
import os

def run(ctx):
    return dict(os.environ)
""",
        {"env": {"GREETING": "hello"}, "env_from": [SECRET, "CORRAL_TEST_NOT_SET"]},
    ),
    "memory": (
        """
import time
from treekit import spawn_tree

def run(ctx):
    spawn_tree()
    hog = b"\\x01" * (300 * 2**20)  # written, so every page is resident
    time.sleep(60)
    return len(hog)
""",
        {"limits": {"memory_mb": 100, "address_space_mb": 4096}},
    ),
    "address_space": (
        """
def run(ctx):
    hog = bytearray(512 * 2**20)
    return len(hog)
""",
        {"limits": {"address_space_mb": 256, "memory_mb": 2048}},
    ),
    "wall": (
        """
import time

def run(ctx):
    time.sleep(60)
""",
        {"limits": {"wall_seconds": 2}},
    ),
    "cpu": (
        """
def run(ctx):
    n = 0
    while True:
        n += 1
""",
        {"limits": {"cpu_seconds": 1}},
    ),
    "tree_done": (
        """
from treekit import spawn_tree

def run(ctx):
    return spawn_tree()
""",
        {},
    ),
    "tree_killed": (
        """
import time
from treekit import spawn_tree

def run(ctx):
    spawn_tree()
    time.sleep(60)
""",
        {"limits": {"wall_seconds": 3}},
    ),
}


def _write_agents(project: Project, agents: dict[str, tuple[str, dict[str, Any]]]) -> None:
    (project.agents_dir / "treekit.py").write_text(TREEKIT)
    for name, (source, table) in agents.items():
        project.agent(name, source, **table)


@pytest.fixture(scope="module")
def batch(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Batch]:
    # LANG pinned: under LANG=C, Python would coerce the locale and add LC_CTYPE itself.
    project = Project(
        tmp_path_factory.mktemp("isolation"), {SECRET: f"s3cret-{secrets.token_hex(8)}", "LANG": "C.UTF-8"}
    )
    project.corral.update(max_concurrent_runs=16)
    _write_agents(project, AGENTS)
    try:
        yield start_batch(project, AGENTS)
    finally:
        project.close()


# --------------------------------------------------------------------------- environment


def test_environment_holds_exactly_the_base_variables(batch: Batch) -> None:
    run = contained(batch, "env_plain")
    assert run["state"] == "succeeded", run
    seen = run["result"]
    workdir = batch.project.workdir("env_plain")
    env = seen["env"]
    assert set(env) == BASE_ENV, f"unexpected variables: {sorted(set(env) - BASE_ENV)}"
    assert env["HOME"] == str(workdir)
    assert env["LANG"] == "C.UTF-8"
    assert Path(env["TMPDIR"]).parent == workdir and seen["tempdir"] == env["TMPDIR"]
    assert Path(env["TMPDIR"]).is_dir()
    secret = batch.project.extra_env[SECRET]
    assert not any(secret in value for value in env.values()), "the daemon's secret reached the agent"


def test_granted_variables_and_nothing_else(batch: Batch) -> None:
    run = contained(batch, "env_granted")
    assert run["state"] == "succeeded", run
    env = run["result"]
    assert set(env) == BASE_ENV | {"GREETING", SECRET}, sorted(env)
    assert env["GREETING"] == "hello"
    assert env[SECRET] == batch.project.extra_env[SECRET], "env_from copies the daemon's value"


def test_cwd_session_and_inherited_descriptors(batch: Batch) -> None:
    seen = batch.runs["env_plain"]["result"]
    assert seen["cwd"] == str(batch.project.workdir("env_plain"))
    assert seen["sid"] == seen["pid"] == seen["pgid"], "the agent leads its own session and process group"
    fds = {int(fd): target for fd, target in seen["fds"].items()}
    sockets = [fd for fd, target in fds.items() if target.startswith("socket:")]
    assert len(sockets) == 1, f"the door's listening socket alone: {fds}"
    assert set(fds) == {0, 1, 2, *seen["wire"], *sockets}, f"inherited descriptors: {fds}"
    assert fds[0] == "/dev/null"
    assert all(target.startswith("pipe:") for fd, target in fds.items() if fd not in (0, *sockets)), fds


# --------------------------------------------------------------------------- limits


def test_memory_limit_kills_the_whole_tree(batch: Batch) -> None:
    run = contained(batch, "memory")
    assert run["state"] == "failed", run
    assert run["error"]["kind"] == "limit"
    assert "memory limit exceeded" in run["error"]["message"]
    assert "limits.memory_mb" in run["error"]["message"]
    assert not wait_until_dead(batch.pids("memory")), "the tree outlived the memory kill"


def test_address_space_limit_gives_memory_error(batch: Batch) -> None:
    run = contained(batch, "address_space")
    assert run["state"] == "failed", run
    assert run["error"]["type"] == "MemoryError", run["error"]
    assert "address-space limit (limits.address_space_mb)" in run["error"]["message"]


def test_wall_time_limit(batch: Batch) -> None:
    run = contained(batch, "wall")
    assert run["state"] == "failed", run
    assert run["error"] == {"kind": "limit", "message": "wall time limit of 2s exceeded (limits.wall_seconds)"}
    assert run["ended"] - run["started"] < 15, "the agent slept 60s; the limit must end it early"


def test_cpu_limit(batch: Batch) -> None:
    # Regression: RLIMIT_CPU had soft == hard, so the kernel sent SIGKILL, not SIGXCPU, and
    # the run was resumed as a crash three times without a word about CPU.
    run = contained(batch, "cpu")
    assert run["state"] == "failed", run
    assert run["error"]["kind"] == "limit", run["error"]
    assert "CPU time limit" in run["error"]["message"] and "limits.cpu_seconds" in run["error"]["message"]


# --------------------------------------------------------------------------- the process tree


def test_tree_is_gone_after_the_run_finishes(batch: Batch) -> None:
    run = contained(batch, "tree_done")
    assert run["state"] == "succeeded", run
    assert set(run["result"]) <= set(batch.noted("tree_done"))
    assert not wait_until_dead(batch.pids("tree_done")), "a child or setsid grandchild outlived its run"


def test_tree_is_gone_after_the_run_is_killed(batch: Batch) -> None:
    run = contained(batch, "tree_killed")
    assert run["state"] == "failed" and "wall time limit of 3s" in run["error"]["message"], run
    assert not wait_until_dead(batch.pids("tree_killed")), "a child or setsid grandchild outlived its run"


def test_nothing_written_outside_the_workdirs(batch: Batch) -> None:
    after = snapshot_outside(batch.project, batch.workdirs)
    assert after == batch.outside_before


def test_agent_process_writes_nothing_to_its_code_folder(batch: Batch) -> None:
    # Regression: without -B the agent's interpreter wrote __pycache__ into the code folder,
    # outside its workdir, where other agents sharing the folder would load it.
    cache = batch.project.agents_dir / "__pycache__"
    assert not cache.exists(), f"agent processes wrote {sorted(p.name for p in cache.iterdir())}"


# --------------------------------------------------------------------------- control socket


def _as_nobody(action: Any) -> int:
    """Run ``action`` in a forked child that dropped to uid/gid 65534; its exit status."""
    pid = os.fork()
    if pid == 0:  # pragma: no cover - child
        code = 99
        try:
            os.setgroups([])
            os.setgid(NOBODY)
            os.setuid(NOBODY)
            code = action()
        finally:
            os._exit(code)
    _, status = os.waitpid(pid, 0)
    return os.waitstatus_to_exitcode(status)


def test_control_socket_is_private(batch: Batch) -> None:
    sock_path = batch.project.socket
    st = sock_path.stat()
    assert stat.S_ISSOCK(st.st_mode) and stat.S_IMODE(st.st_mode) == 0o600, oct(st.st_mode)
    assert st.st_uid == os.getuid()
    if os.getuid() != 0:
        pytest.skip("needs root to switch to an unprivileged uid")
    # A hard link in a world-searchable folder: only the socket's own mode stands in the way
    # (the home and pytest's folders are 0700 and would refuse the connection on their own).
    exposed = Path(tempfile.mkdtemp(prefix="corral-sock-", dir="/tmp"))
    os.chmod(exposed, 0o711)
    link = exposed / "corral.sock"
    try:
        os.link(sock_path, link)
    except OSError as exc:
        os.rmdir(exposed)
        pytest.skip(f"cannot hard-link the socket into /tmp ({exc})")
    try:
        _check_other_user_is_refused(batch, link)
    finally:
        link.unlink()
        os.rmdir(exposed)
    assert list(control.request(sock_path, {"op": "ping"}))[0]["pid"] == batch.daemon.pid


def _check_other_user_is_refused(batch: Batch, link: Path) -> None:
    sock_path = batch.project.socket

    def connect() -> int:
        s = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        try:
            s.connect(str(link))
        except PermissionError:
            return 13
        return 0

    assert _as_nobody(connect) == 13, "an unprivileged user could connect to the control socket"

    # Even past a too-permissive mode, the daemon checks the peer's uid before it reads a
    # request; reading first, without writing, does not race the daemon's close.
    def ping() -> int:
        s = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        s.settimeout(5)
        s.connect(str(link))
        answer = json.loads(s.makefile("rb").readline())
        return 13 if answer == {"ok": False, "error": "permission denied: not the daemon's user"} else 1

    os.chmod(sock_path, 0o666)
    try:
        assert _as_nobody(ping) == 13, "the daemon answered another user"
    finally:
        os.chmod(sock_path, 0o600)


def test_the_daemon_is_left_no_zombie_children(batch: Batch) -> None:
    """bubblewrap's init reparents to the daemon (a subreaper) when a run's tree is killed; the
    sweep reaps it. Regression: one zombie per run, and one from the start-up probe."""
    deadline = time.monotonic() + 5
    while zombies := [c.pid for c in psutil.Process(batch.daemon.pid).children() if c.status() == "zombie"]:
        assert time.monotonic() < deadline, f"zombie children of the daemon: {zombies}"
        time.sleep(0.1)


def test_daemon_still_runs_agents(batch: Batch) -> None:
    assert batch.daemon.process.poll() is None
    again = batch.project.cli("run", "tree_done", "--wait", "--json", timeout=60)
    assert again.returncode == 0, again.stderr
    run = json.loads(again.stdout)
    assert not wait_until_dead(host_pids(run["result"], batch.project.workdir("tree_done")))
    assert batch.daemon.stop() == 0, batch.project.daemon_stderr()


# --------------------------------------------------------------------------- kill -9 of the daemon

ORPHANER = """
import os, time
from treekit import spawn_tree

def run(ctx):
    spawn_tree()
    if not os.path.exists("slept"):  # only the first attempt that gets this far waits
        open("slept", "w").close()
        time.sleep(60)
    return ctx.attempt
"""


@pytest.mark.slow
def test_kill_9_of_the_daemon_leaves_no_process(tmp_path: Path) -> None:
    if not sys.platform.startswith("linux"):
        pytest.skip("PR_SET_PDEATHSIG and cgroups are Linux-only; macOS has its own watcher thread")
    project = Project(tmp_path)
    _write_agents(project, {"orphaner": (ORPHANER, {})})
    workdir = project.workdir("orphaner")
    pids: list[int] = []
    try:
        daemon = project.start_daemon()
        run_id = project.cli_json("run", "orphaner")["id"]
        deadline = time.monotonic() + 30
        while not (workdir / "slept").exists():
            assert time.monotonic() < deadline, "the agent never spawned its tree"
            time.sleep(0.05)
        pids = host_pids([int(pid) for pid in (workdir / "pids.txt").read_text().split()], workdir)
        children = [p for p in psutil.Process(daemon.pid).children() if p.status() != psutil.STATUS_ZOMBIE]
        [launcher] = [p for p in children if run_id in " ".join(p.cmdline())]
        daemon.kill()
        assert not wait_until_dead([launcher.pid]), "PDEATHSIG did not kill the agent with its daemon"

        project.start_daemon()  # sweeps the dead daemon's cgroups, then resumes the run
        run = project.wait_for_run(run_id)
        assert run["state"] == "succeeded" and run["result"] >= 2, run
        pids = host_pids([int(pid) for pid in (workdir / "pids.txt").read_text().split()], workdir)
        survivors = {pid: " ".join(psutil.Process(pid).cmdline())[:80] for pid in wait_until_dead(pids)}
        assert not survivors, f"processes of the run outlived kill -9 of its daemon and a restart: {survivors}"
        assert_no_processes(run, workdir)
        assert_journal(project, run_id)
    finally:
        kill_quietly(pids + [p.pid for p in _leftovers(workdir)])
        project.close()


def _leftovers(workdir: Path) -> list[psutil.Process]:
    found = []
    for proc in psutil.process_iter(["cwd"]):
        if proc.info["cwd"] == str(workdir):
            found.append(proc)
    return found
