"""Seatbelt (macOS): an SBPL profile that confines the agent's process, and the argv to run it.

macOS has no Landlock or namespaces; its kernel sandbox takes a profile through
``/usr/bin/sandbox-exec -p PROFILE python ...`` and holds the process and everything it
starts to it. :func:`generate` writes a deny-by-default profile from the same plain data
the Linux mechanisms take: read-write and read-only folders, the network policy, whether
the agent may fork, the folders where it may use Unix sockets and the daemon's own sockets.

The profile is written against a hostile agent: no Unix socket outside its workdir (the
control socket and supervisord's are also denied by name, last), no system sockets
(routing, kernel control, raw link layer), no process outside its own sandbox to see,
signal or inspect, no file metadata or device node outside its workdir, no sysctl write
and only a short list of reads, one Mach service (user names) unless the network is
open, no shared memory and only multiprocessing's semaphores. docs/sandbox.md says what
Seatbelt cannot express. Seatbelt matches real paths (``/tmp`` is ``/private/tmp``), so
every path is resolved first, and every path is escaped so that no quote or backslash in
it can end the string it sits in.
"""

from __future__ import annotations

import os
import subprocess
import sys
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import PurePosixPath

from corral.errors import CorralError

SANDBOX_EXEC = "/usr/bin/sandbox-exec"

# Read-only system locations a Python process needs on macOS: dyld's shared cache and system
# libraries, framework builds of Python, Homebrew's installed packages (the libraries a
# Homebrew Python links and the certificates its OpenSSL reads, never the rest of its var/
# or etc/, where services keep their data), time zones, certificates, name resolution
# files, and the system's programs with what /bin/sh reads to pick the shell.
SYSTEM_READ = (
    "/bin",
    "/usr/bin",
    "/usr/lib",
    "/usr/share",
    "/System",
    "/Library/Frameworks",
    "/opt/homebrew/Cellar",
    "/opt/homebrew/Frameworks",
    "/opt/homebrew/etc/ca-certificates",
    "/opt/homebrew/etc/openssl@3",
    "/opt/homebrew/lib",
    "/opt/homebrew/opt",
    "/usr/local/Cellar",
    "/usr/local/Frameworks",
    "/usr/local/etc/ca-certificates",
    "/usr/local/etc/openssl@3",
    "/usr/local/lib",
    "/usr/local/opt",
    "/private/var/db/timezone",
    "/private/var/select",
    "/private/etc/ssl",
    "/private/etc/hosts",
    "/private/etc/resolv.conf",
    "/private/etc/services",
    "/private/etc/protocols",
    "/private/etc/localtime",
)
# Folders whose programs the agent may execute (the shell tool's /bin/sh and what it runs),
# except those with a set-user-id or set-group-id bit.
SYSTEM_PROGRAMS = ("/bin", "/usr/bin")
# The top-level links into /private: a path through them (/etc/hosts, /var/run/...) needs each
# link's metadata.
TOP_LINKS = ("/etc", "/tmp", "/var")
DEVICES_READ = ("/dev/random", "/dev/urandom", "/dev/zero")
DEV_NULL = "/dev/null"
OWN_FDS = "/dev/fd"
# getpwuid and friends: the one service every Python process needs. Nothing else: no
# securityd (the Keychain), logd, notifyd, FSEvents, launchservicesd or any other daemon.
MACH_SERVICES = ("com.apple.system.opendirectoryd.libinfo",)
# Name resolution and proxy settings, only when the network is open at all.
NETWORK_MACH_SERVICES = (
    "com.apple.SystemConfiguration.DNSConfiguration",
    "com.apple.SystemConfiguration.configd",
    "com.apple.dnssd.service",
    "com.apple.networkd",
)
MDNS_SOCKET = "/private/var/run/mDNSResponder"
NETWORK_HOSTS = ("*", "localhost")
# sysctl names Python, libSystem and numeric libraries read (CPU count and features, page
# size, the OS version, uname's fields). Not the process table (kern.proc.*), the kernel
# message buffer (kern.msgbuf), boot arguments, routes or anything else.
SYSCTL_NAMES = (
    "hw.activecpu",
    "hw.busfrequency_compat",
    "hw.byteorder",
    "hw.cachelinesize",
    "hw.cachelinesize_compat",
    "hw.cpufamily",
    "hw.cpufrequency",
    "hw.cpufrequency_compat",
    "hw.cpusubtype",
    "hw.cputype",
    "hw.l1dcachesize",
    "hw.l1dcachesize_compat",
    "hw.l1icachesize",
    "hw.l1icachesize_compat",
    "hw.l2cachesize",
    "hw.l2cachesize_compat",
    "hw.l3cachesize",
    "hw.l3cachesize_compat",
    "hw.logicalcpu",
    "hw.logicalcpu_max",
    "hw.machine",
    "hw.memsize",
    "hw.model",
    "hw.ncpu",
    "hw.nperflevels",
    "hw.packages",
    "hw.pagesize",
    "hw.pagesize_compat",
    "hw.physicalcpu",
    "hw.physicalcpu_max",
    "hw.tbfrequency_compat",
    "hw.vectorunit",
    "kern.argmax",
    "kern.hostname",
    "kern.maxfilesperproc",
    "kern.maxproc",
    "kern.ngroups",
    "kern.osproductversion",
    "kern.osrelease",
    "kern.ostype",
    "kern.osvariant_status",
    "kern.osversion",
    "kern.secure_kernel",
    "kern.usrstack64",
    "kern.version",
    "machdep.cpu.brand_string",
    "machdep.ptrauth_enabled",
    "sysctl.proc_cputype",
    "sysctl.proc_translated",
)
SYSCTL_PREFIXES = ("hw.optional.", "hw.perflevel", "machdep.cpu.")
# Python's multiprocessing names its POSIX semaphores /mp-RANDOM.
SEMAPHORE_NAMES = "^/?mp-"


