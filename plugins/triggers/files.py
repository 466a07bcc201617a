"""The built-in file trigger: a file or folder changes (watchdog), debounced.

watchdog reports on its own thread; each change is handed to the event loop, and the
trigger fires once the path has been quiet for ``debounce``, with the changed paths
as ``ctx.input``: ``{"paths": [...]}`` (relative to the watched folder).
"""

from __future__ import annotations

import asyncio
import fnmatch
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from watchdog.events import FileSystemEvent, FileSystemEventHandler
from watchdog.observers import Observer

from corral.schedule.triggers import BuildContext, EventTrigger, TriggerEnv

CHANGES = frozenset({"created", "modified", "moved", "deleted", "closed"})
"""watchdog event types that mean content changed (not ``opened`` or ``closed_no_write``)."""


class _Handler(FileSystemEventHandler):
    def __init__(self, trigger: FileTrigger, loop: asyncio.AbstractEventLoop) -> None:
        self.trigger = trigger
        self.loop = loop

    def on_any_event(self, event: FileSystemEvent) -> None:
        if event.event_type not in CHANGES or event.is_directory and event.event_type == "modified":
            return
        for raw in (event.src_path, getattr(event, "dest_path", "")):
            if raw:
                path = raw.decode() if isinstance(raw, bytes) else raw
                if self.trigger.matches(Path(path)):
                    self.loop.call_soon_threadsafe(self.trigger.changed, Path(path))


class FileTrigger(EventTrigger):
    """Watches ``path`` (a file, or a folder and, if ``recursive``, its subfolders)."""

    def __init__(self, path: Path, patterns: tuple[str, ...], recursive: bool, debounce: float) -> None:
        self.path = path
        self.folder = path if path.is_dir() else path.parent
        self.patterns = patterns if path.is_dir() else (path.name,)
        self.recursive = recursive and path.is_dir()
        self.debounce = debounce
        self._pending: set[str] = set()
        self._last = 0.0
        self._changed = asyncio.Event()
        self._observer: Any = None
        self._task: asyncio.Task[None] | None = None

    def describe(self) -> str:
        return f"file {self.path}" + (f" {' '.join(self.patterns)}" if self.patterns else "")

    def matches(self, path: Path) -> bool:
        return not self.patterns or any(fnmatch.fnmatch(path.name, p) for p in self.patterns)

    def changed(self, path: Path) -> None:
        try:
            self._pending.add(str(path.relative_to(self.folder)))
        except ValueError:
            self._pending.add(str(path))
        self._last = asyncio.get_running_loop().time()
        self._changed.set()

    async def start(self, env: TriggerEnv) -> None:
        observer = Observer()
        observer.schedule(_Handler(self, asyncio.get_running_loop()), str(self.folder), recursive=self.recursive)
        observer.daemon = True
        observer.start()
        self._observer = observer
        self._task = asyncio.create_task(self._settle(env))

    async def _settle(self, env: TriggerEnv) -> None:
        loop = asyncio.get_running_loop()
        while True:
            await self._changed.wait()
            while (quiet := self._last + self.debounce - loop.time()) > 0:
                await asyncio.sleep(quiet)
            paths, self._pending = sorted(self._pending), set()
            self._changed.clear()
            try:
                await env.fire({"paths": paths})
            except Exception as exc:  # one failed fire must not stop the watching
                env.log.error("file trigger could not fire", agent=env.agent, error=f"{type(exc).__name__}: {exc}")

    async def stop(self) -> None:
        if self._task is not None:
            self._task.cancel()
        if self._observer is not None:
            self._observer.stop()
            await asyncio.get_running_loop().run_in_executor(None, self._observer.join, 5)


def file_factory(settings: Mapping[str, Any], context: BuildContext) -> FileTrigger:
    """``type = "file"``: ``path`` (relative to the config's folder), optional ``patterns``
    (globs on the file name), ``recursive`` (default true), ``debounce`` (default "1s")."""
    table = context.reader(settings)
    path = Path(table.required_text("path", '"inbox" (the file or folder to watch)'))
    if table.ok("path"):
        path = (context.base_dir / path.expanduser()).resolve()
        if not path.exists():
            table.fail("path", f"{path} does not exist; create it or fix the path")
    patterns = table.optional_text_list("patterns")
    recursive = table.flag("recursive", True)
    debounce = table.duration("debounce", 1.0, zero=True)
    table.finish()
    return FileTrigger(path, patterns, recursive, debounce)
