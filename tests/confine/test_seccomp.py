"""The agent's seccomp filter, loaded in a real child process: what it refuses, and what it leaves.

The hostile suite attacks it through real agents; these check each rule on its own, with
the errno a caller sees, including the ones a reviewer found missing (MPTCP past the TCP
port rules, ``memfd_secret`` past the memory watchdog, setuid bits through ``mknod`` and
``openat2``).
"""

from __future__ import annotations

import json
import subprocess
import sys

import pytest

from corral.sandbox import seccomp

try:
    seccomp.build(account_memory=True)
    REASON = ""
except seccomp.SeccompError as error:
    REASON = str(error)

pytestmark = pytest.mark.skipif(bool(REASON), reason=f"no seccomp here: {REASON}")

CHILD = r"""
import ctypes, errno, json, os, socket, sys
from corral.sandbox import seccomp

libc = ctypes.CDLL(None, use_errno=True)
folder = sys.argv[2]
program = seccomp.program(account_memory=sys.argv[1] == "accounted")
prog = ctypes.create_string_buffer(program)
class SockFprog(ctypes.Structure):
    _fields_ = [("len", ctypes.c_ushort), ("filter", ctypes.c_void_p)]
fprog = SockFprog(len(program) // 8, ctypes.addressof(prog))
assert libc.prctl(38, 1, 0, 0, 0) == 0  # PR_SET_NO_NEW_PRIVS
assert libc.prctl(22, 2, ctypes.byref(fprog), 0, 0) == 0, ctypes.get_errno()  # SECCOMP_MODE_FILTER
out = {"active": seccomp.active()}

def attempt(name, func):
    try:
        func()
        out[name] = "ok"
    except OSError as error:
        out[name] = errno.errorcode.get(error.errno, str(error.errno))

def raw(name, number, *args):
    result = libc.syscall(number, *args)
    out[name] = "ok" if result >= 0 else errno.errorcode.get(ctypes.get_errno())

attempt("packet", lambda: socket.socket(17, socket.SOCK_RAW, 0))
attempt("netlink", lambda: socket.socket(16, socket.SOCK_DGRAM, 0))
attempt("raw inet", lambda: socket.socket(socket.AF_INET, socket.SOCK_RAW, 1))
attempt("mptcp", lambda: socket.socket(socket.AF_INET, socket.SOCK_STREAM, 262))
attempt("tcp", lambda: socket.socket(socket.AF_INET, socket.SOCK_STREAM).close())
attempt("udp6", lambda: socket.socket(socket.AF_INET6, socket.SOCK_DGRAM).close())
attempt("unix pair", lambda: [s.close() for s in socket.socketpair()])
attempt("memfd", lambda: os.close(os.memfd_create("x")))
attempt("chmod setuid", lambda: os.chmod(f"{folder}/plain", 0o4755))
attempt("chmod plain", lambda: os.chmod(f"{folder}/plain", 0o700))
attempt("open setgid", lambda: os.close(os.open(f"{folder}/made", os.O_CREAT | os.O_WRONLY, 0o2755)))
attempt("mknod setuid file", lambda: os.mknod(f"{folder}/node", 0o104755))
attempt("mknod char device", lambda: os.mknod(f"{folder}/dev", 0o020600, os.makedev(1, 3)))
attempt("mkfifo", lambda: os.mkfifo(f"{folder}/fifo"))
attempt("sethostname", lambda: socket.sethostname("corral-test"))
raw("keyctl", 250 if os.uname().machine == "x86_64" else 219, 0, -4, 0)
raw("syslog", 103 if os.uname().machine == "x86_64" else 116, 3, 0, 0)
raw("unshare user", 272 if os.uname().machine == "x86_64" else 97, 0x10000000)
raw("memfd_secret", 447, 0)
raw("openat2", 437, -100, f"{folder}/x".encode(), None, 0)
pid = os.fork()
if pid == 0:
    os._exit(0)
out["fork"] = "ok" if os.waitpid(pid, 0)[1] == 0 else "failed"
print(json.dumps(out))
"""


def _run(tmp_path, accounted: bool) -> dict[str, str]:
    (tmp_path / "plain").write_text("x")
    done = subprocess.run(
        [sys.executable, "-c", CHILD, "accounted" if accounted else "not", str(tmp_path)],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert done.returncode == 0, done.stderr
    result: dict[str, str] = json.loads(done.stdout)
    return result


def test_the_filter_refuses_what_the_namespaces_leave_open(tmp_path) -> None:
    got = _run(tmp_path, accounted=False)
    assert got.pop("active") is True
    refused = {
        "packet": "EPERM",
        "netlink": "EAFNOSUPPORT",
        "raw inet": "EPERM",
        "mptcp": "EPROTONOSUPPORT",
        "memfd": "EPERM",
        "chmod setuid": "EPERM",
        "open setgid": "EPERM",
        "mknod setuid file": "EPERM",
        "mknod char device": "EPERM",
        "sethostname": "EPERM",
        "keyctl": "EPERM",
        "syslog": "EPERM",
        "unshare user": "EPERM",
        "memfd_secret": "EPERM",
        "openat2": "ENOSYS",
    }
    allowed = {"tcp", "udp6", "unix pair", "chmod plain", "mkfifo", "fork"}
    assert {name: got[name] for name in refused} == refused
    assert {name: got[name] for name in allowed} == dict.fromkeys(allowed, "ok")
    assert not (tmp_path / "plain").stat().st_mode & 0o6000, "no setuid or setgid bit got through"
    assert not (tmp_path / "node").exists() and not (tmp_path / "made").exists()


def test_memfds_are_allowed_where_a_cgroup_counts_them(tmp_path) -> None:
    assert _run(tmp_path, accounted=True)["memfd"] == "ok"