class SeatbeltError(CorralError):
    """Operator: the Seatbelt profile cannot be built from this policy; the message names the value and fix."""


@dataclass(frozen=True)
class SeatbeltSupport:
    """Whether ``sandbox-exec`` works on this machine, and why (not)."""

    available: bool
    reason: str


def quote(text: str) -> str:
    """An SBPL string literal holding ``text`` exactly: backslashes and quotes escaped.

    Control characters are refused rather than escaped: no real path needs them, and
    refusing leaves nothing to how the profile reader treats them.
    """
    bad = [c for c in text if ord(c) < 0x20 or ord(c) == 0x7F]
    if bad:
        raise SeatbeltError(f"{text!r} contains the control character {bad[0]!r}; rename it without one")
    return '"' + text.replace("\\", "\\\\").replace('"', '\\"') + '"'


def _real(path: str, what: str) -> str:
    if not path or "\0" in path:
        raise SeatbeltError(f"{what} path {path!r} is empty or contains a NUL byte; give an absolute path")
    if not os.path.isabs(path):
        raise SeatbeltError(f"{what} path {path!r} is relative; give an absolute path")
    return os.path.realpath(path)


def _ancestors(paths: Sequence[str]) -> list[str]:
    """Every folder above the given paths ("/" included): Python stats each one when it resolves a path."""
    return sorted({str(parent) for path in paths for parent in PurePosixPath(path).parents})


def _rule(operations: str, filters: Sequence[str], action: str = "allow") -> str:
    """``(ACTION OPERATIONS FILTER...)``, one filter per line when there are several."""
    if len(filters) <= 1:
        return f"({action} {operations}{''.join(' ' + f for f in filters)})"
    return f"({action} {operations}\n" + "\n".join(f"  {f}" for f in filters) + ")"


def _each(kind: str, paths: Sequence[str]) -> list[str]:
    return [f"({kind} {quote(p)})" for p in paths]


def _names(kind: str, names: Sequence[str]) -> list[str]:
    return [f"({kind} {quote(n)})" for n in names]


def _dns() -> list[str]:
    return [
        f"(allow network-outbound (remote unix-socket (path-literal {quote(MDNS_SOCKET)})))",
        _rule("mach-lookup", _names("global-name", NETWORK_MACH_SERVICES)),
    ]


