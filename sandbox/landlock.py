"""Landlock: the agent's process confines its own filesystem, TCP and IPC reach (Linux).

The launcher calls :func:`apply` on itself once everything it needs is imported and
before any agent code runs. The restriction holds for the process and every descendant,
cannot be lifted, and works the same for root and unprivileged users. What a kernel can
enforce depends on its Landlock ABI; :func:`apply` handles every right the ABI knows,
reports exactly what it enforced, and notes each request the kernel could not honour.

Syscalls go through ``ctypes``: the PyPI ``landlock`` package (1.0.0.dev5, alpha) only
knows filesystem rights, and there is no network or scope support to build on.
"""

from __future__ import annotations

import ctypes
import errno
import os
import platform
import stat
import sys
from collections.abc import Collection, Iterable
from dataclasses import dataclass
from pathlib import Path

from corral.errors import CorralError


class LandlockError(CorralError):
    """Operator: Landlock could not be applied; the message names the step and the fix."""


# landlock_create_ruleset, landlock_add_rule, landlock_restrict_self. Both architectures use
# the unified numbers of include/uapi/asm-generic/unistd.h (x86_64 lists the same ones in
# arch/x86/entry/syscalls/syscall_64.tbl).
SYSCALLS: dict[str, tuple[int, int, int]] = {"x86_64": (444, 445, 446), "aarch64": (444, 445, 446)}

CREATE_RULESET_VERSION = 1 << 0
RULE_PATH_BENEATH = 1
RULE_NET_PORT = 2
PR_SET_NO_NEW_PRIVS = 38

# (name, bit, first ABI that knows it), from include/uapi/linux/landlock.h.
FS_RIGHTS: tuple[tuple[str, int, int], ...] = (
    ("execute", 1 << 0, 1),
    ("write_file", 1 << 1, 1),
    ("read_file", 1 << 2, 1),
    ("read_dir", 1 << 3, 1),
    ("remove_dir", 1 << 4, 1),
    ("remove_file", 1 << 5, 1),
    ("make_char", 1 << 6, 1),
    ("make_dir", 1 << 7, 1),
    ("make_reg", 1 << 8, 1),
    ("make_sock", 1 << 9, 1),
    ("make_fifo", 1 << 10, 1),
    ("make_block", 1 << 11, 1),
    ("make_sym", 1 << 12, 1),
    ("refer", 1 << 13, 2),
    ("truncate", 1 << 14, 3),
    ("ioctl_dev", 1 << 15, 5),
)
NET_RIGHTS: tuple[tuple[str, int, int], ...] = (("bind_tcp", 1 << 0, 4), ("connect_tcp", 1 << 1, 4))
SCOPES: tuple[tuple[str, int, int], ...] = (("abstract_unix_socket", 1 << 0, 6), ("signal", 1 << 1, 6))
ALL_SCOPES = tuple(name for name, _, _ in SCOPES)

_BIT = {name: bit for name, bit, _ in FS_RIGHTS + NET_RIGHTS}
# Only these rights make sense on a file; the kernel rejects directory rights on one.
FILE_RIGHTS = sum(_BIT[n] for n in ("execute", "write_file", "read_file", "truncate", "ioctl_dev"))
READ_ONLY_RIGHTS = _BIT["execute"] | _BIT["read_file"] | _BIT["read_dir"]

_KERNEL_FOR_ABI = {1: "5.13", 2: "5.19", 3: "6.2", 4: "6.7", 5: "6.10", 6: "6.12"}


class _RulesetAttr(ctypes.Structure):
    _fields_ = [
        ("handled_access_fs", ctypes.c_uint64),
        ("handled_access_net", ctypes.c_uint64),
        ("scoped", ctypes.c_uint64),
    ]


class _PathBeneathAttr(ctypes.Structure):
    _pack_ = 1  # the kernel struct is __attribute__((packed)): 12 bytes
    _fields_ = [("allowed_access", ctypes.c_uint64), ("parent_fd", ctypes.c_int32)]


