"""The confinement an operator asks for, per agent: ``[sandbox]`` and ``[agents.NAME.sandbox]``.

Parsed once at config load (called from :mod:`corral.config`) into a :class:`SandboxPolicy`.
The workdir is always read-write and the Python installation and the agent's code always
readable; these keys add to that. What each platform can enforce, and what happens when
it cannot, is decided later by the sandbox backend (:mod:`corral.sandbox.backend`).
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass, fields, replace
from pathlib import Path
from typing import Any

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

    def network_text(self) -> str:
        """The network policy as the operator wrote it."""
        if self.network == "list":
            return ", ".join(map(str, self.endpoints))
        return self.network


KEYS = [f.name for f in fields(SandboxPolicy) if f.name != "endpoints"]


def _paths(value: object, base_dir: Path) -> tuple[Path, ...]:
    if not isinstance(value, list) or not all(isinstance(v, str) and v for v in value):
        raise ValueError(f"{value!r} is not a list of path strings")
    return tuple((base_dir / Path(v).expanduser()).resolve() for v in value)


def parse_endpoint(text: object) -> HostPort:
    """``"api.example.com:443"``, ``"*:443"``, ``"[::1]:8080"`` -> HostPort; ValueError says why not."""
    if not isinstance(text, str):
        raise ValueError(f"{text!r} is not a 'host:port' string")
    host, sep, port = text.rpartition(":")
    if not sep or not _HOST.match(host):
        raise ValueError(f"{text!r} is not 'host:port' (e.g. 'api.example.com:443' or '*:443')")
    if not port.isdigit() or not 1 <= int(port) <= 65535:
        raise ValueError(f"{text!r} has no valid port; use a number from 1 to 65535")
    return HostPort(host.lower(), int(port))


def _network(value: object) -> tuple[str, tuple[HostPort, ...]]:
    if value in NETWORK_MODES:
        return str(value), ()
    if isinstance(value, list):
        endpoints = tuple(dict.fromkeys(parse_endpoint(v) for v in value))
        return ("list", endpoints) if endpoints else ("none", ())
    raise ValueError(f"{value!r} is not 'none', 'all' or a list of 'host:port' entries")


def read_sandbox(at: str, data: object, base: SandboxPolicy, base_dir: Path) -> tuple[SandboxPolicy, list[str]]:
    """A ``[sandbox]`` or ``[agents.NAME.sandbox]`` table over ``base``; returns it and the problems.

    Keys not given keep ``base``'s value, so ``[sandbox]`` sets defaults every agent can
    override one key at a time. Relative paths start at the config file's folder.
    """
    if data is None:
        return base, []
    if not isinstance(data, dict):
        return base, [f"{at}: must be a table with any of {', '.join(KEYS)}"]
    problems = [f"{at} {key}: unknown key; known keys: {', '.join(KEYS)}" for key in sorted(set(data) - set(KEYS))]
    values: dict[str, Any] = {}
    for key in ("read_write", "read_only"):
        if key in data:
            try:
                values[key] = _paths(data[key], base_dir)
            except ValueError as exc:
                problems.append(f'{at} {key}: {exc}; list folders, e.g. {key} = ["/srv/shared"]')
    if "network" in data:
        try:
            values["network"], values["endpoints"] = _network(data["network"])
        except ValueError as exc:
            problems.append(f'{at} network: {exc}; write network = "none", "all" or ["api.example.com:443"]')
    if "user" in data:
        user = data["user"]
        if user is False or user == "":
            values["user"] = None
        elif isinstance(user, str) and _USER.match(user):
            values["user"] = user
        else:
            problems.append(f'{at} user: {user!r} is not a user name; write user = "corral-agent" or leave it out')
    if "degraded_ok" in data:
        if isinstance(data["degraded_ok"], bool):
            values["degraded_ok"] = data["degraded_ok"]
        else:
            problems.append(f"{at} degraded_ok: {data['degraded_ok']!r} is not true or false")
    merged = {f.name: values.get(f.name, getattr(base, f.name)) for f in fields(SandboxPolicy)}
    return SandboxPolicy(**merged), problems


def read_secret_grants(at: str, value: object, env: Mapping[str, str], env_from: tuple[str, ...]) -> list[str]:
    """Problems with an agent's ``secrets`` list: bad names, or names its env already sets."""
    if value is None:
        return []
    if not isinstance(value, list) or not all(isinstance(v, str) for v in value):
        return [f'{at}: {value!r} is not a list of secret names; write secrets = ["GITHUB_TOKEN"]']
    problems = []
    for name in value:
        if not _SECRET.match(name):
            problems.append(f"{at}: {name!r} is not a secret name (letters, digits, '_', not starting with a digit)")
        elif name in env or name in env_from:
            problems.append(f"{at}: {name!r} is also set by env or env_from; a secret is delivered as its own variable")
    return problems


def home_problems(at: str, policy: SandboxPolicy, home: Path) -> list[str]:
    """A granted folder holding the corral home, or inside it, would open the store, the secrets,
    the control socket, supervisord's socket (docs/supervisord.md keeps it there) or another
    agent's workdir."""
    problems = []
    for key in ("read_write", "read_only"):
        for path in getattr(policy, key):
            if path == home or path in home.parents:
                problems.append(
                    f"{at} {key}: {path} contains the corral home {home}, which holds the store, the secrets "
                    "and every agent's workdir; grant a folder outside it"
                )
            elif home in path.parents:
                problems.append(
                    f"{at} {key}: {path} is inside the corral home {home}, which holds the store, the secrets, "
                    "the control and supervisord sockets and the other agents' workdirs; an agent has its own "
                    "workdir already: grant a folder outside the home"
                )
    return problems


def read_isolation(
    where: str, data: Mapping[str, Any], agents: Mapping[str, Any], base_dir: Path, home: Path
) -> tuple[dict[str, Any], list[str]]:
    """``[sandbox]``, each ``[agents.NAME.sandbox]`` and each agent's ``secrets``, over parsed agents.

    ``agents`` are :class:`corral.config.AgentConfig` objects; each is returned with its
    ``sandbox`` and ``secrets`` filled in, with every problem found.
    """
    default, problems = read_sandbox(f"{where}: [sandbox]", data.get("sandbox"), SandboxPolicy(), base_dir)
    problems += home_problems(f"{where}: [sandbox]", default, home)
    tables = data.get("agents")
    out: dict[str, Any] = {}
    for name, agent in agents.items():
        table = tables.get(name, {}) if isinstance(tables, dict) else {}
        table = table if isinstance(table, dict) else {}
        at = f"{where}: [agents.{name}.sandbox]"
        policy, found = read_sandbox(at, table.get("sandbox"), default, base_dir)
        if "sandbox" in table:
            found += home_problems(at, policy, home)
        grants = table.get("secrets")
        found += read_secret_grants(f"{where}: [agents.{name}] secrets", grants, agent.env, agent.env_from)
        problems += found
        secrets = tuple(dict.fromkeys(grants or ())) if not found else ()
        out[name] = replace(agent, sandbox=policy, secrets=secrets)
    return out, problems
