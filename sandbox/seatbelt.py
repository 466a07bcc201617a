"""Seatbelt (macOS): an SBPL profile that confines the agent's process, and the argv to run it.

macOS has no Landlock or namespaces; its kernel sandbox takes a profile through
``/usr/bin/sandbox-exec -p PROFILE python ...`` and holds the process and everything it
starts to it. :func:`generate` writes a deny-by-default profile from the same plain data
the Linux mechanisms take: read-write and read-only folders, the network policy, whether
the agent may fork. Seatbelt matches real paths (``/tmp`` is ``/private/tmp``), so every
path is resolved first, and every path is escaped so that no quote or backslash in it
can end the string it sits in.
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
# libraries, framework builds of Python, time zones, certificates and name resolution files.
SYSTEM_READ = (
    "/usr/lib",
    "/usr/share",
    "/System",
    "/Library/Frameworks",
    "/private/var/db/timezone",
    "/private/etc/ssl",
    "/private/etc/hosts",
    "/private/etc/resolv.conf",
    "/private/etc/services",
    "/private/etc/protocols",
    "/private/etc/localtime",
)
DEVICES_READ = ("/dev/urandom", "/dev/random", "/dev/zero")
DEVICES_WRITE = ("/dev/null",)
# getpwuid and friends, logging, notifications: the minimum for a Python process to start and log.
MACH_SERVICES = (
    "com.apple.system.opendirectoryd.libinfo",
    "com.apple.system.notification_center",
    "com.apple.system.logger",
    "com.apple.logd",
)
# Name resolution and proxy settings, only when the network is open at all.
NETWORK_MACH_SERVICES = (
    "com.apple.SystemConfiguration.configd",
    "com.apple.SystemConfiguration.DNSConfiguration",
    "com.apple.networkd",
)
MDNS_SOCKET = "/private/var/run/mDNSResponder"
NETWORK_HOSTS = ("*", "localhost")


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


def _network_rules(network: str | Sequence[str]) -> list[str]:
    if network == "none":
        return []
    dns = [
        f"(allow network-outbound (literal {quote(MDNS_SOCKET)}))",
        "(allow mach-lookup " + " ".join(f"(global-name {quote(s)})" for s in NETWORK_MACH_SERVICES) + ")",
    ]
    if network == "all":
        return ["(allow network*)", *dns]
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
        rules += dns
    return rules


def generate(
    *,
    python_executable: str,
    python_paths: Sequence[str],
    read_write: Sequence[str] = (),
    read_only: Sequence[str] = (),
    network: str | Sequence[str] = "none",
    allow_fork: bool = False,
) -> str:
    """An SBPL profile: deny everything, then allow exactly what the arguments grant.

    ``python_paths``: the Python installation's folders (``sys.prefix``, ``sys.base_prefix``,
    site-packages, corral's own folders), readable. ``read_write``: folders (subpaths) the
    agent may read and write. ``network``: ``"none"``, ``"all"``, or ``"*:PORT"`` /
    ``"localhost:PORT"`` entries for outbound TCP. ``allow_fork``: whether the agent may
    start processes (which may only execute this Python).
    """
    executables = sorted({python_executable, _real(python_executable, "python_executable")})
    writable = sorted({_real(p, "read_write") for p in read_write})
    readable = sorted({_real(p, "read_only") for p in (*read_only, *python_paths)} | set(SYSTEM_READ))
    everything = [*writable, *readable, *executables, *DEVICES_READ, *DEVICES_WRITE]
    lines = [
        "(version 1)",
        "(deny default)",
        "(allow process-exec " + " ".join(f"(literal {quote(p)})" for p in executables) + ")",
        "(allow signal (target self))",
        "(allow process-info* (target self))",
        "(allow sysctl-read)",
        "(allow mach-lookup " + " ".join(f"(global-name {quote(s)})" for s in MACH_SERVICES) + ")",
        "(allow file-read-metadata " + " ".join(f"(literal {quote(p)})" for p in _ancestors(everything)) + ")",
        "(allow file-read* " + " ".join(f"(literal {quote(p)})" for p in (*DEVICES_READ, *DEVICES_WRITE)) + ")",
        "(allow file-write* " + " ".join(f"(literal {quote(p)})" for p in DEVICES_WRITE) + ")",
        "(allow file-read* " + " ".join(f"(subpath {quote(p)})" for p in readable) + ")",
    ]
    if writable:
        lines.append("(allow file-read* file-write* " + " ".join(f"(subpath {quote(p)})" for p in writable) + ")")
    if allow_fork:
        lines += ["(allow process-fork)", "(allow ipc-posix-sem)"]
    lines += _network_rules(network)
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
