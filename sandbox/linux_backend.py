"""The Linux sandbox backend: bubblewrap's namespaces, then the agent's user, Landlock and seccomp.

Daemon side, :class:`LinuxBackend` detects what the kernel offers and plans each attempt:
the launcher is started under ``bwrap`` (:mod:`corral.sandbox.bwrap`), which gives it its
own user (or, for a dedicated ``user``, none: the launcher drops to the account), PID,
IPC, mount, UTS and, for ``network = "none"``, network namespace. bubblewrap also loads the
seccomp filter (:mod:`corral.sandbox.seccomp`). Child side, :func:`confine` runs in the
launcher before any thread or agent code: the user is dropped first (with the two
capabilities bubblewrap left for it), then Landlock, so it confines the final user; then
it checks the filter is in force. Dropping the user clears the parent-death signal, so
it is set again right after.
"""

from __future__ import annotations

import os
import sys
from collections.abc import Mapping, Sequence
from typing import Any

from corral.sandbox import bwrap, landlock, seccomp, users
from corral.sandbox.backend import Confinement, Plan, Protection, SandboxRefused, demanded
from corral.sandbox.launcher import apply_rlimits, user_process_count

NAMESPACED = {
    "processes": "a PID namespace: no other process can be seen, signalled, traced, re-limited, reniced or "
    "pinned, and the run's every process dies with it",
    "ipc": "an IPC namespace: SysV and POSIX IPC shared with nothing outside the run",
    "mounts": "a mount namespace holding only the granted paths: no Unix socket, device or file outside them, "
    "and read-only binds refuse metadata changes",
    "privileges": "a user namespace: no capability in the host's namespace",
}


