"""``[sandbox]``, ``[agents.NAME.sandbox]`` and each agent's ``secrets``: the confinement an
operator asks for, read into a :class:`corral.sandbox.spec.SandboxPolicy`.

The workdir is always read-write and the Python installation and the agent's code always
readable; these keys add to that. What each platform can enforce, and what happens when
it cannot, is decided later by the sandbox backend (:mod:`corral.sandbox.backend`). The
policy's type lives with the sandbox, which must not import the config.
"""

from __future__ import annotations

import dataclasses
import re
from collections.abc import Mapping
from pathlib import Path
from typing import Annotated, Any

from msgspec import Meta

from corral.config.kinds import EnvName, Flag, Key, Port, Rule, Text, Wrong, read
from corral.config.problems import Problems, table_keys
from corral.sandbox.spec import NETWORK_MODES, HostPort, SandboxPolicy

_HOST = re.compile(r"^(\*|[A-Za-z0-9]([A-Za-z0-9.-]{0,252})|\[[0-9A-Fa-f:.]+\])$")


def parse_endpoint(text: object) -> HostPort:
    """``"api.example.com:443"``, ``"*:443"``, ``"[::1]:8080"`` -> HostPort; ValueError says why not."""
    if not isinstance(text, str):
        raise ValueError(f"{text!r} is not a 'host:port' string")
    host, sep, port = text.rpartition(":")
    if not sep or not _HOST.match(host):
        raise ValueError(f"{text!r} is not 'host:port' (e.g. 'api.example.com:443' or '*:443')")
    try:
        number = read(int(port) if port.isdigit() else port, Port)
    except Wrong:
        raise ValueError(f"{text!r} has no valid port; use a number from 1 to 65535") from None
    return HostPort(host.lower(), number)


def _network(value: object) -> tuple[str, tuple[HostPort, ...]]:
    if value in NETWORK_MODES:
        return str(value), ()
    if isinstance(value, list):
        endpoints = tuple(dict.fromkeys(parse_endpoint(v) for v in value))
        return ("list", endpoints) if endpoints else ("none", ())
    raise ValueError(f"{value!r} is not 'none', 'all' or a list of 'host:port' entries")


Folders = Annotated[tuple[Text, ...], Rule("{value!r} is not a list of path strings")]
Network = Annotated[Any, Rule("{value!r} is not a network policy", parse=_network)]
UserName = Annotated[
    Annotated[str, Meta(pattern=r"^[a-z_][a-z0-9_.-]{0,31}\$?$")] | None,
    Rule("{value!r} is not a user name", off=(False, "")),
]
SecretNames = Annotated[
    tuple[str, ...], Rule('{value!r} is not a list of secret names; write secrets = ["GITHUB_TOKEN"]')
]


class SandboxKeys:
    """The keys of ``[sandbox]`` and ``[agents.NAME.sandbox]``."""

    read_write: Annotated[Folders, Key('list folders, e.g. read_write = ["/srv/shared"]')]
    read_only: Annotated[Folders, Key('list folders, e.g. read_only = ["/srv/shared"]')]
    network: Annotated[Network, Key('write network = "none", "all" or ["api.example.com:443"]')]
    user: Annotated[UserName, Key('write user = "corral-agent" or leave it out')]
    degraded_ok: Annotated[Flag, Key()]


def read_sandbox(p: Problems, section: str, data: object, base: SandboxPolicy, base_dir: Path) -> SandboxPolicy:
    """A ``[sandbox]`` or ``[agents.NAME.sandbox]`` table over ``base``.

    Keys not given keep ``base``'s value, so ``[sandbox]`` sets defaults every agent can
    override one key at a time. Relative paths start at the config file's folder.
    """
    known = table_keys(SandboxKeys)
    table = p.table(section, data, f"a table with any of {', '.join(known)}")
    p.unknown(section, table, known)
    values = p.keys(section, table, SandboxKeys)
    for key in ("read_write", "read_only"):
        if key in values:
            values[key] = tuple((base_dir / Path(v).expanduser()).resolve() for v in values[key])
    if "network" in values:
        values["network"], values["endpoints"] = values["network"]
    return dataclasses.replace(base, **values)


def read_secret_grants(
    p: Problems, section: str, table: Mapping[str, Any], env: Mapping[str, str], env_from: tuple[str, ...]
) -> tuple[str, ...]:
    """The ``secrets`` list of an agent's ``table``: each a name its ``env`` and ``env_from`` do not set."""
    names: tuple[str, ...] = p.value(section, table, "secrets", SecretNames, ())
    for name in names:
        try:
            read(name, EnvName)
        except Wrong:
            p.fail(
                section, "secrets", f"{name!r} is not a secret name (letters, digits, '_', not starting with a digit)"
            )
            continue
        if name in env or name in env_from:
            p.fail(
                section,
                "secrets",
                f"{name!r} is also set by env or env_from; a secret is delivered as its own variable",
            )
    return tuple(dict.fromkeys(names))


def home_problems(p: Problems, section: str, policy: SandboxPolicy, home: Path) -> None:
    """A granted folder holding the corral home, or inside it, would open the store, the secrets,
    the control socket, supervisord's socket (docs/supervisord.md keeps it there) or another
    agent's workdir."""
    for key in ("read_write", "read_only"):
        for path in getattr(policy, key):
            if path == home or path in home.parents:
                p.fail(
                    section,
                    key,
                    f"{path} contains the corral home {home}, which holds the store, the secrets "
                    "and every agent's workdir; grant a folder outside it",
                )
            elif home in path.parents:
                p.fail(
                    section,
                    key,
                    f"{path} is inside the corral home {home}, which holds the store, the secrets, "
                    "the control and supervisord sockets and the other agents' workdirs; an agent has its own "
                    "workdir already: grant a folder outside the home",
                )