class _NetPortAttr(ctypes.Structure):
    _fields_ = [("allowed_access", ctypes.c_uint64), ("port", ctypes.c_uint64)]


@dataclass(frozen=True)
class LandlockSupport:
    """What this machine's kernel offers, and a sentence saying why (not)."""

    available: bool
    abi: int
    reason: str


@dataclass(frozen=True)
class LandlockApplied:
    """Exactly what :func:`apply` enforced; ``notes`` lists what it could not and why."""

    abi: int
    handled_fs: tuple[str, ...]
    handled_net: tuple[str, ...]
    scopes: tuple[str, ...]
    read_write: tuple[str, ...]
    read_only: tuple[str, ...]
    tcp_connect: tuple[int, ...]
    tcp_bind: tuple[int, ...]
    notes: tuple[str, ...]

    def labels(self) -> list[str]:
        """Short tags for the run's list of applied protections."""
        labels = [f"landlock:abi{self.abi}", "landlock:fs"]
        if self.handled_net:
            labels.append("landlock:tcp")
        labels += [f"landlock:scope:{scope}" for scope in self.scopes]
        return labels


def _names(table: tuple[tuple[str, int, int], ...], mask: int) -> tuple[str, ...]:
    return tuple(name for name, bit, _ in table if mask & bit)


def _mask(table: tuple[tuple[str, int, int], ...], abi: int) -> int:
    return sum(bit for _, bit, since in table if abi >= since)


def _libc() -> ctypes.CDLL:
    libc = ctypes.CDLL(None, use_errno=True)
    libc.syscall.restype = ctypes.c_long
    return libc


def _syscall(index: int, *args: object) -> int:
    """Call one of the three Landlock syscalls; raise OSError with the kernel's errno."""
    number = SYSCALLS[platform.machine()][index]
    result = int(_libc().syscall(ctypes.c_long(number), *args))
    if result < 0:
        code = ctypes.get_errno()
        raise OSError(code, os.strerror(code))
    return result


def _unavailable_reason(error: OSError) -> str:
    if error.errno == errno.ENOSYS:
        return "the kernel has no Landlock syscalls: it is older than 5.13 or built without CONFIG_SECURITY_LANDLOCK"
    if error.errno == errno.EOPNOTSUPP:
        return (
            "Landlock is built into the kernel but disabled at boot: add 'landlock' to the lsm= kernel "
            "parameter (see /sys/kernel/security/lsm) and reboot"
        )
    return f"the Landlock syscall failed ({error.strerror}); a seccomp filter (a container runtime) may block it"


def detect() -> LandlockSupport:
    """Ask the kernel for its Landlock ABI; never raises."""
    if not sys.platform.startswith("linux"):
        return LandlockSupport(False, 0, f"Landlock is a Linux feature; this machine runs {sys.platform}")
    machine = platform.machine()
    if machine not in SYSCALLS:
        known = ", ".join(SYSCALLS)
        return LandlockSupport(False, 0, f"corral knows the Landlock syscall numbers for {known}, not {machine}")
    try:
        abi = _syscall(0, None, ctypes.c_size_t(0), ctypes.c_uint32(CREATE_RULESET_VERSION))
    except OSError as error:
        return LandlockSupport(False, 0, _unavailable_reason(error))
    offers = ["filesystem rules"]
    lacks = []
    for need, offer in ((4, "TCP bind/connect rules"), (6, "signal and abstract-socket scoping")):
        if abi >= need:
            offers.append(offer)
        else:
            lacks.append(f"{offer} need ABI {need} (Linux {_KERNEL_FOR_ABI[need]})")
    reason = f"Landlock ABI {abi}: " + ", ".join(offers)
    if lacks:
        reason += "; " + "; ".join(lacks)
    return LandlockSupport(True, abi, reason)