def _network_rules(network: str | Sequence[str]) -> list[str]:
    """TCP and UDP only, never ``network*``: that would open every Unix socket on the machine too."""
    if network == "none":
        return []
    if network == "all":
        return [
            "(allow network-outbound (remote tcp) (remote udp))",
            "(allow network-bind network-inbound (local tcp) (local udp))",
            *_dns(),
        ]
    if isinstance(network, str):
        raise SeatbeltError(f"network {network!r} is not valid; use 'none', 'all' or a list of 'host:port' entries")
    rules = []
    for entry in network:
        host, sep, port = str(entry).rpartition(":")
        if not sep or host not in NETWORK_HOSTS:
            raise SeatbeltError(
                f"network entry {entry!r} is not valid on macOS: Seatbelt filters TCP by port and knows only the "
                "hosts '*' and 'localhost'; write '*:443' or 'localhost:8080' and restrict hosts elsewhere"
            )
        if not port.isdigit() or not 1 <= int(port) <= 65535:
            raise SeatbeltError(f"network entry {entry!r} has no valid port; use a number from 1 to 65535")
        rules.append(f"(allow network-outbound (remote tcp {quote(f'{host}:{int(port)}')}))")
    if any(rule.startswith('(allow network-outbound (remote tcp "*:') for rule in rules):
        rules += _dns()
    return rules


def _door_rules(port: int) -> list[str]:
    """Bind, accept and connect on one loopback TCP port: the door's, chosen by the daemon."""
    if isinstance(port, bool) or not isinstance(port, int) or not 1 <= port <= 65535:
        raise SeatbeltError(f"door port {port!r} is not valid; it must be a number from 1 to 65535")
    where = quote(f"localhost:{port}")
    return [
        f"(allow network-bind network-inbound (local tcp {where}))",
        f"(allow network-outbound (remote tcp {where}))",
    ]


