"""A model endpoint on 127.0.0.1 that answers at once: Chat Completions, as JSON or as an SSE
stream of several chunks. A process of its own (as a real server is), so it shares no
interpreter lock with what is measured; it prints its port on stdout and serves until
its stdin closes. Used by ``benchmarks/door.py`` and ``benchmarks/journal_growth.py``, which
start it with :func:`serving` and point a corral config at it with :func:`config`."""

from __future__ import annotations

import json
import subprocess
import sys
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parent.parent

WORDS = ["The", " answer", " is", " four", "."]
USAGE = {"prompt_tokens": 12, "completion_tokens": 5, "total_tokens": 17}


def _completion() -> bytes:
    message = {"role": "assistant", "content": "".join(WORDS)}
    choice = {"index": 0, "message": message, "finish_reason": "stop"}
    body = {"id": "c1", "object": "chat.completion", "created": 0, "model": "bench", "choices": [choice]}
    return json.dumps({**body, "usage": USAGE}).encode()


def _stream() -> bytes:
    def chunk(delta: dict[str, Any], finish: str | None = None) -> bytes:
        choice = {"index": 0, "delta": delta, "finish_reason": finish}
        data = {"id": "c1", "object": "chat.completion.chunk", "created": 0, "model": "bench", "choices": [choice]}
        return b"data: " + json.dumps(data).encode() + b"\n\n"

    parts = [chunk({"role": "assistant", "content": ""})] + [chunk({"content": word}) for word in WORDS]
    return b"".join([*parts, chunk({}, "stop"), b"data: [DONE]\n\n"])


COMPLETION, STREAM = _completion(), _stream()


class _Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    disable_nagle_algorithm = True

    def log_message(self, format: str, *args: Any) -> None:
        """No access log."""

    def do_POST(self) -> None:
        body = json.loads(self.rfile.read(int(self.headers["content-length"])))
        streamed = bool(body.get("stream"))
        payload = STREAM if streamed else COMPLETION
        self.send_response(200)
        self.send_header("content-type", "text/event-stream" if streamed else "application/json")
        self.send_header("content-length", str(len(payload)))
        self.end_headers()
        self.wfile.write(payload)


@contextmanager
def serving() -> Iterator[int]:
    """This server in a process of its own for the length of the block; yields its port."""
    server = subprocess.Popen(
        [sys.executable, "-m", "benchmarks.model_server"], cwd=REPO, stdin=subprocess.PIPE, stdout=subprocess.PIPE
    )
    assert server.stdin is not None and server.stdout is not None
    try:
        yield int(server.stdout.readline())
    finally:
        server.stdin.close()
        server.wait(10)


def config(root: Path, port: int, key_var: str, agent: str) -> Path:
    """``root/corral.toml``: model ``fake`` on this server at ``port`` (its key read from
    ``key_var``, one try a call), the console off, and ``agent``, an agent's TOML table."""
    path = root / "corral.toml"
    path.write_text(
        f"""[corral]
grace_seconds = 10

[console]
enabled = false

[models.fake]
provider = "openai"
base_url = "http://127.0.0.1:{port}/v1"
model = "bench"
api_key_env = "{key_var}"
retry_attempts = 1

{agent}"""
    )
    return path


def main() -> None:
    server = ThreadingHTTPServer(("127.0.0.1", 0), _Handler)
    server.daemon_threads = True
    threading.Thread(target=server.serve_forever, daemon=True).start()
    print(server.server_address[1], flush=True)
    sys.stdin.read()
    server.shutdown()


if __name__ == "__main__":
    main()
