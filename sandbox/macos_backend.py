"""The macOS sandbox backend: a Seatbelt profile through ``sandbox-exec``, and the agent's user.

The profile is generated per attempt from the request (:func:`corral.sandbox.seatbelt.generate`)
and the launcher is started under it, so it holds from the first instruction of Python.
Unix sockets are usable only inside the workdir, and the daemon's control socket and
supervisord's (in the documented layout, under the corral home) are denied by name as
well. macOS ignores ``RLIMIT_AS``; the daemon's psutil watchdog (``limits.memory_mb``) is
the memory limit there, and the profile forbids the shared memory it could not see.
Child side, :func:`confine` only drops to the agent's user, then applies
``RLIMIT_NPROC`` for that user (a root launcher skips it).
"""

from __future__ import annotations

import os
import socket
import sys
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import psutil

from corral.sandbox import seatbelt, users
from corral.sandbox.backend import Confinement, Plan, Protection, SandboxRefused, demanded

HELD = {
    "filesystem": "reads only the system, Python and the read-only grants; writes, metadata changes and "
    "device nodes only in the read-write grants",
    "signals": "signals only to processes of the same sandbox (the run's own)",
    "processes": "no process outside the run can be seen, signalled, inspected or reniced; a process that "
    "double-forks can outlive a SIGKILLed daemon (Seatbelt has no PID namespace; the launcher's parent watch "
    "and the daemon's tree kill cover the rest)",
    "ipc": "no POSIX or SysV shared memory, no SysV queues or semaphores; POSIX semaphores only under "
    "multiprocessing's /mp- names",
    "mounts": "no Unix socket outside the workdir (the control socket and supervisord's denied by name), no "
    "device node, no FSEvents",
    "syscalls": "Seatbelt's operation rules stand in for a system-call filter: no sysctl write, system socket "
    "(route, kernel control, raw link layer), kernel extension, NVRAM, Keychain or other Mach service",
    "network": "outbound TCP by port, or none",
    "tcp_ports": "outbound TCP limited to the listed ports (hosts '*' and 'localhost' only)",
}
CHECKED = "ran /usr/bin/true under sandbox-exec with a profile; the generated profile's rules are unit-tested"


class MacBackend:
    """Seatbelt (files, sockets, network, signals, IPC) and a dedicated user when the daemon is root."""

    name = "macos"

    def usable(self) -> bool:
        return sys.platform == "darwin"

    def detect(self, users_wanted: Sequence[str] = ()) -> dict[str, Protection]:
        support = seatbelt.detect()
        mechanism = "seatbelt" if support.available else ""
        found = {
            name: Protection(name, support.available, mechanism, what if support.available else support.reason, CHECKED)
            for name, what in HELD.items()
        }
        found["privileges"] = _privileges(support)
        for name in users_wanted:
            user = users.detect(name)
            found[f"user:{name}"] = Protection(
                f"user:{name}",
                user.available,
                f"user:{name}",
                user.reason,
                "the user database, and the mode bits of the Python installation and corral for that account",
            )
        return found

    def plan(self, request: Confinement, offered: Mapping[str, Protection]) -> Plan:
        plan = Plan(self.name, module=__name__)
        wanted = demanded(request)
        if request.user:
            user = offered.get(f"user:{request.user}")
            if user is None or not user.available:
                plan.missing.append(f"user: {user.reason if user else 'not detected'}")
            else:
                plan.account = users.resolve(request.user)
                blocked = users.unreachable(plan.account, [str(request.workdir.parent), *request.read_only])
                if blocked:
                    plan.missing.append(
                        f"user: {request.user!r} cannot reach {', '.join(blocked)} (macOS has no bind mounts: every "
                        "folder above its workdir and its read-only paths must be searchable by it, chmod o+x)"
                    )
                    plan.account = None
        for name in ("filesystem", "signals", "processes", "ipc", "mounts", "syscalls", "network"):
            if name in wanted and not offered[name].available:
                plan.missing.append(f"{name}: {offered[name].reason}")
        privileges = offered["privileges"]
        if not privileges.available and plan.account is None:
            plan.missing.append(f"privileges: {privileges.reason}")
        door_port = _free_port()
        if offered["filesystem"].available:
            profile = seatbelt.generate(
                python_executable=request.python,
                python_paths=[p for p in request.read_only if p.startswith("/")],
                read_write=list(request.read_write),
                network=self._network(request, plan),
                allow_fork=True,
                programs=list(request.programs),
                unix_sockets=[str(request.workdir)],
                daemon_sockets=daemon_sockets(request.home),
                door_port=door_port,
            )
            plan.wrap = [seatbelt.SANDBOX_EXEC, "-p", profile]
        owner = plan.account.uid if plan.account is not None else os.geteuid()
        spec: dict[str, Any] = {
            "required": [] if request.degraded_ok else wanted,
            "seatbelt": bool(plan.wrap),
            "processes_in_use": _processes_of(owner),
            "door_port": door_port,
        }
        if plan.account is not None:
            a = plan.account
            spec["user"] = {"name": a.name, "uid": a.uid, "gid": a.gid, "groups": list(a.groups)}
        plan.spec = spec
        return plan

    @staticmethod
    def _network(request: Confinement, plan: Plan) -> str | list[str]:
        """Seatbelt filters outbound TCP by port, with the hosts ``*`` and ``localhost`` only."""
        if request.network != "list":
            return request.network
        entries = []
        for endpoint in request.endpoints:
            host = endpoint.host if endpoint.host in seatbelt.NETWORK_HOSTS else "*"
            entries.append(f"{host}:{endpoint.port}")
        hosts = sorted({e.host for e in request.endpoints} - set(seatbelt.NETWORK_HOSTS))
        if hosts:
            plan.notes.append(f"network: Seatbelt limits TCP by port only; hosts {', '.join(hosts)} are not enforced")
        return sorted(set(entries))


