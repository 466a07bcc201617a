"""A scripted HTTP server on 127.0.0.1 that plays an OpenAI-compatible, Anthropic or Ollama endpoint.

Each test queues the replies it wants (status, headers, body, a delay before answering,
a connection dropped part-way through the body) and reads back what reached the server.
It is a real server on a real socket, on its own threads, so the client under test goes
through its whole HTTP stack and its real timeouts.
"""

from __future__ import annotations

import asyncio
import json
import socket
import threading
import time
from collections import deque
from collections.abc import Sequence
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

from corral.models import Endpoint, ModelClient, Secret, Timing
from corral.plugins.model_providers.anthropic import AnthropicAdapter
from corral.plugins.model_providers.openai import OpenAIAdapter

ADAPTERS = {"openai": OpenAIAdapter(), "anthropic": AnthropicAdapter()}
"""The built-in adapters by provider name, as the built-in plugin registers them."""

NO_REPLY_STATUS = 418
"""What an unscripted request gets: a 4xx corral never retries, so a test that under-scripts fails fast."""


@dataclass(frozen=True)
class Reply:
    """One scripted answer. ``body`` may be bytes, text, or a JSON-able object."""

    status: int = 200
    body: Any = b""
    headers: dict[str, str] = field(default_factory=dict)
    delay: float = 0.0
    drop_after: int | None = None

    def payload(self) -> bytes:
        """The body as bytes on the wire."""
        if isinstance(self.body, bytes):
            return self.body
        if isinstance(self.body, str):
            return self.body.encode()
        return json.dumps(self.body).encode()


@dataclass(frozen=True)
class Received:
    """One request as the server saw it; ``at`` is ``time.monotonic()`` on arrival."""

    method: str
    path: str
    headers: dict[str, str]
    body: bytes
    at: float

    def json(self) -> Any:
        """The request body, decoded."""
        return json.loads(self.body)


class FakeServer:
    """Serve queued replies in order; record every request."""

    def __init__(self, port: int = 0) -> None:
        self.requests: list[Received] = []
        self._replies: deque[Reply] = deque()
        self._lock = threading.Lock()
        self._stopping = threading.Event()
        self._httpd = ThreadingHTTPServer(("127.0.0.1", port), _Handler)
        self._httpd.daemon_threads = True
        self._httpd.fake = self  # type: ignore[attr-defined]
        self._thread = threading.Thread(
            target=self._httpd.serve_forever, args=(0.02,), name="fake-model-server", daemon=True
        )

    @property
    def url(self) -> str:
        """``http://127.0.0.1:PORT``."""
        host, port = self._httpd.server_address[:2]
        return f"http://{host!s}:{port}"

    def enqueue(self, *replies: Reply) -> None:
        """Add replies to the end of the script."""
        with self._lock:
            self._replies.extend(replies)

    def start(self) -> FakeServer:
        """Begin serving on a background thread."""
        self._thread.start()
        return self

    def stop(self) -> None:
        """Wake delayed replies, stop serving and close the socket."""
        self._stopping.set()
        self._httpd.shutdown()
        self._httpd.server_close()
        self._thread.join(timeout=5)

    def _next(self, received: Received) -> Reply:
        with self._lock:
            self.requests.append(received)
            if self._replies:
                return self._replies.popleft()
        return Reply(NO_REPLY_STATUS, {"error": {"message": f"fake server: no reply scripted for {received.path}"}})


class _Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"  # keep-alive, so the client's connection pool is exercised
    disable_nagle_algorithm = True  # headers and body go out in two writes; Nagle would delay the second 40 ms

    def do_POST(self) -> None:
        self._answer()

    def do_GET(self) -> None:
        self._answer()

    def log_message(self, format: str, *args: Any) -> None:
        """Silence the default stderr access log."""

    def _answer(self) -> None:
        fake: FakeServer = self.server.fake  # type: ignore[attr-defined]
        length = int(self.headers.get("content-length") or 0)
        body = self.rfile.read(length) if length else b""
        headers = {name.lower(): value for name, value in self.headers.items()}
        reply = fake._next(Received(self.command, self.path, headers, body, time.monotonic()))
        if reply.delay and fake._stopping.wait(reply.delay):
            return
        payload = reply.payload()
        try:
            self.send_response(reply.status)
            self.send_header("content-type", "application/json")
            self.send_header("content-length", str(len(payload)))
            for name, value in reply.headers.items():
                self.send_header(name, value)
            self.end_headers()
            if reply.drop_after is None:
                self.wfile.write(payload)
                self.wfile.flush()
                return
            self.wfile.write(payload[: reply.drop_after])
            self.wfile.flush()
            self.close_connection = True
            self.connection.shutdown(socket.SHUT_RDWR)
        except OSError:  # the client gave up first (a read timeout): nothing to answer
            self.close_connection = True


