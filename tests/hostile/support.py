"""Machinery for the containment suite: where runs happen, and what the test sees from outside.

A :class:`Site` starts runs of an agent either through a real daemon (``corral up``, one
home for every agent) or in the foreground (``corral run AGENT --wait`` with no daemon,
each agent in a home of its own, since a foreground run holds its home's lock). The
other helpers read a process's limits and scheduling, its capabilities, the kernel's
keyrings and SysV IPC, from the test's side of the sandbox, where the agent cannot lie,
and put back what a failed containment changed.
"""

from __future__ import annotations

import configparser
import ctypes
import json
import os
import platform
import re
import resource
import shutil
import socket
import subprocess
import sys
import threading
import time
import urllib.request
from collections.abc import Callable, Iterable, Mapping
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from functools import partial
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import psutil
import pytest

from corral.testing import DaemonProcess
from tests.e2e.support import Project, kill_quietly, wait_for, wait_until_dead

ROOT = Path(__file__).resolve().parents[2]
LIBC = ctypes.CDLL(None, use_errno=True)
SYSCALLS = {"x86_64": {"add_key": 248, "keyctl": 250}, "aarch64": {"add_key": 217, "keyctl": 219}}
KEY_SPEC_USER_KEYRING = -4
KEYCTL_INVALIDATE = 21


def settle(check: Callable[[], list[str]], timeout: float) -> list[str]:
    """Poll ``check`` until it finds nothing or ``timeout`` passes; what it found last."""
    deadline = time.monotonic() + timeout
    while (found := check()) and time.monotonic() < deadline:
        time.sleep(0.1)
    return found


def write_json(path: Path, value: Any) -> None:
    """Write where an agent polls for it: whole or not at all (rename), readable by its user."""
    part = path.with_name(path.name + ".part")
    part.write_text(json.dumps(value))
    part.chmod(0o644)
    part.rename(path)


# --------------------------------------------------------------------------- sites


class Site:
    """Runs of the scenario's agents, under one daemon or each in the foreground."""

    def __init__(self, root: Path, mode: str, agents: Mapping[str, dict[str, Any]], env: Mapping[str, str]) -> None:
        assert mode in ("daemon", "foreground"), mode
        self.mode = mode
        self.daemon: DaemonProcess | None = None
        self.journals: dict[str, list[tuple[int, str]]] = {}
        """Each finished run's journal as ``corral trace`` shows it: (seq, status) per step."""
        self.projects: dict[str, Project] = {}
        homes = {"site": list(agents)} if mode == "daemon" else {name: [name] for name in agents}
        for folder, names in homes.items():
            project = Project(root / folder, env)
            # ~/.corral, so that "~" in the docs' layouts means project.root
            project.home = project.root / ".corral"
            project.corral.update(max_concurrent_runs=16)
            for name in names:
                project.agents[name] = dict(agents[name])
            project.write()
            for name in names:
                self.projects[name] = project

    def up(self, cwd: Path | None = None) -> None:
        """Under a daemon, start it (in ``cwd``, as supervisord's ``directory=`` would); in the
        foreground there is nothing to start."""
        if self.mode != "daemon":
            return
        project = next(iter(self.projects.values()))
        # the installed script, as supervisor.conf's command= runs it (``python -m`` would put cwd on sys.path)
        script = Path(sys.executable).with_name("corral")
        command = [str(script)] if script.exists() else [sys.executable, "-m", "corral"]
        with open(project.root / "daemon.stderr", "ab") as stderr:
            process = subprocess.Popen(
                [*command, "up"],
                env=project.env,
                cwd=cwd or project.root,
                stdout=subprocess.DEVNULL,
                stderr=stderr,
            )
        self.daemon = DaemonProcess(project, process)
        project.daemons.append(self.daemon)
        self.daemon.wait_ready()

    def project(self, agent: str) -> Project:
        return self.projects[agent]

    def workdir(self, agent: str) -> Path:
        return self.projects[agent].workdir(agent)

    def start(self, agent: str, payload: Any = None, *, wait: bool = True) -> subprocess.Popen[str]:
        """``corral run AGENT [--wait] --json``: through the daemon, or the run itself in the foreground."""
        project = self.projects[agent]
        args = [sys.executable, "-m", "corral", "run", agent, "--json"] + (["--wait"] if wait else [])
        if payload is not None:
            args += ["--input", json.dumps(payload)]
        return subprocess.Popen(
            args, env=project.env, cwd=project.root, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True
        )

    def supervisor(self, started: subprocess.Popen[str]) -> int:
        """The pid of what supervises a run: the daemon, or the foreground ``corral run`` itself."""
        return self.daemon.pid if self.daemon is not None else started.pid

    def finish(self, agent: str, started: subprocess.Popen[str], timeout: float = 90.0) -> dict[str, Any]:
        """The run's stored record once its ``corral run`` has returned (killed after ``timeout``)."""
        try:
            out, err = started.communicate(timeout=timeout)
        except subprocess.TimeoutExpired:
            started.kill()
            out, err = started.communicate()
            raise AssertionError(f"corral run {agent} did not return within {timeout:.0f}s: {err[-2000:]}") from None
        if started.returncode not in (0, 1):
            raise AssertionError(f"corral run {agent} exited {started.returncode}: {err[-2000:]}")
        trace = self.projects[agent].cli_json("trace", json.loads(out)["id"])
        self.journals[trace["run"]["id"]] = [(step["seq"], step["status"]) for step in trace["steps"]]
        return dict(trace["run"])

    def close(self) -> None:
        for project in set(self.projects.values()):
            project.close()