class LinuxBackend:
    """bubblewrap namespaces, Landlock (files, TCP ports, signal and abstract-socket scopes), a
    seccomp filter, and a dedicated user when the daemon is root."""

    name = "linux"

    def usable(self) -> bool:
        return sys.platform.startswith("linux")

    def detect(self, users_wanted: Sequence[str] = ()) -> dict[str, Protection]:
        ll = landlock.detect()
        bw = bwrap.detect()
        by_kernel = "landlock_create_ruleset(LANDLOCK_CREATE_RULESET_VERSION) asked the kernel for its ABI"
        by_probe = f"started `true` under {bw.path or 'bwrap'} with the namespaces agents get"
        found = {
            "filesystem": Protection(
                "filesystem", ll.available, f"landlock abi {ll.abi}" if ll.available else "", ll.reason, by_kernel
            ),
            "tcp_ports": Protection(
                "tcp_ports",
                ll.available and ll.abi >= 4,
                "landlock tcp" if ll.abi >= 4 else "",
                "TCP connect limited to the listed ports, explicit bind denied (listen() without bind is not)"
                if ll.abi >= 4
                else f"Landlock TCP rules need ABI 4; {ll.reason}",
                by_kernel,
            ),
            "network": Protection(
                "network",
                bw.available,
                "bwrap netns" if bw.available else "",
                "a private network namespace with only its own loopback" if bw.available else bw.reason,
                by_probe,
            ),
            "signals": Protection(
                "signals",
                bw.available or (ll.available and ll.abi >= 6),
                "pid namespace" if bw.available else "landlock scopes" if ll.abi >= 6 else "",
                "no process outside the run can be signalled"
                if bw.available or ll.abi >= 6
                else f"signal scoping needs bubblewrap or Landlock ABI 6; {bw.reason}; {ll.reason}",
                by_probe if bw.available else by_kernel,
            ),
            "abstract_sockets": Protection(
                "abstract_sockets",
                ll.available and ll.abi >= 6,
                "landlock scopes" if ll.abi >= 6 else "",
                "abstract Unix sockets outside the run are denied (with a network grant too)"
                if ll.abi >= 6
                else f"scoping abstract Unix sockets needs Landlock ABI 6; {ll.reason}",
                by_kernel,
            ),
            "syscalls": _seccomp_support(),
        }
        for name, what in NAMESPACED.items():
            works = bw.available and (bw.user_namespace or name != "privileges")
            why = what if works else bw.reason
            found[name] = Protection(name, works, "bwrap" if works else "", why, by_probe)
        found["bwrap"] = Protection("bwrap", bw.available, bw.path, bw.reason, by_probe)
        for name in users_wanted:
            support = users.detect(name, bound=bw.available)
            found[f"user:{name}"] = Protection(
                f"user:{name}",
                support.available,
                f"user:{name}",
                support.reason,
                "the user database, and the mode bits of the Python installation and corral for that account",
            )
        return found

    def plan(self, request: Confinement, offered: Mapping[str, Protection]) -> Plan:
        plan = Plan(self.name, module=__name__)
        wanted = demanded(request)
        fs = offered["filesystem"]
        bound = offered["bwrap"].available
        user = offered.get(f"user:{request.user}") if request.user else None
        if user is not None and user.available:
            plan.account = users.resolve(str(request.user))
            blocked = users.unreachable(plan.account, request.read_only, parents=not bound)
            if blocked:
                user = Protection(user.name, False, "", f"user {request.user!r} cannot read {', '.join(blocked)}")
        if "user" in wanted and (user is None or not user.available):
            plan.missing.append(f"user: {user.reason if user else 'not detected'}")
            plan.account = None
        if not fs.available:
            plan.missing.append(f"filesystem: {fs.reason}")
        for name in ("signals", "processes", "ipc", "mounts", "syscalls"):
            if not offered[name].available:
                plan.missing.append(f"{name}: {offered[name].reason}")
        if not offered["privileges"].available and plan.account is None:
            plan.missing.append(f"privileges: {offered['privileges'].reason}; or give the agent its own user")
        if request.network == "list" and not offered["abstract_sockets"].available:
            plan.notes.append(f"abstract Unix sockets: {offered['abstract_sockets'].reason}")
        connect, bind = self._ports(request, offered, plan)
        uid = plan.account.uid if plan.account else os.geteuid()
        # RLIMIT_NPROC counts every process of the uid, which the launcher, in its own PID
        # namespace, cannot see; uid 0 is not counted (the kernel ignores it for root)
        spec: dict[str, Any] = {"processes_in_use": user_process_count(uid) if uid != 0 else 0}
        system_rw, system_ro = landlock.system_paths()
        read_only = _away_from_home(request, [*system_ro, *request.read_only], plan, bound)
        if bound:
            as_root = os.geteuid() == 0
            plan.wrap = bwrap.argv(
                offered["bwrap"].mechanism,
                read_only=read_only,
                read_write=[*system_rw, *request.read_write],
                workdir=str(request.workdir),
                user_namespace=plan.account is None and offered["privileges"].available,
                network_namespace=request.network == "none",
                keep_setid=plan.account is not None and as_root,
                hidden=request.home,
            )
            plan.namespaced = spec["bwrap"] = True
            spaces = ["pid", "ipc", "mount", "uts"]
            spaces += ["user"] if plan.account is None and offered["privileges"].available else []
            spaces += ["net"] if request.network == "none" else []
            plan.applied = ["bwrap", *(f"ns:{name}" for name in sorted(spaces))]
        if plan.account is not None:
            a = plan.account
            spec["user"] = {"name": a.name, "uid": a.uid, "gid": a.gid, "groups": list(a.groups)}
        if fs.available:
            spec["landlock"] = {
                "read_write": list(request.read_write),
                "read_only": [p for p in request.read_only if p in read_only],
                "tcp_connect": connect,
                "tcp_bind": bind,
            }
        spec["seccomp"] = plan.seccomp = offered["syscalls"].available and bound
        spec["required"] = [] if request.degraded_ok else wanted
        plan.spec = spec
        return plan

    @staticmethod
    def _ports(request: Confinement, offered: Mapping[str, Protection], plan: Plan) -> tuple[list[int] | None, ...]:
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
        plan.notes.append(
            "network: Linux limits TCP by port only"
            + (f"; hosts {', '.join(hosts)} are not enforced" if hosts else "")
            + "; UDP stays open, and listen() without bind() still gets an ephemeral port on the host"
        )
        return sorted({e.port for e in request.endpoints}), []