def closed_port_url() -> str:
    """A loopback URL where nothing listens: connections are refused at once."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    return f"http://127.0.0.1:{port}"


def openai_body(
    text: str | None = "",
    tool_calls: Sequence[tuple[str, str, str]] = (),
    *,
    finish: str = "stop",
    usage: tuple[int, int] = (12, 5),
    cached: int = 0,
    model: str = "fake-gpt",
) -> dict[str, Any]:
    """A Chat Completions answer; ``tool_calls`` are (id, name, argument JSON text)."""
    message: dict[str, Any] = {"role": "assistant", "content": text}
    if tool_calls:
        message["tool_calls"] = [
            {"id": id_, "type": "function", "function": {"name": name, "arguments": args}}
            for id_, name, args in tool_calls
        ]
    return {
        "id": "chatcmpl-1",
        "object": "chat.completion",
        "model": model,
        "choices": [{"index": 0, "message": message, "finish_reason": finish}],
        "usage": {
            "prompt_tokens": usage[0],
            "completion_tokens": usage[1],
            "total_tokens": sum(usage),
            "prompt_tokens_details": {"cached_tokens": cached},
        },
    }


def anthropic_body(
    text: str = "",
    tool_uses: Sequence[tuple[str, str, Any]] = (),
    *,
    stop: str = "end_turn",
    usage: tuple[int, int] = (12, 5),
    cache: tuple[int, int] = (0, 0),
    model: str = "fake-claude",
) -> dict[str, Any]:
    """A Messages answer; ``tool_uses`` are (id, name, input object); ``cache`` is (read, created)."""
    content: list[dict[str, Any]] = [{"type": "text", "text": text}] if text else []
    content += [{"type": "tool_use", "id": id_, "name": name, "input": args} for id_, name, args in tool_uses]
    return {
        "id": "msg_1",
        "type": "message",
        "role": "assistant",
        "model": model,
        "content": content,
        "stop_reason": stop,
        "usage": {
            "input_tokens": usage[0],
            "output_tokens": usage[1],
            "cache_read_input_tokens": cache[0],
            "cache_creation_input_tokens": cache[1],
        },
    }


class FakeTime:
    """A clock that only moves when the code under test sleeps; sleeps are recorded, not slept."""

    WALL_START = 1_700_000_000.0

    def __init__(self) -> None:
        self.now = 0.0
        self.sleeps: list[float] = []
        self.draw = 0.5

    async def sleep(self, seconds: float) -> None:
        """Move the clock instead of waiting."""
        self.sleeps.append(seconds)
        self.now += seconds
        await asyncio.sleep(0)

    def timing(self) -> Timing:
        """The gateway's clock, sleep and jitter, all on this fake."""
        return Timing(
            monotonic=lambda: self.now,
            wall=lambda: self.WALL_START + self.now,
            sleep=self.sleep,
            random=lambda: self.draw,
        )


def endpoint(
    server: FakeServer | str, *, provider: str = "openai", key: str | None = None, **settings: Any
) -> Endpoint:
    """An endpoint on the fake server (or a URL): short timeouts, fast retries, unless ``settings`` say otherwise."""
    defaults: dict[str, Any] = {
        "connect_timeout": 2.0,
        "read_timeout": 2.0,
        "retry_attempts": 3,
        "retry_initial_wait": 0.01,
        "retry_max_wait": 0.05,
        "max_retry_after": 10.0,
    }
    url = server if isinstance(server, str) else server.url
    base = url + ("/v1" if provider == "openai" else "")
    return Endpoint(
        name="test",
        provider=provider,
        base_url=base,
        model=f"{provider}-model",
        api_key=Secret(key) if key else None,
        key_source='[models.test] api_key_env = "TEST_KEY"' if key else "",
        **{**defaults, **settings},
    )


def model_client(target: Endpoint, **options: Any) -> ModelClient:
    """A client of ``target`` with the built-in adapter its ``provider`` names, as the daemon
    picks it from the registered providers."""
    return ModelClient(target, ADAPTERS[target.provider], **options)
