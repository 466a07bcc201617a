"""A browser on the console, as far as the daemon can tell: a process of its own that logs
in and follows run pages the way ``core/console/static/console.js`` does.

``python -m benchmarks.console_viewer`` reads lines on stdin: first the login URL, then
``RUN ID`` to open that run's page (the page, then ``/live?run=ID``; on a notice, a
second later, the page's fragment again, as the script refetches a run's page), and ``STOP`` (or the
end of input) to close. It prints ``pages notices`` (how many it fetched and heard) and
exits. A real browser does this work on the operator's phone or laptop; what the daemon
sees is these requests, so this is what the benchmark puts beside it.
"""

from __future__ import annotations

import os
import sys
import threading
import time
from urllib.parse import urlsplit

import httpx

DEBOUNCE = 1.0
"""console.js waits this long after a notice before it fetches a run's page (``soon()``)."""


class Viewer:
    """One logged-in browser: its cookie jar, and the run pages it follows."""

    def __init__(self, login: str) -> None:
        parts = urlsplit(login)
        self.http = httpx.Client(base_url=f"{parts.scheme}://{parts.netloc}", timeout=30)
        self.http.get(login)
        self.pages = 0
        self.notices = 0
        self._lock = threading.Lock()
        self._stop = threading.Event()

    def fetch(self, path: str, fragment: bool) -> None:
        answer = self.http.get(path, headers={"x-corral-fragment": "1"} if fragment else {})
        answer.raise_for_status()
        with self._lock:
            self.pages += 1

    def follow(self, run: str) -> None:
        """Open ``run``'s page and keep it live until :meth:`stop`."""
        self.fetch(f"/runs/{run}", fragment=False)
        opened = threading.Event()
        threading.Thread(target=self._stream, args=(run, opened), daemon=True).start()
        opened.wait(30)

    def _stream(self, run: str, opened: threading.Event) -> None:
        due: list[float] = []
        with self.http.stream("GET", f"/live?run={run}", timeout=None) as stream:
            for line in stream.iter_lines():
                opened.set()
                if self._stop.is_set():
                    return
                if line.startswith("event: change"):
                    with self._lock:
                        self.notices += 1
                    if not due:
                        due.append(time.monotonic() + DEBOUNCE)
                        threading.Timer(DEBOUNCE, self._refetch, args=(run, due)).start()

    def _refetch(self, run: str, due: list[float]) -> None:
        due.clear()
        if not self._stop.is_set():
            self.fetch(f"/runs/{run}", fragment=True)

    def stop(self) -> None:
        self._stop.set()


def main() -> None:
    viewer = Viewer(sys.stdin.readline().strip())
    print("ready", flush=True)
    for line in sys.stdin:
        words = line.split()
        if words[:1] == ["RUN"]:
            viewer.follow(words[1])
            print("following", flush=True)
        elif words[:1] == ["STOP"]:
            break
    viewer.stop()
    time.sleep(DEBOUNCE * 2)
    used = os.times()
    print(viewer.pages, viewer.notices, used.user + used.system, flush=True)


if __name__ == "__main__":
    main()
