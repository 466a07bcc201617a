"""What a sandbox backend is: the contract between the daemon and a platform's confinement.

A backend is registered through the ``corral_register_sandbox_backends`` hook (the Linux
and macOS ones are built-in plugins). For each attempt the daemon hands it a
:class:`Confinement`; the backend answers with a :class:`Plan`: the argv prefix to start the
launcher under (``sandbox-exec`` on macOS), the module and JSON spec the launcher applies
to itself before any agent code runs, and which protections the policy asks for that
this machine cannot give. The daemon refuses to start the agent when anything is missing,
unless its policy says ``degraded_ok``.

A child-side module named by a plan has one function, ``confine(spec: dict) -> list[str]``,
called in the launcher while it is still single-threaded; it returns labels for what it
applied and raises :class:`SandboxRefused` when a required protection fails.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Protocol

from corral.errors import CorralError
from corral.sandbox.spec import HostPort

ALWAYS = ("filesystem", "signals", "processes", "ipc", "mounts", "privileges", "syscalls")
"""What every policy asks for; besides these, ``network`` unless it is ``"all"``, and ``user``
when a user is configured. ``processes``: no other process can be seen, signalled,
re-limited or outlive the run; ``ipc``: no IPC shared outside the run; ``mounts``: no path
(Unix sockets and devices included) outside the grants; ``privileges``: no capability in the
host's user namespace; ``syscalls``: a system-call filter."""


class SandboxRefused(CorralError):
    """Operator: the agent was not started because a protection its policy asks for is missing here."""


@dataclass(frozen=True)
class Protection:
    """One protection on this machine: whether it works, by what mechanism, and why (not)."""

    name: str
    available: bool
    mechanism: str
    reason: str
    checked: str = ""
    """What the verdict was checked against (a probe process, a kernel query), for ``corral doctor``."""


@dataclass(frozen=True)
class Confinement:
    """One attempt's confinement, as the daemon resolved it from the agent's policy.

    ``read_only`` already holds the Python installation, corral, the agent's code and its
    plugins; ``read_write`` the workdir.
    """

    agent: str
    workdir: Path
    read_write: tuple[str, ...]
    read_only: tuple[str, ...]
    network: str
    endpoints: tuple[HostPort, ...]
    user: str | None
    degraded_ok: bool
    python: str
    home: str | None = None
    """The corral home: no agent may see it but for its own workdir inside it."""
    programs: tuple[str, ...] = ()
    """Folders, readable besides, whose programs the agent may run where a backend limits which
    ones do (Seatbelt): a command agent's ``code`` and its ``read_only`` grants."""


@dataclass
class Plan:
    """How one attempt is confined. ``missing`` holds a sentence per protection asked for
    and not available; ``notes`` what is enforced less precisely than asked."""

    backend: str
    module: str | None = None
    spec: dict[str, Any] = field(default_factory=dict)
    wrap: list[str] = field(default_factory=list)
    missing: list[str] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)
    account: Any = None
    """The :class:`corral.sandbox.users.Account` the agent runs as, when a user is dropped to."""
    namespaced: bool = False
    """The launcher runs in its own PID namespace under ``wrap``, which relays its exit status as
    ``128 + signal``; inside, the launcher's parent is pid 1."""
    applied: list[str] = field(default_factory=list)
    """What ``wrap`` applies before the launcher runs (the daemon records it with the run)."""
    seccomp: bool = False
    """``wrap`` loads the agent's system-call filter (:mod:`corral.sandbox.seccomp`) from a file
    descriptor the daemon adds as ``--seccomp FD``."""


class SandboxBackend(Protocol):
    """A platform's confinement. ``detect`` may be slow (it can start a probe process): the
    daemon calls it once and caches the answer."""

    name: str

    def usable(self) -> bool:
        """Whether this backend is for the platform the daemon runs on."""
        ...

    def detect(self, users: Sequence[str] = ()) -> dict[str, Protection]:
        """Every protection this machine offers, keyed by name; ``user:NAME`` for each user asked about."""
        ...

    def plan(self, request: Confinement, offered: Mapping[str, Protection]) -> Plan:
        """The confinement of one attempt, given what :meth:`detect` found."""
        ...


def demanded(request: Confinement) -> list[str]:
    """The protections a request's policy asks for."""
    wanted = list(ALWAYS)
    if request.network != "all":
        wanted.append("network")
    if request.user:
        wanted.append("user")
    return wanted


class NoBackend:
    """Where no registered backend fits the platform: nothing can be confined."""

    name = "none"

    def usable(self) -> bool:
        return True

    def detect(self, users: Sequence[str] = ()) -> dict[str, Protection]:
        why = "no sandbox backend supports this platform; install a plugin that provides one"
        found = {name: Protection(name, False, "", why) for name in (*ALWAYS, "network")}
        found.update({f"user:{user}": Protection(f"user:{user}", False, "", why) for user in users})
        return found

    def plan(self, request: Confinement, offered: Mapping[str, Protection]) -> Plan:
        why = "no sandbox backend supports this platform"
        return Plan(self.name, missing=[f"{name}: {why}" for name in demanded(request)])