# --------------------------------------------------------------------------- processes


def named(name: str) -> list[psutil.Process]:
    """Live processes whose kernel name (``comm``, set with PR_SET_NAME) is ``name``."""
    found = []
    for proc in psutil.process_iter(["name", "status"]):
        if proc.info["name"] == name and proc.info["status"] != psutil.STATUS_ZOMBIE:
            found.append(proc)
    return found


def only_named(name: str, timeout: float = 30.0) -> psutil.Process:
    """The one process an agent named ``name``, as the host sees it (its pid in any namespace)."""
    procs: list[psutil.Process] = wait_for(lambda: named(name), f"no process named {name!r} appeared", timeout)
    assert len(procs) == 1, f"{len(procs)} processes are named {name!r}"
    return procs[0]


PROC_LIMITS = {"cpu": "Max cpu time", "nofile": "Max open files", "fsize": "Max file size"}
RLIMITS = {"cpu": resource.RLIMIT_CPU, "nofile": resource.RLIMIT_NOFILE, "fsize": resource.RLIMIT_FSIZE}


@dataclass(frozen=True)
class Scheduling:
    """What another process could change about a process: its limits, priority, CPUs, I/O class, policy."""

    limits: tuple[tuple[str, str, str], ...]
    nice: int
    affinity: frozenset[int]
    ionice: tuple[int, int]
    policy: int
    priority: int

    @classmethod
    def of(cls, pid: int) -> Scheduling:
        text = Path(f"/proc/{pid}/limits").read_text()
        limits = []
        for key, label in PROC_LIMITS.items():
            line = next(line for line in text.splitlines() if line.startswith(label))
            soft, hard = line[len(label) :].split()[:2]
            limits.append((key, soft, hard))
        proc = psutil.Process(pid)
        ionice = proc.ionice()
        return cls(
            limits=tuple(limits),
            nice=proc.nice(),
            affinity=frozenset(os.sched_getaffinity(pid)),
            ionice=(int(ionice.ioclass), int(ionice.value)),
            policy=os.sched_getscheduler(pid),
            priority=os.sched_getparam(pid).sched_priority,
        )

    def changes(self, after: Scheduling) -> dict[str, tuple[Any, Any]]:
        """Each field that differs in ``after``: name -> (before, after)."""
        names = ("limits", "nice", "affinity", "ionice", "policy", "priority")
        return {n: (getattr(self, n), getattr(after, n)) for n in names if getattr(self, n) != getattr(after, n)}

    def restore(self, pid: int) -> None:
        """Put these values back on ``pid`` (the test runs as root), ignoring a process that is gone."""
        try:
            for key, soft, hard in self.limits:
                value = [resource.RLIM_INFINITY if v == "unlimited" else int(v) for v in (soft, hard)]
                resource.prlimit(pid, RLIMITS[key], (value[0], value[1]))
            os.setpriority(os.PRIO_PROCESS, pid, self.nice)
            os.sched_setaffinity(pid, self.affinity)
            psutil.Process(pid).ionice(self.ionice[0], self.ionice[1] if self.ionice[0] in (1, 2) else None)
            os.sched_setscheduler(pid, self.policy, os.sched_param(self.priority))
        except (ProcessLookupError, psutil.NoSuchProcess):
            pass


def capabilities(pid: int) -> dict[str, Any]:
    """A process's effective capabilities and whether its user namespace is the host's."""
    status = Path(f"/proc/{pid}/status").read_text()
    cap_eff = int(re.search(r"^CapEff:\s*([0-9a-f]+)$", status, re.M).group(1), 16)  # type: ignore[union-attr]
    own_ns = os.readlink(f"/proc/{pid}/ns/user") != os.readlink("/proc/self/ns/user")
    return {"CapEff": cap_eff, "own user namespace": own_ns}


