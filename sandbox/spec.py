"""The confinement an operator asks for, per agent: ``[sandbox]`` and ``[agents.NAME.sandbox]``.

Read once at config load (:mod:`corral.config.sandbox`) into a :class:`SandboxPolicy`.
The workdir is always read-write and the Python installation and the agent's code always
readable; these keys add to that. What each platform can enforce, and what happens when
it cannot, is decided later by the sandbox backend (:mod:`corral.sandbox.backend`).
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from pathlib import Path

NETWORK_MODES = ("none", "all")
_HOST = re.compile(r"^(\*|[A-Za-z0-9]([A-Za-z0-9.-]{0,252})|\[[0-9A-Fa-f:.]+\])$")
_SECRET = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*$")
_USER = re.compile(r"^[a-z_][a-z0-9_.-]{0,31}\$?$")


@dataclass(frozen=True)
class HostPort:
    """One ``host:port`` an agent may connect to (``*`` for any host)."""

    host: str
    port: int

    def __str__(self) -> str:
        return f"{self.host}:{self.port}"


@dataclass(frozen=True)
class SandboxPolicy:
    """What one agent's process may reach, beyond its workdir, the Python installation and its code.

    ``network`` is ``"none"``, ``"all"``, or ``"list"`` with the allowed ``endpoints``.
    ``user`` is the account a root daemon runs the agent as (``None``: the daemon's own).
    ``degraded_ok`` lets the agent start when this machine lacks a protection the policy
    asks for; the run records what was missing.
    """

    read_write: tuple[Path, ...] = ()
    read_only: tuple[Path, ...] = ()
    network: str = "none"
    endpoints: tuple[HostPort, ...] = ()
    user: str | None = None
    degraded_ok: bool = False

    def reaches(self, target: str) -> bool:
        """Whether the agent may connect to ``target`` under this policy: ``host:port``, or a
        host on any port."""
        if self.network == "all":
            return True
        host, sep, port = target.lower().rpartition(":")
        if not (sep and port.isdigit() and host and (":" not in host or host.endswith("]"))):
            host, port = target.lower(), ""
        return self.network == "list" and any(
            endpoint.host in ("*", host) and (not port or endpoint.port == int(port)) for endpoint in self.endpoints
        )

    def network_text(self) -> str:
        """The network policy as the operator wrote it."""
        if self.network == "list":
            return ", ".join(map(str, self.endpoints))
        return self.network
