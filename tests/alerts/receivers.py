"""Real receivers on 127.0.0.1 for the sink tests: an HTTP server, an SMTP server, a silent TCP port.

Each records what arrived, answers as the test scripted it, and can hang (hold the
connection without answering) until it is closed, so timeouts are tested against a
real socket, not a patched function.
"""

from __future__ import annotations

import queue
import socket
import ssl
import threading
import traceback
from collections.abc import Sequence
from dataclasses import dataclass, field
from email import message_from_bytes, policy
from email.message import EmailMessage
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

from aiosmtpd.controller import Controller
from aiosmtpd.smtp import SMTP, AuthResult, Envelope, LoginPassword, Session

HANG = "hang"
"""A scripted reply that answers nothing and holds the connection until the receiver closes."""

_HOLD_SECONDS = 30  # a hung handler gives up by itself after this, should a test forget to close


@dataclass(frozen=True)
class Reply:
    """What the HTTP receiver answers to one request."""

    status: int = 200
    body: bytes = b"ok"
    headers: dict[str, str] = field(default_factory=dict)


@dataclass(frozen=True)
class Request:
    """One request as the HTTP receiver saw it."""

    method: str
    path: str
    headers: dict[str, str]
    body: bytes


class HTTPReceiver:
    """A threaded HTTP(S) server that records requests and answers from a script.

    ``replies`` are used in order, one per request; after they run out every request
    gets ``200 ok``. Header names in :attr:`requests` are lower-cased.
    """

    def __init__(self, replies: Sequence[Reply | str] = (), *, tls: ssl.SSLContext | None = None) -> None:
        self.requests: list[Request] = []
        self._replies: queue.SimpleQueue[Reply | str] = queue.SimpleQueue()
        self.script(*replies)
        self._release = threading.Event()
        receiver = self

        class Handler(BaseHTTPRequestHandler):
            def do_GET(self) -> None:
                self.do_POST()

            def do_POST(self) -> None:
                length = int(self.headers.get("Content-Length", "0"))
                body = self.rfile.read(length)
                headers = {k.lower(): v for k, v in self.headers.items()}
                receiver.requests.append(Request(self.command, self.path, headers, body))
                try:
                    reply = receiver._replies.get_nowait()
                except queue.Empty:
                    reply = Reply()
                if reply == HANG:
                    receiver._release.wait(_HOLD_SECONDS)
                    return
                assert isinstance(reply, Reply)
                self.send_response(reply.status)
                for name, value in reply.headers.items():
                    self.send_header(name, value)
                self.send_header("Content-Length", str(len(reply.body)))
                self.end_headers()
                self.wfile.write(reply.body)

            def log_message(self, format: str, *args: Any) -> None:
                """Quiet: pytest shows what matters."""

        self._server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self._server.daemon_threads = True
        if tls is not None:
            self._server.socket = tls.wrap_socket(self._server.socket, server_side=True, do_handshake_on_connect=False)
        self.scheme = "https" if tls is not None else "http"
        self.port = self._server.server_address[1]
        self._thread = threading.Thread(target=self._server.serve_forever, args=(0.02,), daemon=True)
        self._thread.start()

    def script(self, *replies: Reply | str) -> None:
        """Answer the next requests with ``replies``, in order."""
        for reply in replies:
            self._replies.put(reply)

    def url(self, path: str = "/") -> str:
        return f"{self.scheme}://127.0.0.1:{self.port}{path}"

    def close(self) -> None:
        self._release.set()
        self._server.shutdown()
        self._server.server_close()
        self._thread.join(5)


class _Recorder:
    """aiosmtpd handler: keeps each accepted message; RCPT and DATA answers can be scripted."""

    def __init__(self, rcpt_reply: str | None, data_reply: str | None) -> None:
        self.messages: list[tuple[Envelope, EmailMessage]] = []
        self.rcpt_reply = rcpt_reply
        self.data_reply = data_reply

    async def handle_RCPT(
        self, server: SMTP, session: Session, envelope: Envelope, address: str, rcpt_options: list[str]
    ) -> str:
        if self.rcpt_reply:
            return self.rcpt_reply
        envelope.rcpt_tos.append(address)
        return "250 OK"

    async def handle_DATA(self, server: SMTP, session: Session, envelope: Envelope) -> str:
        if self.data_reply:
            return self.data_reply
        assert isinstance(envelope.content, bytes)
        parsed = message_from_bytes(envelope.content, policy=policy.default)
        assert isinstance(parsed, EmailMessage)
        self.messages.append((envelope, parsed))
        return "250 Message accepted"


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


