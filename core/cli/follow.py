"""``corral run AGENT --follow``: a run's log lines (its steps, its own lines, its output,
corral's lines about it) printed live while it runs, until it ends.

The lines are read from the agent's log file, as ``corral logs -f`` does, on a thread of
their own while the command waits for the run (through the daemon, or running it here in
the foreground). Following starts at the file's end before the run is asked for, so none
of its lines is missed; lines of other runs of the agent are skipped. Once the run has
ended, the follower goes on until the run's ``run ended`` line (at most :data:`TAIL`
seconds), since the lines of a run's last steps are written just after it ends.
"""

from __future__ import annotations

import json
import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from corral.observe import logview

TAIL = 3.0
"""Seconds a follower waits, after its run ended, for the run's last lines."""
POLL = 0.05


class RunFollower:
    """Prints the lines of one run of an agent's log as they are written (``show``)."""

    def __init__(self, path: Path, show: Callable[[dict[str, Any]], None]) -> None:
        self._path = path
        self._show = show
        self._run_id: str | None = None
        self._seen: list[dict[str, Any]] = []  # lines read before the run's id was known
        self._ended_at: float | None = None
        self._last_line = False  # the run's final 'run ended' line has been shown
        self._stopping = False
        self._lock = threading.Lock()
        self._ready = threading.Event()
        self._thread = threading.Thread(target=self._follow, name="corral-follow", daemon=True)

    def __enter__(self) -> RunFollower:
        self._thread.start()
        self._ready.wait(5)  # following from the file's end now, before the run is asked for
        return self

    def __exit__(self, *exc: object) -> None:
        self._stopping = True
        self._thread.join(TAIL + 1)

    def following(self, run_id: str) -> None:
        """The run to show (once the daemon, or the foreground engine, has created it)."""
        with self._lock:
            self._run_id = run_id
            seen, self._seen = self._seen, []
        for event in seen:
            self._take(event)

    def ended(self) -> None:
        """The run has ended: print what is left of it, then return."""
        self._ended_at = time.monotonic()
        self._thread.join(TAIL + 1)

    def _done(self) -> bool:
        if self._stopping:
            return True
        return self._ended_at is not None and (self._last_line or time.monotonic() - self._ended_at > TAIL)

    def _follow(self) -> None:
        events = logview.follow(self._path, poll=POLL, stop=self._done, ready=self._ready.set)
        for event in events:
            with self._lock:
                if self._run_id is None:
                    if event.get("run_id") is not None:
                        self._seen.append(event)
                    continue
            self._take(event)

    def _take(self, event: dict[str, Any]) -> None:
        if event.get("run_id") != self._run_id:
            return
        self._show(event)
        if (
            event.get("event") == "run ended" and event.get("state") != "interrupted"
        ):  # an attempt's end is not the run's
            self._last_line = True


def printer(json_lines: bool, color: bool) -> Callable[[dict[str, Any]], None]:
    """How a followed line is printed: as ``corral logs`` prints it (``--json``: raw)."""

    def show(event: dict[str, Any]) -> None:
        if json_lines:
            print(logview.printable_json(json.dumps(event, ensure_ascii=False)), flush=True)
        else:
            print(logview.render(event, color=color), flush=True)

    return show