def daemon_sockets(home: str | None) -> list[str]:
    """The control socket and supervisord's (in the documented layout) of the corral ``home``."""
    if home is None:
        return []
    return [str(Path(home) / "corral.sock"), str(Path(home) / "supervisor" / "supervisor.sock")]


def _privileges(support: seatbelt.SeatbeltSupport) -> Protection:
    """A root daemon's agent is root inside the profile unless it has its own ``user``."""
    if os.geteuid() == 0:
        return Protection(
            "privileges",
            False,
            "",
            "the daemon runs as root, so an agent without its own user would run as root: Seatbelt confines "
            "root but leaves it root's other privileges (raw IP sockets, raising its priority); give it a user",
            "the daemon's effective uid",
        )
    return Protection(
        "privileges",
        support.available,
        f"uid {os.geteuid()}" if support.available else "",
        "agents run as the daemon's unprivileged user" if support.available else support.reason,
        "the daemon's effective uid",
    )


def _processes_of(uid: int) -> int:
    """Processes the uid has now, for ``RLIMIT_NPROC``: the launcher's profile does not let it list them."""
    count = 0
    for process in psutil.process_iter(["uids"]):
        uids = process.info["uids"]
        count += bool(uids and uids.real == uid)
    return count


def confine(spec: dict[str, Any]) -> list[str]:
    """Child side: Seatbelt already holds (``sandbox-exec`` started us); drop to the agent's user.

    After the drop, ``RLIMIT_NPROC`` is set for the account (the launcher, still root,
    skipped it), counted from ``processes_in_use`` because the profile hides the process table.
    """
    applied = ["seatbelt"] if spec.get("seatbelt") else []
    if spec.get("user"):
        account = users.Account(
            spec["user"]["name"], spec["user"]["uid"], spec["user"]["gid"], tuple(spec["user"]["groups"])
        )
        try:
            applied += users.drop_privileges(account).labels()
        except users.PrivilegeDropError as error:
            if "user" in spec.get("required", ()):
                raise SandboxRefused(f"user: {error}") from None
            applied.append("missing:user")
        else:
            applied += _after_drop(spec)
    return applied


def _after_drop(spec: dict[str, Any]) -> list[str]:
    from corral.sandbox.launcher import apply_rlimits

    if not spec.get("processes"):
        return []
    applied = apply_rlimits({"processes": spec["processes"]}, in_use=spec.get("processes_in_use"))
    return [label for label in applied if label.startswith("rlimit:processes")]


def _free_port() -> int:
    """A loopback port free now, for the model door: a Seatbelt profile is fixed before the
    launcher starts, so the port must be named in it. Another process could take it in the
    moment between; the launcher's bind then fails and the run fails with that error."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])
