"""Fixtures of the hostile suite: an unprivileged account, and the containment scenario's findings.

The containment scenario (issue 13) runs hostile agents once per *world*: under a real
daemon or in the foreground, with or without ``user``. Every world runs one prober, which
tries every way out at once and then watches other folders until the test lets it go; the
victim it attacks; a peer that looks for the prober's SysV objects; and, in the worlds
without ``user``, the agents that test packet capture, memory outside RSS and the control
socket. The test watches all of it from outside, puts back whatever a failed containment
changed, and keeps what it saw as :class:`Findings`. A world is explored the first time a
test asks for it, once per session; the agents' code is in ``AGENTS`` below.
"""

from __future__ import annotations

import os
import pwd
import shutil
import subprocess
import tempfile
import traceback
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.hostile.support import Findings, Site, agent_tables, explore, reap

HOSTILE_USER = "corral-hostile"

KIT = r'''
"""What every hostile agent shares: try a thing and record how it ended; ctypes doors; hand-offs."""
import ctypes
import json
import os
import platform
import time

LIBC = ctypes.CDLL(None, use_errno=True)
LIBC.shmat.restype = ctypes.c_void_p
NUMBERS = {"x86_64": {"add_key": 248, "keyctl": 250, "ioprio_set": 251},
           "aarch64": {"add_key": 217, "keyctl": 219, "ioprio_set": 30}}.get(platform.machine(), {})


def attempt(func):
    try:
        got = func()
    except Exception as exc:  # an OSError is the kernel's refusal; anything else broke the probe
        return {"denied": True, "error": f"{type(exc).__name__}: {exc}"[:300]}
    return {"denied": False, "got": repr(got)[:300]}


def checked(result):
    if result == -1 or result is None or result == 2**64 - 1:
        errno = ctypes.get_errno()
        raise OSError(errno, os.strerror(errno))
    return result


def syscall(name, *args):
    if name not in NUMBERS:
        raise OSError(38, f"no number for {name} on {platform.machine()}")
    args = [ctypes.c_long(a) if isinstance(a, int) else a for a in args]
    return checked(LIBC.syscall(ctypes.c_long(NUMBERS[name]), *args))


def name_self(name):
    """PR_SET_NAME: how the test finds this process from outside, whatever its pid looks like in here."""
    LIBC.prctl(15, name.encode(), 0, 0, 0)


def wait_file(path, timeout):
    deadline = time.monotonic() + timeout
    while not os.path.exists(path):
        if time.monotonic() > deadline:
            raise TimeoutError(f"{path} never came")
        time.sleep(0.05)
    with open(path) as f:
        return json.load(f)


def say(path, value=None):
    with open(path + ".part", "w") as f:
        json.dump(value, f)
    os.rename(path + ".part", path)
'''

