"""A browser on the console, as far as the daemon can tell: a process of its own that logs
in and follows run pages the way ``core/console/static/console.js`` does.

``python -m benchmarks.console_viewer`` reads lines on stdin: first the login URL, then
``RUN ID`` to open that run's page (the page, then ``/live?run=ID``; on a notice, a second
later, the page's fragment again, as the script refetches a run's page; the page open
before is left), and ``STOP`` (or the end of input) to close. It prints ``pages notices
cpu`` (how many it fetched and heard, and its CPU seconds) and exits. A real browser does
this work on the operator's phone or laptop; what the daemon sees is these requests, so
this is what the benchmark puts beside it.
"""

from __future__ import annotations

import os
import sys
import threading
from urllib.parse import urlsplit

import httpx

DEBOUNCE = 1.0
"""console.js waits this long after a notice before it fetches a run's page (``soon()``)."""


class Viewer:
    """One logged-in browser tab: its cookie jar, and the run page it shows. Opening another
    run's page leaves the previous one as a browser does: its event stream is closed and a
    refetch it had pending is dropped."""

    def __init__(self, login: str) -> None:
        parts = urlsplit(login)
        self.http = httpx.Client(base_url=f"{parts.scheme}://{parts.netloc}", timeout=30)
        self.http.get(login)
        self.pages = 0
        self.notices = 0
        self._lock = threading.Lock()
        self._page: _Page | None = None

    def fetch(self, path: str, fragment: bool) -> None:
        answer = self.http.get(path, headers={"x-corral-fragment": "1"} if fragment else {})
        answer.raise_for_status()
        with self._lock:
            self.pages += 1

    def follow(self, run: str) -> None:
        """Open ``run``'s page (leaving the one open before) and keep it live until :meth:`stop`."""
        self.stop()
        self.fetch(f"/runs/{run}", fragment=False)
        self._page = _Page(self, run)

    def heard(self) -> None:
        with self._lock:
            self.notices += 1

    def stop(self) -> None:
        if self._page is not None:
            self._page.leave()
            self._page = None


class _Page:
    """One run page's live part: its event stream, and the refetch a notice schedules."""

    def __init__(self, viewer: Viewer, run: str) -> None:
        self.viewer = viewer
        self.run = run
        self.left = threading.Event()
        self.due: threading.Timer | None = None
        self.stream: httpx.Response | None = None
        opened = threading.Event()
        threading.Thread(target=self._listen, args=(opened,), daemon=True).start()
        opened.wait(30)

    def _listen(self, opened: threading.Event) -> None:
        try:
            with self.viewer.http.stream("GET", f"/live?run={self.run}", timeout=None) as stream:
                self.stream = stream
                for line in stream.iter_lines():
                    opened.set()
                    if self.left.is_set():
                        return
                    if line.startswith("event: change"):
                        self.viewer.heard()
                        if self.due is None:
                            self.due = threading.Timer(DEBOUNCE, self._refetch)
                            self.due.start()
        except Exception:  # noqa: BLE001 - closed from leave() while reading: the page is gone
            if not self.left.is_set():
                raise

    def _refetch(self) -> None:
        self.due = None
        if not self.left.is_set():
            self.viewer.fetch(f"/runs/{self.run}", fragment=True)

    def leave(self) -> None:
        self.left.set()
        if self.due is not None:
            self.due.cancel()
        if self.stream is not None:
            self.stream.close()


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
    used = os.times()
    print(viewer.pages, viewer.notices, used.user + used.system, flush=True)


if __name__ == "__main__":
    main()
