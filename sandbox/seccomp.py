"""The agent's system-call filter (Linux seccomp, built with libseccomp through ``pyseccomp``).

The daemon compiles it once (:func:`program`) and bubblewrap loads it (``--seccomp FD``)
right before it starts the launcher, so it holds from the launcher's first instruction,
every process of the run inherits it and none can lift it (``no_new_privs``). Nothing
the launcher does itself (dropping to the agent's user, Landlock) is refused by it. The
namespaces (:mod:`corral.sandbox.bwrap`) already keep most of the host out of reach;
the filter closes what a namespace does not and shrinks the kernel surface an agent can
touch. Everything not listed is allowed; a refused call fails with ``EPERM`` (or
``ENOSYS`` where callers fall back, as for ``clone3`` and ``io_uring``), so agent code
sees a normal ``OSError``. A call of another architecture (32-bit on a 64-bit kernel)
kills the process: libseccomp's default for a foreign architecture.

Refused:

- keyrings (``keyctl``, ``add_key``, ``request_key``), the kernel log (``syslog``), the
  host's name (``sethostname``, ``setdomainname``), the clock, swap, modules, reboot,
  ``kexec``, ``bpf``, ``perf_event_open``, ``userfaultfd``, ``ptrace`` and
  ``process_vm_*``, file handles (``open_by_handle_at``), mounting and namespaces
  (``mount``, ``umount2``, ``pivot_root``, the new mount API, ``unshare``, ``setns``,
  ``clone`` with any ``CLONE_NEW*`` flag, ``clone3``);
- sockets other than Unix, IPv4 and IPv6 (``AF_PACKET``, ``AF_NETLINK`` and the rest),
  and raw or packet sockets of any family (``SOCK_RAW``, ``SOCK_PACKET``);
- ``io_uring`` (its operations would bypass this filter), ``openat2`` (its mode is out of
  the filter's sight), ``memfd_secret`` (memory no watchdog or cgroup sees);
- MPTCP and SCTP sockets, which Landlock's TCP port rules do not cover;
- device nodes (``mknod`` of a character or block device; FIFOs and plain files stay allowed);
- setuid and setgid bits (``chmod``/``fchmod``/``fchmodat`` and creating files with
  them through ``open``, ``creat`` or ``mknod``), as systemd's ``RestrictSUIDSGID=``
  does, so nothing the agent writes can later run with its identity;
- with ``account_memory`` false (no cgroup ``memory.max`` holds the run), memory that a
  resident-set watchdog cannot see: ``memfd_create``, ``shmget`` and ``msgget``.
"""

from __future__ import annotations

import errno
import os
import socket
import stat
from typing import Any

CLONE_NEW_FLAGS = (0x00020000, 0x02000000, 0x04000000, 0x08000000, 0x10000000, 0x20000000, 0x40000000, 0x00000080)
"""CLONE_NEWNS, NEWCGROUP, NEWUTS, NEWIPC, NEWUSER, NEWPID, NEWNET, NEWTIME."""

DENIED = (
    "keyctl add_key request_key syslog sethostname setdomainname settimeofday clock_settime clock_adjtime adjtimex "
    "swapon swapoff init_module finit_module delete_module reboot kexec_load kexec_file_load bpf perf_event_open "
    "userfaultfd ptrace process_vm_readv process_vm_writev open_by_handle_at name_to_handle_at mount umount2 "
    "pivot_root chroot fsopen fsconfig fsmount fspick move_mount open_tree mount_setattr unshare setns acct "
    "quotactl lookup_dcookie iopl ioperm vhangup memfd_secret"
).split()
NOT_THERE = ("clone3", "io_uring_setup", "io_uring_enter", "io_uring_register", "openat2")
"""Refused with ENOSYS: glibc falls back from ``clone3`` to ``clone``, whose flags can be checked, and
uses ``openat`` for ``open``; ``openat2`` carries its mode in memory, where no filter can read it."""
UNWATCHED_PROTOCOLS = (262, 132)
"""IPPROTO_MPTCP and IPPROTO_SCTP: stream sockets Landlock's TCP port rules do not see."""
UNACCOUNTED_MEMORY = ("memfd_create", "shmget", "msgget")
FAMILIES = (socket.AF_UNIX, socket.AF_INET, socket.AF_INET6)
SOCK_TYPE_MASK = 0xF
SOCK_PACKET = 10
FILE_TYPE_MASK = 0o170000

