"""``[console]``: the local web dashboard ``corral up`` serves (docs/console.md).

On by default at ``127.0.0.1:8787``: loopback only, and nothing is served without a
session that ``corral console``'s one-time token opens. Reaching it from a phone means
binding it to a tailnet or LAN address here, explicitly.
"""

from __future__ import annotations

import ipaddress
from dataclasses import dataclass
from typing import Annotated
from urllib.parse import urlsplit

from corral.config.kinds import AnyPort, Flag, HttpUrl, Key, PositiveSeconds, Rule, Text, Wrong, read
from corral.config.problems import Problems


def split_listen(value: str) -> tuple[str, int]:
    """``"HOST:PORT"`` (an IPv6 host in brackets) as ``(host, port)``; raises ValueError
    saying what is wrong. The host is an IP address, or ``localhost``."""
    host, sep, port = value.rpartition(":")
    if not sep or not host:
        raise ValueError(f"{value!r} is not HOST:PORT")
    host = host[1:-1] if host.startswith("[") and host.endswith("]") else host
    if host != "localhost":
        try:
            ipaddress.ip_address(host)
        except ValueError:
            raise ValueError(f"{value!r} does not start with an IP address (or localhost)") from None
    try:
        number = read(int(port) if port.isdigit() else port, AnyPort)
    except Wrong:
        raise ValueError(f"{value!r} does not end with a port from 0 to 65535") from None
    return host, number


def _listen(value: object) -> str:
    if not isinstance(value, str):
        raise ValueError(f"{value!r} is not HOST:PORT")
    split_listen(value)
    return value


Listen = Annotated[str, Rule("{value!r} is not HOST:PORT", parse=_listen)]
"""Where a server listens: ``"127.0.0.1:8787"``, ``"[::1]:8787"``, port 0 for any free one."""


@dataclass(frozen=True)
class ConsoleConfig:
    """``[console]``: whether and where the console listens, and how long a login lasts."""

    enabled: Annotated[Flag, Key("give true to serve the console with `corral up`, false to turn it off")] = True
    listen: Annotated[
        Listen, Key('give an address and port, e.g. "127.0.0.1:8787" (a LAN or tailnet address for a phone)')
    ] = "127.0.0.1:8787"
    session_max_age: Annotated[PositiveSeconds, Key('give how long a login lasts, e.g. "12h"')] = 43200.0
    public_url: (
        Annotated[HttpUrl, Key('give the URL a phone opens the console at, e.g. "https://mini.tailnet.ts.net"')] | None
    ) = None
    """Where approval links point when the console sits behind a proxy or a tailnet name;
    unset, they point at ``listen``."""
    tls_cert: Annotated[Text, Key("give the path of a PEM certificate (chain) file")] | None = None
    tls_key: Annotated[Text, Key("give the path of the certificate's PEM private key file")] | None = None

    @property
    def address(self) -> tuple[str, int]:
        """``listen`` as ``(host, port)``."""
        return split_listen(self.listen)

    @property
    def secure(self) -> bool:
        """Whether browsers reach the console over HTTPS (its own TLS, or a proxy's at
        ``public_url``): its cookies are then ``Secure``."""
        return self.tls_cert is not None or (self.public_url or "").startswith("https://")


def read_console(p: Problems, data: object) -> ConsoleConfig:
    """The ``[console]`` table (on, at 127.0.0.1:8787, when there is none)."""
    config = p.read("console", data, ConsoleConfig)
    if (config.tls_cert is None) != (config.tls_key is None):
        missing = "tls_key" if config.tls_key is None else "tls_cert"
        p.fail("console", missing, "tls_cert and tls_key go together; give both, or neither to serve plain HTTP")
    if config.public_url is not None and (
        urlsplit(config.public_url).query or urlsplit(config.public_url).path.strip("/")
    ):
        p.fail(
            "console",
            "public_url",
            'must be a scheme and host (and port) only, e.g. "https://mini.tailnet.ts.net": the console\'s pages '
            "sit at the root, so a proxy serves it on a host of its own, not under a path",
        )
    return config
