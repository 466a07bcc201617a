"""``[mcp.NAME]``: MCP servers whose tools agents may be granted.

A server is either a ``command`` (stdio: it runs inside the sandbox of the agent that
calls it) or a ``url`` (Streamable HTTP: the daemon calls it, with ``headers`` whose
``${secret:NAME}`` references are filled from the secrets store by the daemon alone).
An agent is granted its tools by name in ``tools = [...]``: ``"git.git_log"`` one tool,
``"git.*"`` every tool the server offers (a shell pattern after the server's name).
See docs/tools.md, "Tools from MCP servers".
"""

from __future__ import annotations

import fnmatch
import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Annotated, Literal
from urllib.parse import urlsplit

from msgspec import Meta

from corral.config.kinds import (
    Count,
    HttpUrl,
    Key,
    PositiveInt,
    PositiveSeconds,
    Rule,
    Seconds,
    SomeTexts,
    Wrong,
    read,
)
from corral.config.problems import Problems, table_keys
from corral.sandbox.spec import SandboxPolicy


def _backoff(value: object) -> tuple[float, float]:
    from corral.retrypolicy import parse_backoff

    return parse_backoff(value)


Backoff = Annotated[tuple[float, float], Rule("{value!r} is not a backoff", parse=_backoff)]
ServerName = Annotated[
    str,
    Meta(pattern=r"^[a-z0-9][a-z0-9_-]{0,31}$"),
    Rule("server names use lowercase letters, digits, '-' and '_' (max 32), starting with a letter or digit"),
]
SECRET_REFERENCE = re.compile(r"\$\{secret:([A-Za-z_][A-Za-z0-9_]*)\}")
"""``${secret:NAME}`` in a header value: the daemon puts the stored secret there, only when it calls."""
_ANY_REFERENCE = re.compile(r"\$\{[^}]*\}")


class McpKeys:
    """The keys of one ``[mcp.NAME]`` table."""

    command: Annotated[SomeTexts, Key('give the program and its arguments, e.g. command = ["mcp-server-time"]')]
    url: Annotated[HttpUrl, Key('give the server\'s Streamable HTTP endpoint, e.g. "https://mcp.example.com/mcp"')]
    timeout: Annotated[PositiveSeconds, Key('give how long one call may take, e.g. "60s"')]
    startup_timeout: Annotated[PositiveSeconds, Key('give how long a stdio server may take to start, e.g. "30s"')]
    max_result_kb: Annotated[PositiveInt, Key("give the largest tool result accepted, in KiB")]
    retries: Annotated[Count, Key("give how many times an HTTP server's failed call is tried again (0: never)")]
    backoff: Annotated[Backoff, Key('give the first and longest wait between tries, e.g. backoff = "1s..30s"')]
    max_retry_after: Annotated[Seconds, Key("give the longest Retry-After worth waiting for, in seconds")]
    breaker_failures: Annotated[PositiveInt, Key("give how many failures in a row open the server's breaker")]
    breaker_cool_down: Annotated[PositiveSeconds, Key("give the seconds an open breaker stays open")]
    approve: Annotated[
        Literal["destructive", "all", "none"],
        Key('choose which calls need a human\'s approval: "destructive" (the default), "all" or "none"'),
    ]


@dataclass(frozen=True)
class McpServer:
    """One ``[mcp.NAME]`` table, validated. ``headers`` keep their ``${secret:NAME}``
    references: they are filled only where the daemon makes the call."""

    name: str
    command: tuple[str, ...] = ()
    url: str | None = None
    headers: Mapping[str, str] = field(default_factory=dict)
    timeout: float = 60.0
    startup_timeout: float = 30.0
    max_result_kb: int = 256
    retries: int = 3
    backoff: tuple[float, float] = (1.0, 30.0)
    max_retry_after: float = 60.0
    breaker_failures: int = 5
    breaker_cool_down: float = 30.0
    approve: str = "destructive"

    @property
    def transport(self) -> str:
        """``stdio`` (a command run in the agent's sandbox) or ``http`` (called by the daemon)."""
        return "http" if self.url else "stdio"

    @property
    def secrets(self) -> tuple[str, ...]:
        """The secret names the headers refer to."""
        return tuple(dict.fromkeys(m.group(1) for v in self.headers.values() for m in SECRET_REFERENCE.finditer(v)))

    @property
    def host_port(self) -> tuple[str, int]:
        """Where an HTTP server is, as a network grant names it."""
        parts = urlsplit(self.url or "")
        return (parts.hostname or "").lower(), parts.port or (443 if parts.scheme == "https" else 80)

    def filled_headers(self, values: Mapping[str, str]) -> dict[str, str]:
        """The headers with each ``${secret:NAME}`` replaced by ``values[NAME]`` (the daemon's only)."""
        return {key: SECRET_REFERENCE.sub(lambda m: values[m.group(1)], value) for key, value in self.headers.items()}

    def describe(self) -> str:
        """The server as an operator recognises it, without its headers."""
        return self.url if self.url else " ".join(self.command)


