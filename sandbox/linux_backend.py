"""The Linux sandbox backend: network namespace, then the agent's user, then Landlock.

Daemon side, :class:`LinuxBackend` detects what the kernel offers and plans each attempt.
Child side, :func:`confine` runs in the launcher before any thread or agent code, in the
only order that works: the namespace needs root (or a user namespace) and must come
before the user is dropped; Landlock comes last so it confines the final user. Dropping
the user clears the parent-death signal, so it is set again right after.
"""

from __future__ import annotations

import os
import sys
from collections.abc import Mapping, Sequence
from typing import Any

from corral.sandbox import landlock, netns, users
from corral.sandbox.backend import Plan, Protection, Request, SandboxRefused, demanded


class LinuxBackend:
    """Landlock (filesystem, TCP ports, signal and abstract-socket scopes), a private network
    namespace, and a dedicated user when the daemon is root."""

    name = "linux"

    def usable(self) -> bool:
        return sys.platform.startswith("linux")

    def detect(self, users_wanted: Sequence[str] = ()) -> dict[str, Protection]:
        ll = landlock.detect()
        ns = netns.detect()
        found = {
            "filesystem": Protection(
                "filesystem", ll.available, f"landlock abi {ll.abi}" if ll.available else "", ll.reason
            ),
            "tcp_ports": Protection(
                "tcp_ports",
                ll.available and ll.abi >= 4,
                "landlock tcp" if ll.abi >= 4 else "",
                "TCP connect and bind limited to the listed ports"
                if ll.abi >= 4
                else f"Landlock TCP rules need ABI 4; {ll.reason}",
            ),
            "network": Protection("network", ns.available, f"netns:{ns.mode}" if ns.available else "", ns.reason),
            "signals": Protection(
                "signals",
                ll.available and ll.abi >= 6,
                "landlock scopes" if ll.abi >= 6 else "",
                "signals and abstract Unix sockets outside the agent's own processes are denied"
                if ll.abi >= 6
                else f"signal scoping needs Landlock ABI 6; {ll.reason}",
            ),
        }
        for name in users_wanted:
            support = users.detect(name)
            found[f"user:{name}"] = Protection(f"user:{name}", support.available, f"user:{name}", support.reason)
        return found

    def plan(self, request: Request, offered: Mapping[str, Protection]) -> Plan:
        plan = Plan(self.name, module=__name__)
        wanted = demanded(request)
        fs = offered["filesystem"]
        user = offered.get(f"user:{request.user}") if request.user else None
        if user is not None and user.available:
            plan.account = users.resolve(str(request.user))
            blocked = users.unreachable(plan.account, request.read_only)
            if blocked:
                user = Protection(user.name, False, "", f"user {request.user!r} cannot read {', '.join(blocked)}")
        if "user" in wanted and (user is None or not user.available):
            plan.missing.append(f"user: {user.reason if user else 'not detected'}")
            plan.account = None
        if not fs.available:
            plan.missing.append(f"filesystem: {fs.reason}")
        signals = offered["signals"]
        if not signals.available and plan.account is None:
            plan.missing.append(f"signals: {signals.reason}; running the agent as its own user would also stop them")
        connect, bind = self._ports(request, offered, plan)
        spec: dict[str, Any] = {"netns": request.network == "none" and offered["network"].available}
        if plan.account is not None:
            a = plan.account
            spec["user"] = {"name": a.name, "uid": a.uid, "gid": a.gid, "groups": list(a.groups)}
        if fs.available:
            spec["landlock"] = {
                "read_write": list(request.read_write),
                "read_only": list(request.read_only),
                "tcp_connect": connect,
                "tcp_bind": bind,
            }
        spec["required"] = [] if request.degraded_ok else wanted
        plan.spec = spec
        return plan

    @staticmethod
    def _ports(request: Request, offered: Mapping[str, Protection], plan: Plan) -> tuple[list[int] | None, ...]:
        """Landlock TCP port lists for the network policy (None: not restricted)."""
        if request.network == "all":
            return None, None
        tcp = offered["tcp_ports"].available
        if request.network == "none":
            if not offered["network"].available:
                why = offered["network"].reason
                if tcp:
                    plan.missing.append(f"network: only TCP can be closed (Landlock); UDP and DNS stay open: {why}")
                else:
                    plan.missing.append(f"network: {why}")
            return ([], []) if tcp else (None, None)
        if not tcp:
            plan.missing.append(f"network: {offered['tcp_ports'].reason}")
            return None, None
        hosts = sorted({e.host for e in request.endpoints if e.host != "*"})
        if hosts:
            plan.notes.append(
                f"network: Linux limits TCP by port only; hosts {', '.join(hosts)} are not enforced, UDP stays open"
            )
        return sorted({e.port for e in request.endpoints}), []


def confine(spec: dict[str, Any]) -> list[str]:
    """Child side: namespace, user, Landlock, in that order; returns what applied.

    A failure of anything in ``spec["required"]`` raises :class:`SandboxRefused`; others
    are recorded as ``missing:NAME`` and the agent runs without them.
    """
    required = set(spec.get("required", ()))
    applied: list[str] = []

    def failed(name: str, error: Exception) -> None:
        if name in required:
            raise SandboxRefused(f"{name}: {error}") from None
        applied.append(f"missing:{name}")

    if spec.get("netns"):
        try:
            applied += netns.enter().labels()
        except netns.NetnsError as error:
            failed("network", error)
    if spec.get("user"):
        account = users.Account(
            spec["user"]["name"], spec["user"]["uid"], spec["user"]["gid"], tuple(spec["user"]["groups"])
        )
        try:
            applied += users.drop_privileges(account).labels()
        except users.PrivilegeDropError as error:
            failed("user", error)
        else:
            applied += _after_drop(spec)
    rules = spec.get("landlock")
    if rules:
        own = os.path.realpath("/proc/self")  # the agent's own /proc entry only, never others'
        system_rw, system_ro = landlock.system_paths()
        try:
            result = landlock.apply(
                [*system_rw, *rules["read_write"]],
                [*system_ro, *rules["read_only"], own],
                tcp_connect=rules["tcp_connect"],
                tcp_bind=rules["tcp_bind"],
            )
        except landlock.LandlockError as error:
            failed("filesystem", error)
        else:
            applied += result.labels()
    return applied


def _after_drop(spec: dict[str, Any]) -> list[str]:
    """Changing uid cleared the parent-death signal; RLIMIT_NPROC now counts the agent's own uid."""
    from corral.sandbox import linux
    from corral.sandbox.launcher import apply_rlimits

    applied = []
    if linux.set_parent_death_signal(spec["parent_pid"]):
        applied.append("pdeathsig")
    if spec.get("processes"):
        applied += apply_rlimits({"processes": spec["processes"]})
    return [label for label in applied if label != "rlimit:core=0"]