def _ports(ports: Iterable[int] | None, what: str) -> tuple[int, ...] | None:
    if ports is None:
        return None
    checked = []
    for port in ports:
        if isinstance(port, bool) or not isinstance(port, int) or not 0 <= port <= 65535:
            raise LandlockError(f"{what} port {port!r} is not a TCP port number; use an integer from 0 to 65535")
        checked.append(port)
    return tuple(sorted(set(checked)))


def _check_single_threaded() -> None:
    """restrict_self confines the calling thread only: a thread started earlier would stay free."""
    try:
        threads = len(os.listdir("/proc/self/task"))
    except OSError:
        return
    if threads > 1:
        raise LandlockError(
            f"this process has {threads} threads; Landlock confines only the calling thread, so apply it "
            "before starting any thread (in the launcher, before the agent code runs)"
        )


def _add_path(ruleset: int, path: str, rights: int, notes: list[str]) -> bool:
    """Add one path rule; a path that does not exist is noted and skipped."""
    try:
        fd = os.open(path, os.O_PATH | os.O_CLOEXEC)
    except FileNotFoundError:
        notes.append(f"skipped {path}: it does not exist")
        return False
    except OSError as error:
        raise LandlockError(f"cannot open {path} for a Landlock rule: {error.strerror}; fix the path") from None
    try:
        if not stat.S_ISDIR(os.fstat(fd).st_mode):
            rights &= FILE_RIGHTS
        rule = _PathBeneathAttr(allowed_access=rights, parent_fd=fd)
        _syscall(1, ctypes.c_long(ruleset), ctypes.c_long(RULE_PATH_BENEATH), ctypes.byref(rule), ctypes.c_uint32(0))
    except OSError as error:
        raise LandlockError(f"the kernel refused the Landlock rule for {path}: {error.strerror}") from None
    finally:
        os.close(fd)
    return True


def _handled_net(abi: int, connect: tuple[int, ...] | None, bind: tuple[int, ...] | None, notes: list[str]) -> int:
    if connect is None and bind is None:
        return 0
    if abi < 4:
        notes.append(f"TCP ports are not restricted: Landlock network rules need ABI 4, this kernel has {abi}")
        return 0
    return (_BIT["connect_tcp"] if connect is not None else 0) | (_BIT["bind_tcp"] if bind is not None else 0)


def _scoped(abi: int, scopes: Collection[str], notes: list[str]) -> int:
    if scopes and abi < 6:
        notes.append(f"scopes {', '.join(sorted(scopes))} are not enforced: they need ABI 6, this kernel has {abi}")
        return 0
    return sum(bit for name, bit, _ in SCOPES if name in scopes)


def _add_ports(ruleset: int, connect: tuple[int, ...], bind: tuple[int, ...]) -> None:
    for port in sorted(set(connect) | set(bind)):
        allowed = (_BIT["connect_tcp"] if port in connect else 0) | (_BIT["bind_tcp"] if port in bind else 0)
        rule = _NetPortAttr(allowed_access=allowed, port=port)
        try:
            _syscall(1, ctypes.c_long(ruleset), ctypes.c_long(RULE_NET_PORT), ctypes.byref(rule), ctypes.c_uint32(0))
        except OSError as error:
            raise LandlockError(f"the kernel refused the Landlock rule for TCP port {port}: {error.strerror}") from None