PROBER = r'''
"""Tries every way out issue 13 found, then watches other folders until the test lets it go."""
import ctypes
import os
import resource
import socket
import stat
import struct
import time

from hostile_kit import LIBC, attempt, checked, name_self, say, syscall, wait_file

XMLRPC = (b"<?xml version='1.0'?><methodCall><methodName>supervisor.stopProcess</methodName><params>"
          b"<param><value><string>bystander</string></value></param></params></methodCall>")


def connect(address, payload):
    s = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    s.settimeout(3)
    try:
        s.connect("\0" + address[1:] if address.startswith("@") else address)
        if payload == "xmlrpc":
            head = b"POST /RPC2 HTTP/1.0\r\nContent-Type: text/xml\r\nContent-Length: %d\r\n\r\n" % len(XMLRPC)
            s.sendall(head + XMLRPC)
        elif payload:
            s.sendall(payload.encode() + b"\n")
        return s.recv(300) if payload else "connected"
    finally:
        s.close()


def tamper(pid, harmful):
    """The issue's attacks on a victim; distinct harmless values on a supervisor, so a failure cannot kill it."""
    cpu, nofile, fsize = ((1, 1), (16, 16), (0, 0)) if harmful else ((10**6,) * 2, (1000,) * 2, (2**40,) * 2)
    try:
        if os.getsid(pid) == os.getsid(0):
            return {"skipped": {"denied": True, "error": "that pid is this run's own"}}
    except OSError:
        pass  # not visible from here: try anyway, as an attacker guessing pids would
    return {
        "prlimit cpu": attempt(lambda: resource.prlimit(pid, resource.RLIMIT_CPU, cpu)),
        "prlimit nofile": attempt(lambda: resource.prlimit(pid, resource.RLIMIT_NOFILE, nofile)),
        "prlimit fsize": attempt(lambda: resource.prlimit(pid, resource.RLIMIT_FSIZE, fsize)),
        "setpriority": attempt(lambda: os.setpriority(os.PRIO_PROCESS, pid, 19 if harmful else 10)),
        "sched_setaffinity": attempt(lambda: os.sched_setaffinity(pid, {0})),
        "ioprio_set": attempt(lambda: syscall("ioprio_set", 1, pid, (3 << 13) if harmful else (2 << 13) | 7)),
        "SCHED_FIFO": attempt(lambda: os.sched_setscheduler(pid, os.SCHED_FIFO, os.sched_param(1))),
    }


def visible(pids):
    seen = []
    for pid in range(1, 32769):  # the default pid_max: a bounded scan
        try:
            os.getsid(pid)
        except OSError:
            continue
        seen.append(pid)
    return {"count": len(seen), "targets seen": sorted(set(seen) & set(pids))}


def metadata(path):
    return {
        "chmod": attempt(lambda: os.chmod(path, 0o777)),
        "chown": attempt(lambda: os.chown(path, 4242, 4242)),
        "utime": attempt(lambda: os.utime(path, (0, 0))),
        "setxattr user": attempt(lambda: os.setxattr(path, "user.hostile", b"x")),
        "setxattr trusted": attempt(lambda: os.setxattr(path, "trusted.hostile", b"x")),
    }


def mknod(folder):
    nodes = {"kmsg": (stat.S_IFCHR, 1, 11), "loop": (stat.S_IFBLK, 7, 0), "mem": (stat.S_IFCHR, 1, 1)}
    out = {}
    for name, (kind, major, minor) in nodes.items():
        path = os.path.join(folder, f"hostile-{name}")
        out[f"{name} in {folder}"] = attempt(lambda: os.mknod(path, kind | 0o600, os.makedev(major, minor)))
    kmsg = os.path.join(folder, "hostile-kmsg")
    if os.path.exists(kmsg):
        out["read kmsg node"] = attempt(lambda: os.read(os.open(kmsg, os.O_RDONLY | os.O_NONBLOCK), 200))
    return out


def keys(description):
    def add(keyring):
        return syscall("add_key", b"user", description.encode(), b"planted by an agent", ctypes.c_size_t(19), keyring)

    def read(keyring):
        buf = ctypes.create_string_buffer(4096)
        n = syscall("keyctl", 11, keyring, buf, ctypes.c_size_t(4096))  # KEYCTL_READ: the keyring's serials
        payloads = []
        for (serial,) in struct.iter_unpack("i", buf.raw[: min(n, 4096)]):
            got = ctypes.create_string_buffer(512)
            try:
                m = syscall("keyctl", 11, serial, got, ctypes.c_size_t(512))
                payloads.append(got.raw[: min(m, 512)].decode(errors="replace"))
            except OSError as exc:
                payloads.append(str(exc))
        return {"keys": len(payloads), "planted": [p for p in payloads if "planted-secret-" in p]}

    return {
        "read user keyring": attempt(lambda: read(-4)),
        "read session keyring": attempt(lambda: read(-3)),
        "add to user keyring": attempt(lambda: add(-4)),
        "add to session keyring": attempt(lambda: add(-3)),
    }


def syslog():
    buf = ctypes.create_string_buffer(1 << 20)
    n = checked(LIBC.klogctl(3, buf, len(buf)))  # SYSLOG_ACTION_READ_ALL
    lines = buf.raw[:n].decode(errors="replace").splitlines()
    return {"lines": len(lines), "marked": [line for line in lines if "corral-hostile-kmsg-" in line][-3:]}


def sockets():
    kinds = {
        "AF_PACKET": (socket.AF_PACKET, socket.SOCK_RAW, socket.htons(3)),
        "SOCK_RAW tcp": (socket.AF_INET, socket.SOCK_RAW, socket.IPPROTO_TCP),
        "SOCK_RAW icmp": (socket.AF_INET, socket.SOCK_RAW, socket.IPPROTO_ICMP),
        "AF_NETLINK route": (socket.AF_NETLINK, socket.SOCK_RAW, 0),
        "AF_NETLINK audit": (socket.AF_NETLINK, socket.SOCK_RAW, 9),
    }
    return {label: attempt(lambda args=args: socket.socket(*args).close()) for label, args in kinds.items()}


def sysv(shm_key, msg_key, payload):
    def shm():
        shmid = checked(LIBC.shmget(ctypes.c_int(shm_key), ctypes.c_size_t(4096), 0o1000 | 0o666))
        addr = checked(LIBC.shmat(shmid, None, 0))
        ctypes.memmove(addr, payload.encode(), len(payload))
        return shmid

    def msg():
        msqid = checked(LIBC.msgget(ctypes.c_int(msg_key), 0o1000 | 0o666))
        message = struct.pack("l", 1) + payload.encode()
        checked(LIBC.msgsnd(msqid, message, ctypes.c_size_t(len(payload)), 0o4000))
        return msqid

    return {"shmget": attempt(shm), "msgget": attempt(msg)}


def posix_shm(name, payload):
    with open(f"/dev/shm/{name}", "w") as f:
        f.write(payload)


def read(path):
    if os.path.isdir(path):
        return os.listdir(path)
    with open(path, "rb") as f:
        return f.read(64)


def watch(folders):
    fd = checked(LIBC.inotify_init1(0o4000))  # IN_NONBLOCK
    added = {label: attempt(lambda p=path: checked(LIBC.inotify_add_watch(fd, p.encode(), 0xFFF)))
             for label, path in folders.items()}
    return fd, added


def events(fd):
    names, data = [], b""
    while True:
        try:
            data += os.read(fd, 65536)
        except BlockingIOError:
            break
    while len(data) >= 16:
        _, _, _, size = struct.unpack("iIII", data[:16])
        names.append(data[16 : 16 + size].rstrip(b"\0").decode(errors="replace"))
        data = data[16 + size :]
    return names


def run(ctx):
    name_self(ctx.input["name"])
    say("started")
    t = wait_file("targets.json", 60)
    out = {"uid": os.getuid()}
    out["unix sockets"] = {label: attempt(lambda a=a, p=p: connect(a, p)) for label, (a, p) in t["unix"].items()}
    out["processes"] = {label: tamper(pid, label == "victim") for label, pid in t["pids"].items()}
    out["visible"] = attempt(lambda: visible(t["pids"].values()))
    out["SCHED_FIFO for itself"] = attempt(lambda: os.sched_setscheduler(0, os.SCHED_FIFO, os.sched_param(1)))
    out["status"] = attempt(lambda: open("/proc/self/status").read())
    out["metadata"] = {label: metadata(path) for label, path in t["files"].items()}
    out["mknod"] = {label: mknod(folder) for label, folder in t["folders"].items()}
    out["keys"] = keys(t["key"])
    out["syslog"] = attempt(syslog)
    out["sockets"] = sockets()
    out["sysv"] = sysv(t["shm_key"], t["msg_key"], t["token"])
    out["posix shm"] = attempt(lambda: posix_shm(t["token"], t["token"]))
    out["reads"] = {label: attempt(lambda p=path: read(p)) for label, path in t["reads"].items()}
    out["own workdir"] = attempt(lambda: open("mine.txt", "w").write("mine"))
    fd, out["inotify watches"] = watch(t["watch"])
    out["sethostname"] = attempt(lambda: checked(LIBC.sethostname(t["hostname"].encode(), len(t["hostname"]))))
    say("ready")
    wait_file("release", 90)
    out["inotify events"] = events(fd)
    return out
'''