_MODE_ARG = {
    "chmod": 1,
    "fchmod": 1,
    "fchmodat": 2,
    "fchmodat2": 2,
    "open": 2,
    "openat": 3,
    "creat": 1,
    "mknod": 1,
    "mknodat": 2,
}
"""Which argument holds the mode, for calls that can set setuid/setgid bits."""
_OPEN_CREATES = {"open": 1, "openat": 2}
"""open's mode only counts with O_CREAT (or O_TMPFILE) in its flags argument."""


class SeccompError(Exception):
    """The filter could not be built or loaded (no libseccomp, or a kernel without seccomp)."""


def _library() -> Any:
    try:
        import pyseccomp
    except (ImportError, OSError, RuntimeError) as error:  # pyseccomp loads libseccomp.so.2 when imported
        raise SeccompError(f"libseccomp is not usable ({error}); install libseccomp2 and pyseccomp") from None
    return pyseccomp


def build(account_memory: bool) -> Any:
    """The filter (a ``pyseccomp.SyscallFilter``), not yet loaded."""
    sc = _library()
    flt = sc.SyscallFilter(sc.ALLOW)
    eperm, enosys = sc.ERRNO(errno.EPERM), sc.ERRNO(errno.ENOSYS)

    def rule(action: int, name: str, *args: Any) -> None:
        try:
            flt.add_rule(action, name, *args)
        except (ValueError, OSError):  # not a system call of this architecture (e.g. open on aarch64)
            pass

    for name in DENIED:
        rule(eperm, name)
    for name in NOT_THERE:
        rule(enosys, name)
    if not account_memory:
        for name in UNACCOUNTED_MEMORY:
            rule(eperm, name)
    for flag in CLONE_NEW_FLAGS:
        rule(eperm, "clone", sc.Arg(0, sc.MASKED_EQ, flag, flag))
    top = max(FAMILIES)
    for family in range(top):
        if family not in FAMILIES:
            rule(sc.ERRNO(errno.EAFNOSUPPORT), "socket", sc.Arg(0, sc.EQ, family))
            rule(sc.ERRNO(errno.EAFNOSUPPORT), "socketpair", sc.Arg(0, sc.EQ, family))
    for protocol in UNWATCHED_PROTOCOLS:
        rule(sc.ERRNO(errno.EPROTONOSUPPORT), "socket", sc.Arg(2, sc.EQ, protocol))
    for name in ("socket", "socketpair"):
        rule(sc.ERRNO(errno.EAFNOSUPPORT), name, sc.Arg(0, sc.GT, top))
        for kind in (socket.SOCK_RAW, SOCK_PACKET):
            rule(eperm, name, sc.Arg(1, sc.MASKED_EQ, SOCK_TYPE_MASK, kind))
    for kind in (stat.S_IFCHR, stat.S_IFBLK):
        rule(eperm, "mknod", sc.Arg(1, sc.MASKED_EQ, FILE_TYPE_MASK, kind))
        rule(eperm, "mknodat", sc.Arg(2, sc.MASKED_EQ, FILE_TYPE_MASK, kind))
    creating = os.O_CREAT
    for name, position in _MODE_ARG.items():
        for bit in (stat.S_ISUID, stat.S_ISGID):
            arg = sc.Arg(position, sc.MASKED_EQ, bit, bit)
            if name in _OPEN_CREATES:
                rule(eperm, name, arg, sc.Arg(_OPEN_CREATES[name], sc.MASKED_EQ, creating, creating))
            else:
                rule(eperm, name, arg)
    return flt


_programs: dict[bool, bytes] = {}


def program(account_memory: bool) -> bytes:
    """The filter as a BPF program for ``bwrap --seccomp`` (compiled once per daemon)."""
    if account_memory not in _programs:
        flt = build(account_memory)
        read, write = os.pipe()
        try:
            with os.fdopen(write, "wb") as sink:
                flt.export_bpf(sink)
            with os.fdopen(read, "rb") as source:
                _programs[account_memory] = source.read()
        except OSError as error:
            raise SeccompError(f"the filter could not be compiled: {error.strerror or error}") from None
    return _programs[account_memory]


def active() -> bool:
    """Whether this process runs under a seccomp filter (``Seccomp: 2`` in its status)."""
    try:
        with open("/proc/self/status") as status:
            return any(line.split() == ["Seccomp:", "2"] for line in status)
    except OSError:
        return False
