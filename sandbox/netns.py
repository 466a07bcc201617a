"""A network namespace of the agent's own: nothing but a loopback nobody else shares (Linux).

The launcher calls :func:`enter` on itself before any agent code runs. Afterwards TCP,
UDP and DNS to anything outside fail with ``ENETUNREACH``, and ``127.0.0.1`` is the
agent's private loopback: it cannot reach the daemon's or other agents' listeners.
Landlock cannot close UDP or pathname Unix sockets; this does the former.

As root the process only unshares its network namespace. Unprivileged (or as a root
without ``CAP_SYS_ADMIN``, inside a container) it first enters a new user namespace
that maps its own uid and gid to themselves, then drops the capabilities that
namespace gave it once the loopback is up. In the launcher :func:`enter` comes first,
while still root (unsharing without a user namespace needs ``CAP_SYS_ADMIN``, which
``users.drop_privileges`` gives up), then the user is dropped, then Landlock applied.
"""

from __future__ import annotations

import ctypes
import errno
import fcntl
import json
import os
import shutil
import socket
import struct
import subprocess
import sys
from dataclasses import dataclass

from corral.errors import CorralError

CLONE_NEWNET = 0x40000000
CLONE_NEWUSER = 0x10000000
SIOCGIFFLAGS = 0x8913
SIOCSIFFLAGS = 0x8914
IFF_UP = 0x1
_IFREQ = "16sh22x"  # struct ifreq on 64-bit Linux: 16-byte name, flags, rest of the 40-byte union
_CAP_VERSION_3 = 0x20080522
PR_GET_DUMPABLE = 3
PR_SET_DUMPABLE = 4


class NetnsError(CorralError):
    """Operator: the agent's network namespace could not be set up; the message says why and the fix."""


@dataclass(frozen=True)
class NetnsSupport:
    """Whether a process of this machine (as the given user) can get a namespace, and why (not)."""

    available: bool
    mode: str
    reason: str


@dataclass(frozen=True)
class NetnsApplied:
    """What :func:`enter` did: ``mode`` is ``root`` (network namespace only) or ``user``
    (with a user namespace); ``loopback`` says how ``lo`` was brought up."""

    mode: str
    loopback: str
    interfaces: tuple[str, ...]
    capabilities_dropped: bool

    def labels(self) -> list[str]:
        return [f"netns:{self.mode}"]


class _CapHeader(ctypes.Structure):
    _fields_ = [("version", ctypes.c_uint32), ("pid", ctypes.c_int)]


class _CapData(ctypes.Structure):
    _fields_ = [("effective", ctypes.c_uint32), ("permitted", ctypes.c_uint32), ("inheritable", ctypes.c_uint32)]


def _libc() -> ctypes.CDLL:
    return ctypes.CDLL(None, use_errno=True)


def _unshare(flags: int) -> None:
    if _libc().unshare(ctypes.c_int(flags)) != 0:
        code = ctypes.get_errno()
        raise OSError(code, os.strerror(code))


def _write_id_maps(uid: int, gid: int) -> None:
    """Map our own ids to themselves; setgroups must be denied before an unprivileged gid_map.

    A process that switched users (root dropped to the agent's user) is not dumpable, so
    its /proc/self files belong to root and it cannot write its own maps: it is made
    dumpable for these three writes only.
    """
    libc = _libc()
    dumpable = libc.prctl(PR_GET_DUMPABLE, *map(ctypes.c_ulong, (0, 0, 0, 0)))
    if dumpable != 1:
        libc.prctl(PR_SET_DUMPABLE, *map(ctypes.c_ulong, (1, 0, 0, 0)))
    try:
        for name, text in (("setgroups", "deny"), ("uid_map", f"{uid} {uid} 1\n"), ("gid_map", f"{gid} {gid} 1\n")):
            try:
                with open(f"/proc/self/{name}", "w") as handle:
                    handle.write(text)
            except OSError as error:
                raise NetnsError(
                    f"cannot write /proc/self/{name} in the new user namespace: {error.strerror}"
                ) from None
    finally:
        if dumpable != 1:
            libc.prctl(PR_SET_DUMPABLE, *map(ctypes.c_ulong, (dumpable, 0, 0, 0)))


def _enter_user_namespace() -> None:
    uid, gid = os.getuid(), os.getgid()
    try:
        _unshare(CLONE_NEWUSER | CLONE_NEWNET)
    except OSError as error:
        hint = (
            "unprivileged user namespaces are disabled: set the sysctl user.max_user_namespaces above 0 "
            "(and kernel.unprivileged_userns_clone=1 or kernel.apparmor_restrict_unprivileged_userns=0 where "
            "they exist), or run the daemon as root"
        )
        raise NetnsError(f"unshare(CLONE_NEWUSER|CLONE_NEWNET) failed: {error.strerror}; {hint}") from None
    _write_id_maps(uid, gid)