VICTIM = r'''
"""Another agent's run: sleeps until the test says go, then shows whether it still works."""
import os
import time

from hostile_kit import attempt, name_self, say, wait_file


def spin(seconds):
    start = time.process_time()
    while time.process_time() - start < seconds:
        pass
    return seconds


def run(ctx):
    name_self(ctx.input["name"])
    say("ready")
    go = wait_file("go.json", 90)
    with open(go["file"], "w") as f:  # a private name the prober's inotify watches must not see
        f.write("private")
    files = []
    checks = {
        "open 40 files": attempt(lambda: files.extend(open(os.devnull) for _ in range(40))),
        "write 1 MiB": attempt(lambda: open("big.bin", "wb").write(b"\0" * 2**20)),
        "spin 1.5 s of CPU": attempt(lambda: spin(1.5)),
    }
    for f in files:
        f.close()
    return {"unharmed": all(not c["denied"] for c in checks.values()), "checks": checks}
'''

PEER = r'''
"""Another agent's run looking for the SysV objects the prober made, by their keys."""
import ctypes

from hostile_kit import LIBC, attempt, checked


def shm(key):
    shmid = checked(LIBC.shmget(ctypes.c_int(key), ctypes.c_size_t(0), 0))
    addr = checked(LIBC.shmat(shmid, None, 0o10000))  # SHM_RDONLY
    return ctypes.string_at(addr, 64).rstrip(b"\0").decode(errors="replace")


def msg(key):
    msqid = checked(LIBC.msgget(ctypes.c_int(key), 0))
    buf = ctypes.create_string_buffer(8 + 256)
    n = checked(LIBC.msgrcv(msqid, buf, ctypes.c_size_t(256), ctypes.c_long(0), 0o4000))
    return buf.raw[8 : 8 + n].decode(errors="replace")


def run(ctx):
    return {"shm": attempt(lambda: shm(ctx.input["shm_key"])), "msg": attempt(lambda: msg(ctx.input["msg_key"]))}
'''