def apply(
    read_write: Iterable[str | os.PathLike[str]] = (),
    read_only: Iterable[str | os.PathLike[str]] = (),
    *,
    tcp_connect: Iterable[int] | None = None,
    tcp_bind: Iterable[int] | None = None,
    scopes: Collection[str] = ALL_SCOPES,
) -> LandlockApplied:
    """Confine this process (and all it starts) to the given paths, ports and scopes; irreversible.

    ``read_write`` paths get every filesystem right the ABI knows, ``read_only`` paths read,
    list and execute; anything else is denied. ``tcp_connect``/``tcp_bind``: ``None`` leaves
    that TCP operation unrestricted, a collection (even empty) allows only those ports.
    ``scopes`` cut the process off from abstract Unix sockets and signals outside its domain.
    Requests the kernel's ABI cannot enforce are listed in the result's ``notes``.
    """
    connect = _ports(tcp_connect, "tcp_connect")
    bind = _ports(tcp_bind, "tcp_bind")
    unknown = sorted(set(scopes) - set(ALL_SCOPES))
    if unknown:
        raise LandlockError(f"unknown Landlock scope {unknown[0]!r}; use any of {', '.join(ALL_SCOPES)}")
    support = detect()
    if not support.available:
        raise LandlockError(f"Landlock is not available: {support.reason}")
    _check_single_threaded()
    abi = support.abi
    notes: list[str] = []
    handled_fs = _mask(FS_RIGHTS, abi)
    handled_net = _handled_net(abi, connect, bind, notes)
    scoped = _scoped(abi, scopes, notes)
    attr = _RulesetAttr(handled_access_fs=handled_fs, handled_access_net=handled_net, scoped=scoped)
    try:
        ruleset = _syscall(0, ctypes.byref(attr), ctypes.c_size_t(ctypes.sizeof(attr)), ctypes.c_uint32(0))
    except OSError as error:
        raise LandlockError(f"cannot create a Landlock ruleset: {error.strerror}") from None
    try:
        rw = tuple(str(p) for p in read_write if _add_path(ruleset, str(p), handled_fs, notes))
        ro = tuple(str(p) for p in read_only if _add_path(ruleset, str(p), handled_fs & READ_ONLY_RIGHTS, notes))
        if handled_net:
            _add_ports(ruleset, connect or (), bind or ())
        if _libc().prctl(PR_SET_NO_NEW_PRIVS, *map(ctypes.c_ulong, (1, 0, 0, 0))) != 0:
            raise LandlockError(f"prctl(PR_SET_NO_NEW_PRIVS) failed: {os.strerror(ctypes.get_errno())}")
        try:
            _syscall(2, ctypes.c_long(ruleset), ctypes.c_uint32(0))
        except OSError as error:
            raise LandlockError(f"landlock_restrict_self failed: {error.strerror}") from None
    finally:
        os.close(ruleset)
    return LandlockApplied(
        abi=abi,
        handled_fs=_names(FS_RIGHTS, handled_fs),
        handled_net=_names(NET_RIGHTS, handled_net),
        scopes=_names(SCOPES, scoped),
        read_write=rw,
        read_only=ro,
        tcp_connect=connect if handled_net and connect is not None else (),
        tcp_bind=bind if handled_net and bind is not None else (),
        notes=tuple(notes),
    )


def system_paths() -> tuple[tuple[str, ...], tuple[str, ...]]:
    """(read_write, read_only) a Python process needs to keep working under Landlock.

    Read-only: the system's programs and libraries, the Python installation, corral's own
    package folders (the daemon adds its ``sys.path`` folders to each request, leaving out
    any that holds the corral home), certificates, name resolution and time zone files. Read-write:
    ``/dev/null`` only. Paths missing on this machine are skipped by :func:`apply`.
    """
    from corral import source

    packages = {str(Path(p)) for p in source.folders()}
    python = {sys.prefix, sys.base_prefix, sys.exec_prefix, *packages}
    system = (
        "/usr",
        "/lib",
        "/lib64",
        "/bin",
        "/sbin",
        "/etc/ssl",
        "/etc/ca-certificates",
        "/etc/pki",
        "/etc/localtime",
        "/etc/resolv.conf",
        "/etc/hosts",
        "/etc/nsswitch.conf",
        "/etc/ld.so.cache",
        "/etc/passwd",
        "/etc/group",
        "/dev/urandom",
        "/dev/zero",
    )
    return ("/dev/null",), tuple(dict.fromkeys((*system, *sorted(python))))