def read_mcp(p: Problems, data: object) -> dict[str, McpServer]:
    """Every ``[mcp.NAME]`` table."""
    servers: dict[str, McpServer] = {}
    for name, raw in p.table("mcp", data, "tables such as [mcp.NAME]").items():
        section = f"mcp.{name}"
        try:
            read(name, ServerName)
        except Wrong as exc:
            p.fail(section, None, str(exc))
            continue
        table = p.table(section, raw, 'a table with command = [...] or url = "..."')
        p.unknown(section, table, [*table_keys(McpKeys), "headers"])
        before = len(p.items)
        values = p.keys(section, table, McpKeys)
        if ("command" in table) == ("url" in table):
            p.fail(
                section,
                None,
                'give either command = ["program", "arg", ...] (a stdio server run in the agent\'s sandbox) '
                'or url = "https://..." (a Streamable HTTP server the daemon calls); this table has '
                + ("both" if "command" in table else "neither"),
            )
        headers = _read_headers(p, section, table.get("headers"))
        if headers and "command" in table:
            p.fail(section, "headers", "only an HTTP server (url = ...) takes headers; remove them")
        if len(p.items) == before:
            servers[name] = McpServer(name=name, headers=headers, **values)
    return servers


def _read_headers(p: Problems, section: str, data: object) -> dict[str, str]:
    fix = 'e.g. headers = { Authorization = "Bearer ${secret:DOCS_TOKEN}" }'
    headers: dict[str, str] = {}
    for key, value in p.table(section, data, f"a table of header names and values, {fix}", "headers").items():
        if not isinstance(value, str):
            p.fail(section, f"headers.{key}", f"{value!r} is not a string; {fix}")
            continue
        strange = [ref for ref in _ANY_REFERENCE.findall(value) if not SECRET_REFERENCE.fullmatch(ref)]
        if strange:
            p.fail(
                section,
                f"headers.{key}",
                f"{strange[0]!r} is not a reference corral fills; write ${{secret:NAME}} with a stored secret's name",
            )
            continue
        headers[str(key)] = value
    return headers


def split_grant(grant: str) -> tuple[str, str] | None:
    """``("git", "git_log")`` for a grant ``"git.git_log"``; None for a grant without a server part."""
    server, dot, pattern = grant.partition(".")
    return (server, pattern) if dot and pattern else None


def plugin_grants(tools: tuple[str, ...], servers: Mapping[str, McpServer]) -> tuple[str, ...]:
    """The grants of an agent's ``tools`` that name plugin tools (not an MCP server's)."""
    return tuple(name for name in tools if (parts := split_grant(name)) is None or parts[0] not in servers)


def granted(patterns: tuple[str, ...], server: str, tool: str) -> bool:
    """Whether one of an agent's grants names ``tool`` of ``server``."""
    return any(
        (parts := split_grant(grant)) is not None and parts[0] == server and fnmatch.fnmatchcase(tool, parts[1])
        for grant in patterns
    )


def grant_problems(
    p: Problems, section: str, tools: tuple[str, ...], servers: Mapping[str, McpServer], sandbox: SandboxPolicy
) -> None:
    """An agent's grants of MCP tools: each names a declared server, and an HTTP server's host
    is one the agent's network grant allows (the daemon calls it on the agent's behalf)."""
    for server in dict.fromkeys(parts[0] for grant in tools if (parts := split_grant(grant)) and parts[0] in servers):
        config = servers[server]
        if config.transport != "http" or sandbox.network == "all":
            continue
        host, port = config.host_port
        if not any(e.port == port and e.host in (host, "*") for e in sandbox.endpoints):
            p.fail(
                section,
                "tools",
                f"grants tools of MCP server {server!r} at {host}:{port}, which the agent's network grant "
                f"({sandbox.network_text()}) does not allow; add "
                f'"{host}:{port}" to its sandbox network, or remove the grant',
            )