class SMTPReceiver:
    """An aiosmtpd server on 127.0.0.1: ``tls`` is ``"starttls"``, ``"tls"`` (implicit) or ``"none"``.

    With ``login``, AUTH is required and only that (user, password) pair is accepted;
    :attr:`logins` records every attempt.
    """

    def __init__(
        self,
        *,
        tls: str,
        context: ssl.SSLContext | None = None,
        login: tuple[str, str] | None = None,
        rcpt_reply: str | None = None,
        data_reply: str | None = None,
    ) -> None:
        self.recorder = _Recorder(rcpt_reply, data_reply)
        self.logins: list[tuple[str, str]] = []
        self.port = free_port()
        options: dict[str, Any] = {}
        if login is not None:
            options.update(authenticator=self._authenticator(login), auth_required=True)
        if tls == "starttls":
            options.update(tls_context=context, require_starttls=True)
        elif tls == "tls":
            options.update(ssl_context=context, auth_require_tls=False)  # implicit TLS: the socket is TLS already
        else:
            options.update(auth_require_tls=False)
        self.controller = Controller(self.recorder, hostname="127.0.0.1", port=self.port, **options)
        self.controller.start()

    def _authenticator(self, login: tuple[str, str]) -> Any:
        def check(server: SMTP, session: Session, envelope: Envelope, mechanism: str, data: Any) -> AuthResult:
            assert isinstance(data, LoginPassword)
            attempt = (data.login.decode(), data.password.decode())
            self.logins.append(attempt)
            return AuthResult(success=attempt == login, handled=False)  # let aiosmtpd answer 235 or 535

        return check

    @property
    def messages(self) -> list[tuple[Envelope, EmailMessage]]:
        return self.recorder.messages

    def close(self) -> None:
        self.controller.stop()


class SilentTCPServer:
    """Accepts connections and never sends a byte: an SMTP server that hangs before its greeting."""

    def __init__(self) -> None:
        self._sock = socket.create_server(("127.0.0.1", 0))
        self._sock.settimeout(0.05)
        self.port = self._sock.getsockname()[1]
        self._held: list[socket.socket] = []
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._accept, daemon=True)
        self._thread.start()

    def _accept(self) -> None:
        while not self._stop.is_set():
            try:
                conn, _ = self._sock.accept()
            except TimeoutError:
                continue
            self._held.append(conn)

    def close(self) -> None:
        self._stop.set()
        self._thread.join(5)
        self._sock.close()
        for conn in self._held:
            conn.close()


def fake_program(directory: Path, name: str, script: str = "") -> Path:
    """An executable ``name`` in ``directory`` that writes its argv (NUL-separated) to ``<name>.argv``.

    ``script`` is shell run after that (e.g. ``exit 3`` or ``sleep 30``).
    """
    directory.mkdir(parents=True, exist_ok=True)
    path = directory / name
    record = directory / f"{name}.argv"
    path.write_text(f"#!/bin/sh\nprintf '%s\\0' \"$0\" \"$@\" > '{record}'\n{script}\n")
    path.chmod(0o755)
    return path


def recorded_argv(program: Path) -> list[str]:
    """The argv the fake ``program`` was last run with."""
    return (program.parent / f"{program.name}.argv").read_bytes().decode().split("\0")[:-1]


def assert_secret_free(exc: BaseException, *secrets: str) -> None:
    """No secret in the error, its repr, its args, its printed traceback, or any exception chained to it."""
    texts = ["".join(traceback.format_exception(exc))]
    seen: BaseException | None = exc
    while seen is not None:
        texts += [str(seen), repr(seen), repr(seen.args)]
        seen = seen.__cause__ or seen.__context__
    for secret in secrets:
        for text in texts:
            assert secret not in text, f"secret leaked into: {text}"