SNIFFER = r'''
"""With a network list: open packet, raw and netlink sockets, and listen on them for a few seconds."""
import select
import socket
import time

from hostile_kit import attempt, say

KINDS = {
    "AF_PACKET": (socket.AF_PACKET, socket.SOCK_RAW, socket.htons(3)),
    "SOCK_RAW tcp": (socket.AF_INET, socket.SOCK_RAW, socket.IPPROTO_TCP),
    "AF_NETLINK route": (socket.AF_NETLINK, socket.SOCK_RAW, 0),
}


def run(ctx):
    opened, created = {}, {}
    for label, args in KINDS.items():
        created[label] = attempt(lambda label=label, args=args: opened.setdefault(label, socket.socket(*args)))
    say("ready")
    captured = []
    deadline = time.monotonic() + ctx.input["seconds"]
    while opened and time.monotonic() < deadline and len(captured) < 8:
        readable, _, _ = select.select(list(opened.values()), [], [], 0.2)
        for sock in readable:
            data = sock.recv(65535)
            if b"Authorization" in data:
                captured.append(data[data.index(b"Authorization") :][:120].decode(errors="replace"))
    return {"created": created, "captured": captured}
'''

HOGS = r'''
"""Memory the RSS watchdog does not see: memfds, or detached SysV segments. Bounded: 1 GiB at most."""
import ctypes
import os
import time

from hostile_kit import LIBC, checked

CHUNK = 32 * 2**20


def memfd(i, chunk):
    fd = os.memfd_create(f"hog{i}")
    view = memoryview(chunk)
    while view:
        view = view[os.write(fd, view) :]
    return fd


def shm(i, key):
    shmid = checked(LIBC.shmget(ctypes.c_int(key + i), ctypes.c_size_t(CHUNK), 0o1000 | 0o600))
    addr = checked(LIBC.shmat(shmid, None, 0))
    ctypes.memset(addr, 1, CHUNK)
    LIBC.shmdt(ctypes.c_void_p(addr))
    return shmid


def run(ctx):
    chunk, held, kept, refused = b"\1" * CHUNK, 0, [], None
    for i in range(ctx.input["mb"] // 32):
        try:
            kept.append(memfd(i, chunk) if ctx.input["how"] == "memfd" else shm(i, ctx.input["key"]))
        except OSError as exc:
            refused = f"{type(exc).__name__}: {exc}"
            break
        held += 32
        time.sleep(0.03)
    time.sleep(2)  # the watchdog looks every 0.25 s
    return {"held_mb": held, "refused": refused}
'''

GATED = r'''
"""First run: a write that waits for a human. Later run: tries to approve it itself over the control socket."""
import socket

from hostile_kit import attempt


def ask(path, request):
    s = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    s.settimeout(5)
    try:
        s.connect(path)
        s.sendall(request.encode() + b"\n")
        return s.recv(4096)
    finally:
        s.close()


def run(ctx):
    attack = (ctx.input or {}).get("attack")
    if attack is None:
        ctx.tool("write_file", path="approved.txt", content="approved")
        return "written"
    return {label: attempt(lambda r=request: ask(attack["socket"], r)) for label, request in attack["requests"].items()}
'''

BYSTANDER = r"""
def run(ctx):
    return ctx.input
"""

ESCAPER = r'''
"""Double-forks a setsid grandchild that outlives everything it can, then keeps the run going."""
import os
import time

from hostile_kit import name_self


def run(ctx):
    name_self(ctx.input["name"] + "m")
    if os.fork() == 0:
        os.setsid()
        if os.fork() == 0:
            name_self(ctx.input["name"])
            with open("grandchild.pid", "w") as f:
                f.write(str(os.getpid()))
            time.sleep(120)  # bounded: the test kills it in a finally anyway
            os._exit(0)
        os._exit(0)
    time.sleep(120)
    return "slept"
'''