def _away_from_home(request: Confinement, read_only: list[str], plan: Plan, bound: bool) -> list[str]:
    """``read_only`` without the folders inside the corral home (only the workdir and the
    home's ``plugins`` folder may be there).

    A folder that contains the home (a virtualenv or ``/usr`` holding it) stays: under
    bubblewrap the home is covered by an empty tmpfs; without it, nothing would hide the
    home from Landlock's read rule, so the agent must not start.
    """
    if request.home is None:
        return read_only
    home = os.path.abspath(request.home)
    plugins = os.path.join(home, "plugins")  # the one folder of the home agents read: drop-in plugins
    inside = [
        p
        for p in read_only
        if (os.path.abspath(p).startswith(home + os.sep) or os.path.abspath(p) == home)
        and os.path.abspath(p) != plugins
    ]
    if inside:
        plan.notes.append(f"filesystem: left out of the agent's view, inside the corral home: {', '.join(inside)}")
    kept = [p for p in read_only if p not in inside]
    covering = [p for p in kept if home.startswith(os.path.abspath(p).rstrip(os.sep) + os.sep)]
    if covering and not bound:
        plan.missing.append(
            f"filesystem: the corral home {home} is inside {', '.join(covering)}, which agents must read, and "
            "only bubblewrap can hide it there; move the home out of it"
        )
    return kept


def _seccomp_support() -> Protection:
    """Whether a filter can be built here (libseccomp loads); the kernel is tried in the launcher."""
    checked = "compiled the filter with libseccomp; each launcher checks /proc/self/status shows it in force"
    try:
        seccomp.program(account_memory=False)  # compiled once per daemon: the first spawn reuses it
    except seccomp.SeccompError as error:
        return Protection("syscalls", False, "", str(error), checked)
    return Protection(
        "syscalls",
        True,
        "seccomp",
        "a seccomp filter refuses keyrings, the kernel log, raw/packet/netlink sockets, device nodes, "
        "setuid bits, mounts and new namespaces",
        checked,
    )


def confine(spec: dict[str, Any]) -> list[str]:
    """Child side: user, then Landlock, then a check that the seccomp filter holds; returns what applied.

    A failure of anything in ``spec["required"]`` raises :class:`SandboxRefused`; others
    are recorded as ``missing:NAME`` and the agent runs without them.
    """
    required = set(spec.get("required", ()))
    applied: list[str] = []

    def failed(name: str, error: Exception) -> None:
        if name in required:
            raise SandboxRefused(f"{name}: {error}") from None
        applied.append(f"missing:{name}")

    if spec.get("bwrap"):
        os.environ.pop("PWD", None)  # bubblewrap's --chdir sets it; the agent gets only what was granted
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
    applied += [] if users.capabilities_left() else ["caps:none"]
    rules = spec.get("landlock")
    if rules:
        own = os.path.realpath("/proc/self")  # the agent's own /proc entry only, never others'
        system_rw, system_ro = landlock.system_paths()
        connect = rules["tcp_connect"]
        if connect is not None and spec.get("door_port"):  # the run's own model door, on its loopback
            connect = [*connect, spec["door_port"]]
        try:
            result = landlock.apply(
                [*system_rw, *rules["read_write"]],
                [*system_ro, *rules["read_only"], own],
                tcp_connect=connect,
                tcp_bind=rules["tcp_bind"],
            )
        except landlock.LandlockError as error:
            failed("filesystem", error)
        else:
            applied += result.labels()
    if spec.get("seccomp"):  # loaded by bubblewrap before the launcher started: check it holds
        if seccomp.active():
            applied += ["seccomp"] if spec.get("memory_accounted") else ["seccomp", "seccomp:memfd-shm"]
        else:
            failed("syscalls", seccomp.SeccompError("no seccomp filter is in force in the agent's process"))
    return applied


def _after_drop(spec: dict[str, Any]) -> list[str]:
    """Changing uid cleared the parent-death signal; RLIMIT_NPROC now counts the agent's own uid."""
    from corral.sandbox import linux

    applied = []
    if linux.set_parent_death_signal(spec["parent_pid"]):
        applied.append("pdeathsig")
    if spec.get("processes"):
        applied += apply_rlimits({"processes": spec["processes"]}, in_use=spec.get("processes_in_use"))
    return [label for label in applied if label.startswith("rlimit:processes") or label == "pdeathsig"]