def reap(names: Iterable[str]) -> None:
    """Kill every process named one of ``names`` (a grandchild that escaped), waiting briefly."""
    pids = [p.pid for name in names for p in named(name)]
    kill_quietly(pids)
    wait_until_dead(pids, 5)


# --------------------------------------------------------------------------- Unix sockets


class CountingServer:
    """A Unix stream socket at ``address`` (a path, or ``@name`` for an abstract one) counting accepts."""

    def __init__(self, address: str) -> None:
        self.address = address
        self.sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        if address.startswith("@"):
            self.sock.bind("\0" + address[1:])
        else:
            old = os.umask(0o177)
            try:
                self.sock.bind(address)
            finally:
                os.umask(old)
            os.chmod(address, 0o600)
        self.sock.listen(16)
        self.sock.settimeout(0.1)
        self.accepted = 0
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._serve, daemon=True)
        self._thread.start()

    def _serve(self) -> None:
        while not self._stop.is_set():
            try:
                conn, _ = self.sock.accept()
            except OSError:
                continue
            self.accepted += 1
            conn.close()

    def close(self) -> None:
        self._stop.set()
        self._thread.join(2)
        self.sock.close()
        if not self.address.startswith("@"):
            Path(self.address).unlink(missing_ok=True)


def documented_supervisor_socket(user_home: Path, corral_home: Path) -> Path:
    """Where docs/supervisord.md puts supervisord's socket, with ``~`` meaning ``user_home``.

    The doc says where supervisor.conf is copied (``cp supervisor.conf DIR/...``); the
    socket is the file's ``[unix_http_server] file``, whose ``%(here)s`` is that folder.
    An absolute path outside ``~`` is placed under ``user_home/fs`` (a test may not write
    to the machine's own folders); the placeholders for the corral home map to ``corral_home``.
    """
    doc = (ROOT / "docs" / "supervisord.md").read_text()
    copied = re.search(r"cp supervisor\.conf (\S+)", doc)
    assert copied, "docs/supervisord.md no longer says where supervisor.conf is copied (`cp supervisor.conf DIR`)"
    parser = configparser.RawConfigParser(inline_comment_prefixes=(";",))
    parser.read_string((ROOT / "supervisor.conf").read_text())
    path = parser.get("unix_http_server", "file").replace("%(here)s", str(Path(copied.group(1)).parent))
    for placeholder in ("/Users/you/.corral", "%(ENV_CORRAL_HOME)s"):
        path = path.replace(placeholder, str(corral_home))
    for home in ("~", "%(ENV_HOME)s", "/Users/you"):
        if path == home or path.startswith(home + "/"):
            return user_home / path[len(home) :].lstrip("/")
    assert path.startswith("/"), f"cannot place supervisord's documented socket {path!r}"
    return user_home / "fs" / path.lstrip("/")