def _loopback_up() -> str:
    """Bring ``lo`` up with SIOCSIFFLAGS; fall back to ``ip link set lo up`` if the ioctl fails."""
    try:
        with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as sock:
            current = fcntl.ioctl(sock.fileno(), SIOCGIFFLAGS, struct.pack(_IFREQ, b"lo", 0))
            flags = struct.unpack(_IFREQ, current)[1]
            fcntl.ioctl(sock.fileno(), SIOCSIFFLAGS, struct.pack(_IFREQ, b"lo", flags | IFF_UP))
        return "ioctl"
    except OSError as error:
        ioctl_error = error.strerror
    ip = shutil.which("ip", path="/usr/sbin:/sbin:/usr/bin:/bin")
    if ip is None:
        raise NetnsError(f"cannot bring the loopback up: SIOCSIFFLAGS failed ({ioctl_error}) and iproute2 is missing")
    result = subprocess.run([ip, "link", "set", "lo", "up"], capture_output=True, text=True, check=False)
    if result.returncode != 0:
        raise NetnsError(
            f"cannot bring the loopback up: SIOCSIFFLAGS failed ({ioctl_error}) and `ip link set lo up` said: "
            f"{result.stderr.strip()}"
        )
    return "ip"


def _drop_capabilities() -> None:
    """The new user namespace granted every capability inside it; the agent needs none."""
    header = _CapHeader(version=_CAP_VERSION_3, pid=0)
    data = (_CapData * 2)()
    if _libc().capset(ctypes.byref(header), data) != 0:
        raise NetnsError(f"cannot drop the user namespace's capabilities: {os.strerror(ctypes.get_errno())}")


def enter() -> NetnsApplied:
    """Move this process into a new network namespace with only ``lo``, up; irreversible."""
    if not sys.platform.startswith("linux"):
        raise NetnsError(f"network namespaces are a Linux feature; this machine runs {sys.platform}")
    threads = len(os.listdir("/proc/self/task"))
    if threads > 1:
        raise NetnsError(
            f"this process has {threads} threads; unshare moves only the calling thread, so enter the "
            "namespace before starting any thread"
        )
    mode = "user"
    if os.geteuid() == 0:
        try:
            _unshare(CLONE_NEWNET)
            mode = "root"
        except OSError as error:
            if error.errno != errno.EPERM:
                raise NetnsError(f"unshare(CLONE_NEWNET) failed: {error.strerror}") from None
    if mode == "user":
        _enter_user_namespace()
    loopback = _loopback_up()
    if mode == "user":
        _drop_capabilities()
    interfaces = tuple(sorted(name for _, name in socket.if_nameindex()))
    if interfaces != ("lo",):
        raise NetnsError(f"the new network namespace has interfaces {', '.join(interfaces)}, expected only lo")
    return NetnsApplied(mode=mode, loopback=loopback, interfaces=interfaces, capabilities_dropped=mode == "user")


_PROBE = (
    "import dataclasses, json; from corral.sandbox import netns; print(json.dumps(dataclasses.asdict(netns.enter())))"
)


def detect(user: str | int | None = None, timeout: float = 10.0) -> NetnsSupport:
    """Try :func:`enter` in a throwaway child (as ``user`` when given, which needs root); never raises."""
    if not sys.platform.startswith("linux"):
        return NetnsSupport(False, "", f"network namespaces are a Linux feature; this machine runs {sys.platform}")
    try:
        result = subprocess.run(
            [sys.executable, "-I", "-c", _PROBE],
            capture_output=True,
            text=True,
            timeout=timeout,
            user=user,
            cwd="/",
            check=False,
        )
    except KeyError:
        return NetnsSupport(False, "", f"could not start the probe process: there is no user {user!r}")
    except (OSError, subprocess.SubprocessError) as error:
        return NetnsSupport(False, "", f"could not start the probe process: {error}")
    if result.returncode != 0:
        lines = result.stderr.strip().splitlines() or [f"exit status {result.returncode}"]
        return NetnsSupport(False, "", f"a probe process could not enter a network namespace: {lines[-1]}")
    applied = json.loads(result.stdout)
    how = "as root" if applied["mode"] == "root" else "through an unprivileged user namespace"
    return NetnsSupport(True, applied["mode"], f"a private network namespace with only loopback works {how}")
