"""The console's server, run inside ``corral up``'s event loop by uvicorn.

It is started after the daemon is up and stopped before it closes; a failure to bind, or
a crash of the server later, is logged and leaves the daemon running without a console.
uvicorn's own signal handling is turned off: SIGTERM, SIGINT and SIGHUP belong to the
daemon. Reads run on worker threads; actions go to the daemon's own operations
(``Daemon._handle``, what the control socket serves).
"""

from __future__ import annotations

import asyncio
import contextlib
import socket
import ssl
import time
from collections.abc import Awaitable, Callable, Iterator
from typing import Any

import uvicorn

from corral.alerts import Alert
from corral.config.console import ConsoleConfig
from corral.console.app import Pages
from corral.console.auth import Logins
from corral.console.connections import Refusals, protocol
from corral.console.guard import Guard
from corral.console.links import KEY_FILE, Links, load_key
from corral.console.live import Hub
from corral.console.reads import StoreView
from corral.run.approvals import PENDING, Approvals

Reply = Callable[[dict[str, Any]], Awaitable[None]]
Handle = Callable[[dict[str, Any], Reply], Awaitable[None]]
"""The daemon's control-request handler."""
STOP_GRACE = 2
"""Seconds open requests get when the console stops (live streams end at once)."""


class _Server(uvicorn.Server):
    @contextlib.contextmanager
    def capture_signals(self) -> Iterator[None]:
        """No signal handlers: the daemon owns SIGTERM, SIGINT and SIGHUP."""
        yield


class Console:
    """One console: its sessions, its live hub and its uvicorn server."""

    def __init__(
        self,
        config: ConsoleConfig,
        source: Callable[[], StoreView],
        handle: Handle,
        protections: list[str],
        log: Any,
    ) -> None:
        self.config = config
        self.gate = Logins(config.session_max_age, log)
        self.hub = Hub(asyncio.get_running_loop())
        self.log = log
        self.started = time.time()
        self._handle = handle
        self._source = source
        self.links: Links | None = None
        """Signs approval links once the console listens (None: off, its key unreadable)."""
        self._pages = Pages(
            self.gate, self.hub, source, self._act, self._health, config.secure, log, lambda: self.links
        )
        self._protections = protections
        self._server: _Server | None = None
        self._task: asyncio.Task[None] | None = None
        self.url = ""

    def _health(self) -> tuple[float, list[str]]:
        return self.started, self._protections

    async def _act(self, request: dict[str, Any]) -> dict[str, Any]:
        answers: list[dict[str, Any]] = []

        async def reply(answer: dict[str, Any]) -> None:
            answers.append(answer)

        await self._handle(request, reply)
        return answers[0] if answers else {"ok": False, "error": "the daemon gave no answer; see corral.log"}

    async def start(self) -> bool:
        """Listen and serve in the background; False (logged) when it cannot listen."""
        host, port = self.config.address
        try:
            tls = _tls_checked(self.config)
            sock = listening(host, port)
        except (OSError, ssl.SSLError) as exc:
            self.log.error(
                "console cannot listen; the daemon runs without it",
                listen=self.config.listen,
                error=exc.strerror or str(exc),
                fix="free the port, fix [console] tls_cert and tls_key, or set [console] listen to another address, "
                "or enabled = false",
            )
            return False
        bound_host, bound_port = sock.getsockname()[:2]
        shown = f"[{bound_host}]" if ":" in bound_host else bound_host
        self.url = f"{'https' if tls else 'http'}://{shown}:{bound_port}"
        self.links = self._links(self.public)
        config = uvicorn.Config(
            Guard(self._pages.app(), self.gate),
            lifespan="off",
            http=protocol(Refusals(self.log)),
            ws="none",
            log_config=None,
            log_level="warning",
            access_log=False,
            server_header=False,
            proxy_headers=False,
            timeout_graceful_shutdown=STOP_GRACE,
            ssl_certfile=self.config.tls_cert,
            ssl_keyfile=self.config.tls_key,
        )
        self._server = _Server(config)
        self._task = asyncio.create_task(self._serve(self._server, sock))
        self.log.info("console listening", url=self.url)
        return True

    async def _serve(self, server: _Server, sock: socket.socket) -> None:
        try:
            await server.serve(sockets=[sock])
        except (Exception, SystemExit) as exc:  # uvicorn exits on a startup failure: never the daemon
            self.log.error("console stopped by an error; the daemon goes on", error=f"{type(exc).__name__}: {exc}")
        finally:
            sock.close()

    def _links(self, base: str) -> Links | None:
        home = self._source().config.home
        try:
            return Links(load_key(home), base)
        except (OSError, ValueError) as exc:
            why = exc.strerror if isinstance(exc, OSError) and exc.strerror else str(exc)
            self.log.error("approval links are off: the console's key cannot be read", file=KEY_FILE, error=why)
            return None

    def alert_links(self, alert: Alert) -> dict[str, str]:
        """The links an alert's sinks show: a waiting approval's signed link."""
        approval = alert.fields.get("approval")
        if self.links is None or alert.resolved or not isinstance(approval, str):
            return {}
        src = self._source()
        with src.store.read() as txn:
            record = Approvals(src.records).get(txn, approval)
        if record is None or record["state"] != PENDING:
            return {}
        return {"approval": self.links.url(approval, record["expires"])}

    @property
    def public(self) -> str:
        """Where browsers reach the console: ``public_url`` when set, else where it listens."""
        return (self.config.public_url or self.url).rstrip("/")

    def login_url(self) -> str:
        """A URL that logs one browser in, once (at :attr:`public`, so its cookie is the one
        the approval links' pages see)."""
        return f"{self.public}/login?token={self.gate.mint()}"

    async def stop(self) -> None:
        """End the live streams and the server."""
        self.hub.close()
        if self._server is None or self._task is None:
            return
        self._server.should_exit = True
        try:
            await asyncio.wait_for(self._task, STOP_GRACE + 3)
        except TimeoutError:
            self._task.cancel()


def listening(host: str, port: int) -> socket.socket:
    """The console's listening socket, bound, non-blocking, its connections without Nagle."""
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    # IPPROTO_TCP named, not 0: asyncio turns Nagle off (TCP_NODELAY) only on sockets whose
    # proto says TCP, and with it on every answer after a connection's first waited ~40 ms
    # for the browser's delayed acknowledgement.
    sock = socket.socket(family, socket.SOCK_STREAM, socket.IPPROTO_TCP)
    try:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        sock.bind((host, port))
        sock.listen(128)
        sock.setblocking(False)
    except OSError:
        sock.close()
        raise
    return sock


def _tls_checked(config: ConsoleConfig) -> bool:
    """Whether the console serves HTTPS; its certificate and key are loaded once here, so a
    wrong path or a key that does not match is refused before anything listens."""
    if config.tls_cert is None or config.tls_key is None:
        return False
    ssl.create_default_context(ssl.Purpose.CLIENT_AUTH).load_cert_chain(config.tls_cert, config.tls_key)
    return True
