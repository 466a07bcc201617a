"""The macOS sandbox backend: a Seatbelt profile through ``sandbox-exec``, and the agent's user.

The profile is generated per attempt from the request (:func:`corral.sandbox.seatbelt.generate`)
and the launcher is started under it, so it holds from the first instruction of Python.
macOS ignores ``RLIMIT_AS``; the daemon's psutil watchdog (``limits.memory_mb``) is the
memory limit there. Child side, :func:`confine` only drops to the agent's user.
"""

from __future__ import annotations

import sys
from collections.abc import Mapping, Sequence
from typing import Any

from corral.sandbox import seatbelt, users
from corral.sandbox.backend import Plan, Protection, Request, SandboxRefused, demanded


class MacBackend:
    """Seatbelt (files, network, signals) and a dedicated user when the daemon is root."""

    name = "macos"

    def usable(self) -> bool:
        return sys.platform == "darwin"

    def detect(self, users_wanted: Sequence[str] = ()) -> dict[str, Protection]:
        support = seatbelt.detect()
        mechanism = "seatbelt" if support.available else ""
        found = {
            name: Protection(name, support.available, mechanism, support.reason)
            for name in ("filesystem", "network", "signals", "tcp_ports")
        }
        for name in users_wanted:
            user = users.detect(name)
            found[f"user:{name}"] = Protection(f"user:{name}", user.available, f"user:{name}", user.reason)
        return found

    def plan(self, request: Request, offered: Mapping[str, Protection]) -> Plan:
        plan = Plan(self.name, module=__name__)
        wanted = demanded(request)
        for name in ("filesystem", "network", "signals"):
            if name in wanted and not offered[name].available:
                plan.missing.append(f"{name}: {offered[name].reason}")
        if request.user:
            user = offered.get(f"user:{request.user}")
            if user is None or not user.available:
                plan.missing.append(f"user: {user.reason if user else 'not detected'}")
            else:
                plan.account = users.resolve(request.user)
        if offered["filesystem"].available:
            profile = seatbelt.generate(
                python_executable=request.python,
                python_paths=[p for p in request.read_only if p.startswith("/")],
                read_write=list(request.read_write),
                network=self._network(request, plan),
                allow_fork=True,
            )
            plan.wrap = [seatbelt.SANDBOX_EXEC, "-p", profile]
        spec: dict[str, Any] = {"required": [] if request.degraded_ok else wanted, "seatbelt": bool(plan.wrap)}
        if plan.account is not None:
            a = plan.account
            spec["user"] = {"name": a.name, "uid": a.uid, "gid": a.gid, "groups": list(a.groups)}
        plan.spec = spec
        return plan

    @staticmethod
    def _network(request: Request, plan: Plan) -> str | list[str]:
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


def confine(spec: dict[str, Any]) -> list[str]:
    """Child side: Seatbelt already holds (``sandbox-exec`` started us); drop to the agent's user."""
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
    return applied