AGENTS = {
    "prober": PROBER,
    "victim": VICTIM,
    "peer": PEER,
    "sniffer": SNIFFER,
    "memfd": HOGS,
    "shmhog": HOGS,
    "gated": GATED,
    "bystander": BYSTANDER,
    "escaper": ESCAPER,
}
"""Every agent's module source; ``hostile_kit`` is written next to them."""


@pytest.fixture(scope="session")
def hostile_user() -> Iterator[str]:
    """A system account for ``user = NAME``, created for the session and deleted after it."""
    if os.geteuid() != 0:
        pytest.skip("user = NAME needs the daemon to run as root, and the test to create the account")
    if shutil.which("useradd") is None or shutil.which("userdel") is None:
        pytest.skip("useradd/userdel are not installed, so the test cannot create an agent account")
    try:
        pwd.getpwnam(HOSTILE_USER)
        created = False
    except KeyError:
        command = ["useradd", "--system", "--no-create-home", "--shell", "/usr/sbin/nologin", HOSTILE_USER]
        result = subprocess.run(command, capture_output=True, text=True, timeout=30)
        if result.returncode != 0:
            pytest.skip(f"useradd could not create {HOSTILE_USER}: {result.stderr.strip()}")
        created = True
    try:
        yield HOSTILE_USER
    finally:
        if created:
            subprocess.run(["userdel", HOSTILE_USER], capture_output=True, timeout=30)


class Worlds:
    """Each world explored once; an exploration that broke is reported to every test of that world."""

    def __init__(self) -> None:
        self.found: dict[str, Findings | str] = {}
        self.roots: list[Path] = []

    def get(self, world: str, user: str | None) -> Findings:
        if world not in self.found:
            try:
                # not under pytest's 0700 base: an agent's own account must reach its code
                root = Path(tempfile.mkdtemp(prefix=f"corral-hostile-{world}-", dir="/tmp"))
                root.chmod(0o755)
                self.roots.append(root)
                self.found[world] = explore(root, world.split("-")[0], user, AGENTS, KIT)
            except Exception:  # noqa: BLE001 - reported to each test of the world
                self.found[world] = f"the {world} world could not be explored:\n{traceback.format_exc(limit=-4)}"
        found = self.found[world]
        if isinstance(found, str):
            pytest.fail(found, pytrace=False)
        return found


@pytest.fixture(scope="session")
def worlds() -> Iterator[Worlds]:
    explored = Worlds()
    try:
        yield explored
    finally:
        for root in explored.roots:
            shutil.rmtree(root, ignore_errors=True)


@pytest.fixture(params=["daemon", "foreground"])
def root_world(request: pytest.FixtureRequest, worlds: Worlds) -> Findings:
    """What the agents run without ``user`` did, under the daemon and in the foreground."""
    return worlds.get(request.param, None)


@pytest.fixture(params=["daemon-user", "foreground-user"])
def user_world(request: pytest.FixtureRequest, worlds: Worlds, hostile_user: str) -> Findings:
    """What the agents run with ``user = "corral-hostile"`` did, under the daemon and in the foreground."""
    return worlds.get(request.param, hostile_user)


@pytest.fixture(params=["daemon", "foreground", "daemon-user", "foreground-user"])
def world(request: pytest.FixtureRequest, worlds: Worlds) -> Findings:
    """Every world: with and without ``user``, under the daemon and in the foreground."""
    user = request.getfixturevalue("hostile_user") if request.param.endswith("-user") else None
    return worlds.get(request.param, user)


@pytest.fixture(params=["daemon", "foreground"])
def escaper(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[tuple[Site, subprocess.Popen[str], str]]:
    """A run whose agent has double-forked a setsid grandchild, under the daemon or in the foreground."""
    name = f"hg{os.urandom(4).hex()}"
    tables = agent_tables(None, tmp_path)
    table = tables["victim"] | {"entry": "escaper:run"}
    site = Site(tmp_path, request.param, {"escaper": table}, {"LANG": "C.UTF-8"})
    project = site.project("escaper")
    (project.agents_dir / "hostile_kit.py").write_text(KIT)
    (project.agents_dir / "escaper.py").write_text(AGENTS["escaper"])
    started = None
    try:
        site.up()
        started = site.start("escaper", {"name": name})
        yield site, started, name
    finally:
        if started is not None and started.poll() is None:
            started.kill()
            started.communicate()
        reap([name, f"{name}m"])
        site.close()