class Supervisord:
    """A real supervisord whose socket is at ``sock``, keeping one program (``sleep``) running."""

    def __init__(self, sock: Path) -> None:
        self.sock = sock
        folder = sock.parent
        folder.mkdir(parents=True, exist_ok=True, mode=0o700)
        conf = folder / "hostile-supervisord.conf"
        conf.write_text(
            f"[unix_http_server]\nfile={sock}\nchmod=0700\n\n"
            f"[supervisord]\nlogfile={folder}/supervisord.log\npidfile={folder}/supervisord.pid\n"
            "nodaemon=true\nsilent=true\n\n"
            "[rpcinterface:supervisor]\n"
            "supervisor.rpcinterface_factory = supervisor.rpcinterface:make_main_rpcinterface\n\n"
            "[program:bystander]\ncommand=sleep 600\nautostart=true\nstartsecs=0\n"
        )
        self.process = subprocess.Popen(
            [sys.executable, "-m", "supervisor.supervisord", "-c", str(conf)],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        try:
            self.bystander: int = wait_for(self._bystander, "supervisord did not start its program", 20)
        except AssertionError:
            self.close()
            raise

    def _bystander(self) -> int | None:
        if not self.sock.exists():
            return None
        children = [p for p in psutil.Process(self.process.pid).children() if p.name() == "sleep"]
        return children[0].pid if children else None

    def intact(self) -> bool:
        """supervisord still runs, and so does the very program it started."""
        return self.process.poll() is None and self._bystander() == self.bystander

    def close(self) -> None:
        self.process.terminate()
        try:
            self.process.wait(10)
        except subprocess.TimeoutExpired:
            self.process.kill()
            self.process.wait(5)


# --------------------------------------------------------------------------- keyrings and IPC


def _syscall(name: str, *args: Any) -> int:
    numbers = SYSCALLS.get(platform.machine())
    if numbers is None:
        raise OSError(38, f"no syscall numbers for {platform.machine()}")
    result = int(LIBC.syscall(ctypes.c_long(numbers[name]), *args))
    if result == -1:
        errno = ctypes.get_errno()
        raise OSError(errno, os.strerror(errno))
    return result


def add_user_key(description: str, payload: bytes) -> int:
    """Add a ``user`` key to this (root) process's user keyring; returns its serial."""
    return _syscall(
        "add_key",
        b"user",
        description.encode(),
        payload,
        ctypes.c_size_t(len(payload)),
        ctypes.c_long(KEY_SPEC_USER_KEYRING),
    )


def keys_described(fragment: str) -> list[int]:
    """Serials of the keys /proc/keys shows the test whose description contains ``fragment``."""
    keys = Path("/proc/keys")
    text = keys.read_text() if keys.exists() else ""
    return [int(line.split()[0], 16) for line in text.splitlines() if fragment in line]


def drop_keys(fragment: str) -> None:
    for serial in keys_described(fragment):
        try:
            _syscall("keyctl", ctypes.c_long(KEYCTL_INVALIDATE), ctypes.c_long(serial))
        except OSError:
            continue


def sysv_keys(kind: str) -> set[int]:
    """Keys of the SysV ``shm`` or ``msg`` objects the host's IPC namespace holds."""
    table = Path(f"/proc/sysvipc/{kind}")
    lines = table.read_text().splitlines()[1:] if table.exists() else []
    return {int(line.split()[0]) for line in lines if line.strip()}


def drop_sysv(keys: Iterable[int]) -> None:
    """Remove the host's SysV segments and queues with these keys (what a failed containment left)."""
    for key in keys:
        shmid = LIBC.shmget(ctypes.c_int(key), ctypes.c_size_t(0), 0)
        if shmid >= 0:
            LIBC.shmctl(shmid, 0, None)  # IPC_RMID
        msqid = LIBC.msgget(ctypes.c_int(key), 0)
        if msqid >= 0:
            LIBC.msgctl(msqid, 0, None)


def devices_under(folder: Path) -> list[str]:
    """Character or block device nodes anywhere under ``folder``."""
    found = []
    for dirpath, _, filenames in os.walk(folder):
        for name in filenames:
            path = Path(dirpath) / name
            mode = path.lstat().st_mode
            if (mode & 0o170000) in (0o020000, 0o060000):
                found.append(str(path))
    return found


@dataclass(frozen=True)
class Metadata:
    """Everything chmod, chown, utime and setxattr could change about a file."""

    mode: int
    uid: int
    gid: int
    mtime_ns: int
    xattrs: tuple[str, ...]

    @classmethod
    def of(cls, path: Path) -> Metadata:
        st = path.stat()
        return cls(st.st_mode, st.st_uid, st.st_gid, st.st_mtime_ns, tuple(sorted(os.listxattr(path))))

    def restore(self, path: Path) -> None:
        os.chmod(path, self.mode & 0o7777)
        os.chown(path, self.uid, self.gid)
        os.utime(path, ns=(self.mtime_ns, self.mtime_ns))
        for name in set(os.listxattr(path)) - set(self.xattrs):
            os.removexattr(path, name)


# --------------------------------------------------------------------------- the scenario

LIMITS = {"memory_mb": 256, "cpu_seconds": 60, "wall_seconds": 150, "processes": 32, "open_files": 256}
"""Every agent's limits: set, as docs/sandbox.md recommends, well above what the probes need."""


def agent_tables(user: str | None, read_only: Path) -> dict[str, dict[str, Any]]:
    """The config of each agent: least privilege as docs/sandbox.md recommends (no tools, no network,
    ``degraded_ok = false``, limits set). The prober, its victim and the peer run in every world,
    the prober as ``user`` when one is given; the others only in the worlds without ``user``."""

    def table(name: str, **extra: Any) -> dict[str, Any]:
        sandbox = {"degraded_ok": False, "network": "none", **extra.pop("sandbox", {})}
        return {"code": "agents", "entry": f"{name}:run", "sandbox": sandbox, "limits": dict(LIMITS), **extra}

    prober_sandbox: dict[str, Any] = {"read_only": [str(read_only)]}
    if user:
        prober_sandbox["user"] = user
    tables = {
        "prober": table("prober", sandbox=prober_sandbox),
        "victim": table("victim"),
        "peer": table("peer"),
    }
    if user:
        return tables
    return tables | {
        "sniffer": table("sniffer", sandbox={"network": ["127.0.0.1:1"]}),
        "memfd": table("memfd"),
        "shmhog": table("shmhog"),
        "gated": table("gated", tools=["write_file"], guardrails={"approve": ["write_file"]}),
        "bystander": table("bystander"),
    }


@dataclass
class Findings:
    """What one world's runs did, as their records say and as the test saw it from outside."""

    mode: str
    user: str | None
    token: str
    records: dict[str, dict[str, Any]]
    seen: dict[str, Any]

    def result(self, agent: str) -> Any:
        """The run's result, failing the test with the run's record when it did not succeed."""
        prober = self.records.get("prober", {})
        assert agent in self.records, f"the {agent} run never started; the prober's run: {prober.get('error')}"
        run = self.records[agent]
        error = run.get("error") or {}
        if run["state"] == "failed" and error.get("kind") == "sandbox" and self.seen.get("lacks"):
            pytest.skip(
                f"this machine lacks {self.seen['lacks']}, so the {agent} agent was refused: {error['message']}"
            )
        assert run["state"] == "succeeded", f"the {agent} run did not succeed: {run['state']} {error}"
        return run["result"]


def handoff(site: Site, agent: str, started: subprocess.Popen[str], name: str, timeout: float = 60.0) -> bool:
    """Wait for the agent to write ``name`` in its workdir; False if its run ended first."""
    path = site.workdir(agent) / name
    wait_for(lambda: path.exists() or started.poll() is not None, f"{agent} never wrote {name}", timeout)
    return path.exists()


class Exploration:
    """One world: start everything, watch from outside, put back what changed. Used by :func:`explore`."""

    def __init__(self, root: Path, mode: str, user: str | None, sources: Mapping[str, str], kit: str) -> None:
        self.token = token = os.urandom(6).hex()
        self.names = {"prober": f"hp{token[:8]}", "victim": f"hv{token[:8]}"}
        self.unique = f"private-{token}.txt"
        self.user = user
        self.seen: dict[str, Any] = {"private names": [self.unique, f"home-{token}"]}
        self.records: dict[str, dict[str, Any]] = {}
        self.started: dict[str, subprocess.Popen[str]] = {}
        self.undo: list[Callable[[], None]] = []
        self.root = root
        self.outside = Path(f"/tmp/corral-hostile-{token}")  # a folder of root's under /tmp
        self.outside.mkdir(mode=0o700)
        self.undo.append(lambda: shutil.rmtree(self.outside, ignore_errors=True))
        read_only = root / "reference"
        read_only.mkdir(mode=0o755)
        (read_only / "granted.txt").write_text("read-only reference\n")
        (read_only / "granted.txt").chmod(0o644)
        tables = agent_tables(user, read_only)
        self.site = Site(root / "worlds", mode, tables, {"LANG": "C.UTF-8"})
        self.undo.append(self.site.close)
        for project in set(self.site.projects.values()):
            project.root.chmod(0o755)
            project.agents_dir.chmod(0o755)
            (project.agents_dir / "hostile_kit.py").write_text(kit)
            for name in project.agents:
                (project.agents_dir / f"{name}.py").write_text(sources[name])

    # ------------------------------------------------------------------ set-up

    def prepare(self) -> None:
        """Everything the prober will aim at, owned by root and outside its workdir, before any run."""
        project = self.site.project("prober")
        project.home.mkdir(mode=0o700, exist_ok=True)
        secret = subprocess.run(
            [sys.executable, "-m", "corral", "secrets", "set", "HOSTILE_KEY", "--backend", "file"],
            input=f"hostile-secret-{self.token}",
            env=project.env,
            capture_output=True,
            text=True,
            timeout=60,
        )
        assert secret.returncode == 0, secret.stderr
        protections = project.cli_json("doctor")["machine"]["protections"]
        self.seen["lacks"] = {name: p["reason"] for name, p in protections.items() if not p["available"]}
        (self.outside / "file.txt").write_text("root's\n")
        self.files = {
            "read_only grant": self.root / "reference" / "granted.txt",
            "secrets file": project.home / "secrets.json",
            "file in /tmp": self.outside / "file.txt",
        }
        self.seen["metadata before"] = {label: Metadata.of(path) for label, path in self.files.items()}
        for label, path in self.files.items():
            self.undo.append(partial(self.seen["metadata before"][label].restore, path))
        self.supervisord: Supervisord | str
        try:
            self.supervisord = Supervisord(documented_supervisor_socket(project.root, project.home))
            self.undo.append(self.supervisord.close)
        except (AssertionError, OSError, configparser.Error) as exc:
            self.supervisord = f"no supervisord in the documented layout: {exc}"
        (project.root / "service").mkdir(mode=0o700)
        self.servers = {
            "root service in /tmp": CountingServer(str(self.outside / "service.sock")),
            "root service next to the home": CountingServer(str(project.root / "service" / "service.sock")),
            "abstract socket": CountingServer(f"@corral-hostile-{self.token}"),
        }
        for server in self.servers.values():
            self.undo.append(server.close)
        self.planted_key = f"planted-secret-{self.token}"
        try:
            add_user_key(f"corral-plant-{self.token}", self.planted_key.encode())
            self.seen["planted key"] = True
        except OSError as exc:
            self.seen["planted key"] = f"the test could not add a key to root's user keyring: {exc}"
        self.undo.append(partial(drop_keys, self.token))
        self.kmsg = f"corral-hostile-kmsg-{self.token}"
        try:
            Path("/dev/kmsg").write_text(self.kmsg + "\n")
            self.seen["kmsg marker"] = True
        except OSError as exc:
            self.seen["kmsg marker"] = f"the test could not write to /dev/kmsg: {exc}"
        hostname = socket.gethostname()
        self.seen["hostname before"] = hostname
        self.undo.append(partial(restore_hostname, hostname))
        self.keys = {"shm_key": 0x4C000000 | int(self.token[:5], 16), "msg_key": 0x4D000000 | int(self.token[:5], 16)}
        self.hog_key = 0x4E000000 | (int(self.token[:4], 16) << 8)
        self.undo.append(partial(drop_sysv, [*self.keys.values(), *range(self.hog_key, self.hog_key + 40)]))
        self.undo.append(lambda: Path(f"/dev/shm/{self.token}").unlink(missing_ok=True))
        self.undo.append(lambda: reap(self.names.values()))

    def targets(self) -> dict[str, Any]:
        project = self.site.project("prober")
        home = project.home
        unix = {label: (server.address, "") for label, server in self.servers.items()}
        if isinstance(self.supervisord, Supervisord):
            unix["supervisord"] = (str(self.supervisord.sock), "xmlrpc")
        if self.site.daemon is not None:
            unix["control socket"] = (str(project.socket), '{"op": "ping"}')
        return {
            "unix": unix,
            "pids": self.seen["pids"],
            "files": {label: str(path) for label, path in self.files.items()},
            "folders": {"workdir": ".", "/tmp": str(self.outside)},
            "key": f"corral-hostile-{self.token}",
            "hostname": f"corral-hostile-{self.token[:6]}",
            "token": self.token,
            **self.keys,
            "reads": {
                "home": str(home),
                "store": str(home / "store" / "data.mdb"),
                "secrets file": str(home / "secrets.json"),
                "daemon log": str(home / "logs" / "corral.log"),
                "prober log": str(home / "logs" / "prober.log"),
            },
            "watch": {"victim workdir": str(self.site.workdir("victim")), "corral home": str(home)},
        }

    # ------------------------------------------------------------------ the runs

    def run(self) -> Findings:
        site = self.site
        # supervisor.conf starts corral in supervisord's folder (directory=%(here)s)
        site.up(self.supervisord.sock.parent if isinstance(self.supervisord, Supervisord) else None)
        self.started["victim"] = site.start("victim", {"name": self.names["victim"]})
        self.started["prober"] = site.start("prober", {"name": self.names["prober"]})
        with ThreadPoolExecutor(max_workers=3) as pool:
            side = [pool.submit(flow) for flow in self.side_flows()]
            self.probe()
            for future in side:
                future.result()
        for agent, started in self.started.items():
            self.records[agent] = site.finish(agent, started)
        self.afterwards()
        self.seen["journals"] = {agent: site.journals[run["id"]] for agent, run in self.records.items()}
        return Findings(site.mode, self.user, self.token, self.records, self.seen)

    def probe(self) -> None:
        """The prober's two phases, and the victim's go; whatever happens, neither is left waiting."""
        try:
            self.attack_and_watch()
        finally:
            for agent, name, value in (("victim", "go.json", {"file": self.unique}), ("prober", "release", None)):
                path = self.site.workdir(agent) / name
                if path.parent.is_dir() and not path.exists():
                    write_json(path, value)

    def attack_and_watch(self) -> None:
        site, seen = self.site, self.seen
        victim_started, prober_started = self.started["victim"], self.started["prober"]
        if not (
            handoff(site, "victim", victim_started, "ready") and handoff(site, "prober", prober_started, "started")
        ):
            return
        victim = only_named(self.names["victim"]).pid
        supervisor = site.supervisor(prober_started)
        seen["pids"] = {"supervisor": supervisor, "victim": victim}
        seen["scheduling before"] = {"supervisor": Scheduling.of(supervisor), "victim": Scheduling.of(victim)}
        for label, pid in seen["pids"].items():
            self.undo.append(partial(seen["scheduling before"][label].restore, pid))
        write_json(site.workdir("prober") / "targets.json", self.targets())
        if not handoff(site, "prober", prober_started, "ready"):
            return
        prober = only_named(self.names["prober"])
        seen["prober capabilities"] = capabilities(prober.pid)
        seen["prober uids"] = tuple(prober.uids())
        seen["prober scheduling"] = Scheduling.of(prober.pid)
        seen["scheduling after"] = {label: observe(Scheduling.of, pid) for label, pid in seen["pids"].items()}
        seen["hostname during"] = socket.gethostname()
        restore_hostname(seen["hostname before"])
        seen["metadata after"] = {label: Metadata.of(path) for label, path in self.files.items()}
        for label, path in self.files.items():
            seen["metadata before"][label].restore(path)
        seen["devices"] = devices_under(site.workdir("prober")) + devices_under(self.outside)
        for device in seen["devices"]:
            Path(device).unlink()
        seen["keys added"] = keys_described(f"corral-hostile-{self.token}")
        seen["posix shm on the host"] = Path(f"/dev/shm/{self.token}").exists()
        seen["sysv on the host during the run"] = {
            "shm": self.keys["shm_key"] in sysv_keys("shm"),
            "msg": self.keys["msg_key"] in sysv_keys("msg"),
        }
        self.records["peer"] = site.finish("peer", site.start("peer", self.keys), timeout=60)
        unique = self.unique
        write_json(site.workdir("victim") / "go.json", {"file": unique})
        (site.project("prober").home / f"home-{self.token}").write_text("the operator's")
        wait_for(lambda: (site.workdir("victim") / unique).exists() or victim_started.poll() is not None, "", 30)
        time.sleep(0.5)
        seen["prober workdir"] = {p.name: p.stat().st_uid for p in site.workdir("prober").iterdir()}
        write_json(site.workdir("prober") / "release", None)

    def side_flows(self) -> list[Callable[[], None]]:
        if self.user:
            return []
        site = self.site
        # bounded by what the machine can spare: both hogs at once, a sixth of what is available each
        mb = min(1024, psutil.virtual_memory().available // 2**20 // 6) // 32 * 32
        if mb >= 512:
            self.started["memfd"] = site.start("memfd", {"how": "memfd", "mb": mb})
            self.started["shmhog"] = site.start("shmhog", {"how": "shm", "mb": mb, "key": self.hog_key})
        else:
            self.seen["no hogs"] = f"this machine has too little memory available to hold 512 MiB twice ({mb} MiB)"
        flows = [self.sniff]
        if site.daemon is not None:
            flows.append(self.self_approve)
        return flows

    def sniff(self) -> None:
        """While the sniffer listens, send a loopback request carrying a bearer token it must not see."""
        started = self.started["sniffer"] = self.site.start("sniffer", {"seconds": 3})
        bearer = self.seen["bearer"] = f"hostile-bearer-{self.token}"
        server = ThreadingHTTPServer(("127.0.0.1", 0), Quiet)
        threading.Thread(target=server.serve_forever, daemon=True).start()
        try:
            if not handoff(self.site, "sniffer", started, "ready"):
                return
            deadline = time.monotonic() + 3
            while time.monotonic() < deadline and started.poll() is None:
                request = urllib.request.Request(
                    f"http://127.0.0.1:{server.server_port}/", headers={"Authorization": f"Bearer {bearer}"}
                )
                with urllib.request.urlopen(request, timeout=2) as reply:
                    reply.read()
                time.sleep(0.1)
        finally:
            server.shutdown()
            server.server_close()

    def self_approve(self) -> None:
        """A run on hold for a human, then a later run of the same agent trying to decide it over the socket."""
        site, seen = self.site, self.seen
        project = site.project("gated")
        queued = site.start("gated", None, wait=False)
        held_id = json.loads(queued.communicate(timeout=60)[0])["id"]
        seen["held run"] = held_id
        held = project.wait_for_run(held_id, timeout=60)
        if held["state"] != "on_hold":
            seen["self approval"] = f"the gated run did not wait for a human: {held['state']} {held.get('error')}"
            return
        approval = next((a["id"] for a in project.cli_json("approvals") if a["agent"] == "gated"), None)
        if approval is None:
            seen["self approval"] = f"the gated run is on hold but no approval waits: {held}"
            return
        requests = {
            "approve its own call": {"op": "approve", "id": approval, "reason": "the agent itself"},
            "queue another agent's run": {"op": "run", "agent": "bystander", "input": {"planted": self.token}},
            "pause another agent": {"op": "pause", "agent": "bystander", "reason": f"hostile-{self.token}"},
            "cancel its held run": {"op": "cancel", "run": held_id},
            "reload the config": {"op": "reload"},
        }
        attack = {"socket": str(project.socket), "requests": {k: json.dumps(v) for k, v in requests.items()}}
        self.records["attacker"] = site.finish("gated", site.start("gated", {"attack": attack}))
        time.sleep(0.5)  # a run the daemon was told to queue would be on record by now
        seen["self approval"] = {
            "pending approvals": [a["id"] for a in project.cli_json("approvals")],
            "approval": approval,
            "held run": project.run_record(held_id)["state"],
            "approved file": (site.workdir("gated") / "approved.txt").exists(),
            "bystander runs": [r["id"] for r in project.cli_json("runs") if r["agent"] == "bystander"],
            "bystander pause": project.cli_json("status")["agents"]["bystander"].get("pause"),
        }

    def afterwards(self) -> None:
        seen = self.seen
        seen["sysv on the host after the run"] = {
            "shm": self.keys["shm_key"] in sysv_keys("shm"),
            "msg": self.keys["msg_key"] in sysv_keys("msg"),
            "hogs": sorted(set(range(self.hog_key, self.hog_key + 40)) & sysv_keys("shm")),
        }
        seen["posix shm after the run"] = Path(f"/dev/shm/{self.token}").exists()
        seen["keys after the run"] = keys_described(f"corral-hostile-{self.token}")
        homes = [str(project.home) + "/" for project in set(self.site.projects.values())]
        seen["leftovers"] = settle(lambda: leftovers(homes, self.names.values()), timeout=3)
        seen["accepted"] = {label: server.accepted for label, server in self.servers.items()}
        supervisord = self.supervisord
        seen["supervisord intact"] = supervisord.intact() if isinstance(supervisord, Supervisord) else supervisord
        daemon = self.site.daemon
        if daemon is not None:
            seen["daemon alive"] = daemon.process.poll() is None
            seen["daemon answers"] = self.site.project("prober").cli("status", "--json").returncode == 0

    def close(self) -> None:
        """Stop every run first (a broken exploration leaves them going), then undo in reverse order."""
        for started in self.started.values():
            if started.poll() is None:
                started.kill()
                started.communicate()
        self.site.close()
        for undo in reversed(self.undo):
            try:
                undo()
            except Exception:  # noqa: BLE001, S112 - best effort: every undo must get its turn
                continue


def explore(root: Path, mode: str, user: str | None, sources: Mapping[str, str], kit: str) -> Findings:
    """Run one world (``daemon`` or ``foreground``, with or without ``user``) and return what it found."""
    exploration = Exploration(root, mode, user, sources, kit)
    try:
        exploration.prepare()
        return exploration.run()
    finally:
        exploration.close()


class Quiet(BaseHTTPRequestHandler):
    """A loopback HTTP endpoint that answers 200 and logs nothing."""

    def do_GET(self) -> None:  # noqa: N802 - http.server's name
        self.send_response(200)
        self.send_header("Content-Length", "2")
        self.end_headers()
        self.wfile.write(b"ok")

    def log_message(self, format: str, *args: Any) -> None:  # noqa: A002 - http.server's signature
        return


def observe(read: Callable[[int], Any], pid: int) -> Any:
    """``read(pid)``, or ``"gone"`` when the process has ended."""
    try:
        return read(pid)
    except (FileNotFoundError, ProcessLookupError, psutil.NoSuchProcess):
        return "gone"


def leftovers(homes: Iterable[str], names: Iterable[str]) -> list[str]:
    """Processes working in a workdir under one of ``homes``, or named one of ``names``."""
    names, found = set(names), []
    for proc in psutil.process_iter(["name", "cwd", "status", "cmdline"]):
        if proc.info["status"] == psutil.STATUS_ZOMBIE or proc.pid == os.getpid():
            continue
        cwd = (proc.info["cwd"] or "") + "/"
        if proc.info["name"] in names or any(cwd.startswith(home + "agents/") for home in homes):
            found.append(f"{proc.pid} {' '.join(proc.info['cmdline'] or [])[:100]}")
    return found


def restore_hostname(name: str) -> None:
    if socket.gethostname() != name:
        socket.sethostname(name)