def generate(
    *,
    python_executable: str,
    python_paths: Sequence[str],
    read_write: Sequence[str] = (),
    read_only: Sequence[str] = (),
    network: str | Sequence[str] = "none",
    allow_fork: bool = False,
    programs: Sequence[str] = (),
    unix_sockets: Sequence[str] = (),
    daemon_sockets: Sequence[str] = (),
    door_port: int | None = None,
) -> str:
    """An SBPL profile: deny everything, then allow exactly what the arguments grant.

    ``python_paths``: the Python installation's folders (``sys.prefix``, ``sys.base_prefix``,
    site-packages, corral's own folders), readable. ``read_write``: folders (subpaths) the
    agent may read and write. ``network``: ``"none"``, ``"all"`` (TCP and UDP), or
    ``"*:PORT"`` / ``"localhost:PORT"`` entries for outbound TCP. ``allow_fork``: whether the
    agent may start processes. ``programs``: folders whose programs may run besides this Python
    and the system's (a command agent's code and read-only grants; they must be readable too).
    ``unix_sockets``: folders in which it may bind and connect
    Unix sockets (the workdir); no other Unix socket is reachable. ``daemon_sockets``: the
    daemon's and supervisord's sockets, denied last so that no grant can open them.
    ``door_port``: the run's model door, a TCP port on the loopback that the agent's process
    binds, accepts on and connects to (and no other local port for it, unless ``network`` opens it).

    Rules for one operation are matched last first, so the profile reads top down: what
    ``(deny default)`` might not cover, what is allowed, and last what is never allowed.
    """
    executables = sorted({python_executable, _real(python_executable, "python_executable")})
    program_dirs = (*SYSTEM_PROGRAMS, *sorted({_real(p, "programs") for p in programs}))
    writable = sorted({_real(p, "read_write") for p in read_write})
    readable = sorted({_real(p, "read_only") for p in (*read_only, *python_paths)} | set(SYSTEM_READ))
    socket_dirs = sorted({_real(p, "unix_sockets") for p in unix_sockets})
    never_sockets = sorted({_real(p, "daemon_sockets") for p in daemon_sockets})
    devices = (*DEVICES_READ, DEV_NULL)
    everything = [*writable, *readable, *executables, *devices, OWN_FDS]
    lines = [
        "(version 1)",
        "(deny default)",
        "; not covered by (deny default) on every macOS release",
        "(deny process-info*)",
        "(if (defined? 'nvram*) (deny nvram*))",
        "(if (defined? 'iokit-get-properties) (deny iokit-get-properties))",
        "; processes: this Python, the system's and a command agent's programs; signals and process info in this run",
        _rule("process-exec", _each("literal", executables)),
        _rule("process-exec", _each("subpath", program_dirs)),
        "(allow signal (target same-sandbox))",
        "(allow process-info* (target same-sandbox))",
    ]
    if allow_fork:
        lines.append("(allow process-fork)")
    lines += [
        "; files: read the system, Python and the read-only grants; write only the read-write grants",
        _rule("file-read-metadata", _each("literal", sorted({*_ancestors(everything), *TOP_LINKS}))),
        _rule("file-read*", _each("subpath", readable)),
        _rule("file-read*", [*_each("literal", devices), *_each("subpath", (OWN_FDS,))]),
        f"(allow file-write-data (literal {quote(DEV_NULL)}))",
    ]
    if writable:
        lines.append(_rule("file-read* file-write*", _each("subpath", writable)))
    lines += [
        "; sysctl: read the names Python and its libraries ask for; write none",
        _rule("sysctl-read", [*_names("sysctl-name", SYSCTL_NAMES), *_names("sysctl-name-prefix", SYSCTL_PREFIXES)]),
        "; Mach services: user and group names only",
        _rule("mach-lookup", _names("global-name", MACH_SERVICES)),
        "; IPC: POSIX semaphores named like multiprocessing's; no shared memory, no SysV IPC",
    ]
    if allow_fork:
        lines.append(f'(allow ipc-posix-sem (ipc-posix-name-regex #"{SEMAPHORE_NAMES}"))')
    lines += [
        "; Unix sockets: bind and connect only inside the workdir; no other socket domain (raw, route, system)",
        "(allow system-socket (socket-domain AF_UNIX))",
    ]
    for folder in socket_dirs:
        lines += [
            f"(allow network-bind network-inbound (local unix-socket (subpath {quote(folder)})))",
            f"(allow network-outbound (remote unix-socket (subpath {quote(folder)})))",
        ]
    network_rules = _network_rules(network)
    if network_rules:
        lines += ["; network", *network_rules]
    if door_port is not None:
        lines += ["; the model door: this run's own port on the loopback", *_door_rules(door_port)]
    lines += [
        "; never, whatever a rule above allows",
        "(deny file-write-setugid)",
        "(deny file-write-create (vnode-type BLOCK-DEVICE) (vnode-type CHARACTER-DEVICE))",
        "(deny process-exec (file-mode #o4000) (file-mode #o2000))",
        "(deny sysctl-write)",
        "(if (defined? 'file-link) (deny file-link))",
    ]
    if never_sockets:
        filters = [f"(remote unix-socket (path-literal {quote(p)}))" for p in never_sockets]
        lines.append(_rule("network-outbound", filters, action="deny"))
    return "\n".join(lines) + "\n"


def command(profile: str, python_executable: str, args: Sequence[str]) -> list[str]:
    """The argv that runs ``python_executable args...`` under ``profile``."""
    return [SANDBOX_EXEC, "-p", profile, python_executable, *args]


def detect(timeout: float = 10.0) -> SeatbeltSupport:
    """Whether ``sandbox-exec`` exists and can start a process here (not inside another sandbox); never raises."""
    if sys.platform != "darwin":
        return SeatbeltSupport(False, f"Seatbelt is a macOS feature; this machine runs {sys.platform}")
    if not os.access(SANDBOX_EXEC, os.X_OK):
        return SeatbeltSupport(False, f"{SANDBOX_EXEC} is missing or not executable on this Mac")
    try:
        result = subprocess.run(
            [SANDBOX_EXEC, "-p", "(version 1)(allow default)", "/usr/bin/true"],
            capture_output=True,
            text=True,
            timeout=timeout,
            check=False,
        )
    except (OSError, subprocess.SubprocessError) as error:
        return SeatbeltSupport(False, f"{SANDBOX_EXEC} could not be started: {error}")
    if result.returncode != 0:
        said = result.stderr.strip() or f"exit status {result.returncode}"
        return SeatbeltSupport(False, f"{SANDBOX_EXEC} cannot apply a profile here (inside another sandbox?): {said}")
    return SeatbeltSupport(True, f"{SANDBOX_EXEC} applies profiles on this Mac")
