"""The daemon's single LMDB writer thread: group commit, and the hot path of every step.

Jobs reach this thread two ways: functions submitted from any thread, and *sources*, the
daemon's ends of agent processes' wires, which this thread reads itself. A source turns
the frames it reads into jobs (a step's journal decision), each with a callback that
answers the agent once the job is durable. Every job of a round runs in one transaction,
each nested in its own (a job that raises is undone alone), and one fsync makes the round
durable before any callback runs or future resolves. That is how several agents' steps
share one commit without any of them being answered before it is on disk, and why a step
costs two pipe hops, the Python that decides it and one fsync: no event-loop wake-up and
no hand-off between threads on its way.
"""

from __future__ import annotations

import asyncio
import os
import queue
import selectors
import threading
import time
from collections.abc import Callable
from concurrent.futures import Future
from typing import Any, Protocol, TypeVar

import lmdb

from corral.errors import StoreError
from corral.store.env import Store

T = TypeVar("T")
Job = Callable[[lmdb.Transaction], Any]
Callback = Callable[[bool, Any], None]
"""Called on the writer thread after the commit: ``(True, value)`` or ``(False, exception)``."""
_MAX_BATCH = 512
_MAX_MAP_BYTES = 1 << 40


class Source(Protocol):
    """A wire end served by the writer thread (see :class:`corral.run.childwire.ChildWire`)."""

    reading: bool
    """Whether the thread should watch :meth:`fileno` for input; set False to pause."""

    def fileno(self) -> int: ...

    def attached(self, poke: Callable[[], None]) -> None:
        """Now served; ``poke()`` (from any thread) makes the writer look at it again."""

    def readable(self) -> list[tuple[Job, Callback]]:
        """Read what is there; return the jobs it asks for. Called on the writer thread."""

    def writing(self) -> int | None:
        """The fd to watch for room to write (replies not yet taken), or None."""

    def writable(self) -> None:
        """Write what is pending; called on the writer thread."""

    def deadline(self) -> float | None:
        """When (``time.monotonic()``) :meth:`expired` must be called, if ever."""

    def expired(self, now: float) -> list[tuple[Job, Callback]]:
        """A deadline passed: the jobs that are due now, if any. Called on the writer thread."""

    def failed(self, exc: Exception) -> None:
        """One of the calls above raised ``exc`` (a bug): stop reading and let the source's
        owner learn it, so what waits on this end ends instead of waiting for ever."""


class _Waiter:
    """Where a job's outcome goes: a thread's Future, an event loop's future, or a callback."""

    __slots__ = ("future", "loop", "callback")

    def __init__(
        self,
        future: Future[Any] | asyncio.Future[Any] | None,
        loop: asyncio.AbstractEventLoop | None = None,
        callback: Callback | None = None,
    ) -> None:
        self.future = future
        self.loop = loop
        self.callback = callback


class _Attach:
    __slots__ = ("source",)

    def __init__(self, source: Source) -> None:
        self.source = source


class _Detach:
    __slots__ = ("source", "future", "loop")

    def __init__(self, source: Source, future: asyncio.Future[None], loop: asyncio.AbstractEventLoop) -> None:
        self.source = source
        self.future = future
        self.loop = loop


def _resolve(outcomes: list[tuple[asyncio.Future[Any], bool, Any]]) -> None:
    """On the event loop: hand every job of a round its outcome in one wake-up."""
    for future, ok, value in outcomes:
        if future.cancelled():
            continue
        if ok:
            future.set_result(value)
        else:
            future.set_exception(value)


class Writer:
    """Owns the store's write side; the only code in the daemon that touches LMDB."""

    def __init__(self, store: Store, *, on_event: Callable[[str, str], None] = lambda level, message: None) -> None:
        self.store = store
        self._on_event = on_event
        self._queue: queue.SimpleQueue[tuple[Job, _Waiter] | _Attach | _Detach | None] = queue.SimpleQueue()
        self._wake_read, self._wake_write = os.pipe()
        os.set_blocking(self._wake_read, False)
        os.set_blocking(self._wake_write, False)
        self._selector = selectors.DefaultSelector()
        self._selector.register(self._wake_read, selectors.EVENT_READ, None)
        self._sources: dict[int, Source] = {}  # by id(): what is attached
        self._watched: dict[int, tuple[int, int]] = {}  # by id(): (read fd or -1, write fd or -1) registered
        self.commits = 0
        self.after_commit: Callable[[], None] | None = None
        """Called on this thread after each durable round, before its callers are answered (the
        event stream's wake-up: a caller's next move comes after it); it must be quick."""
        self._thread = threading.Thread(target=self._loop, name="corral-store-writer", daemon=True)
        self._thread.start()

    # ------------------------------------------------------------------ any thread

    def submit(self, job: Callable[[lmdb.Transaction], T]) -> Future[T]:
        """Queue ``job`` from any thread; the future resolves once its effects are durable."""
        future: Future[T] = Future()
        self._put((job, _Waiter(future)))
        return future

    async def run(self, job: Callable[[lmdb.Transaction], T]) -> T:
        """Await ``job`` from the event loop; a whole round wakes the loop once."""
        loop = asyncio.get_running_loop()
        future: asyncio.Future[T] = loop.create_future()
        self._put((job, _Waiter(future, loop)))
        return await future

    def call(self, job: Callable[[lmdb.Transaction], T]) -> T:
        """Run ``job`` and wait for it from a plain thread."""
        return self.submit(job).result()

    def attach(self, source: Source) -> None:
        """Start serving ``source`` on the writer thread."""
        source.attached(self.poke)
        self._put(_Attach(source))

    async def detach(self, source: Source) -> None:
        """Stop serving ``source``; returns once the thread no longer touches it and every job
        it asked for is durable and called back."""
        loop = asyncio.get_running_loop()
        future: asyncio.Future[None] = loop.create_future()
        self._put(_Detach(source, future, loop))
        await future

    def poke(self) -> None:
        """Make the thread look at its sources again (one paused or resumed, a reply pending)."""
        try:
            os.write(self._wake_write, b"\0")
        except BlockingIOError:
            pass  # a wake-up is already pending
        except OSError:
            pass  # closed: the thread has stopped

    def close(self) -> None:
        """Finish every queued job, then stop the thread."""
        self._put(None)
        self._thread.join()
        self._selector.close()
        os.close(self._wake_read)
        os.close(self._wake_write)

    def _put(self, item: tuple[Job, _Waiter] | _Attach | _Detach | None) -> None:
        self._queue.put(item)
        self.poke()

    # ------------------------------------------------------------------ the thread

    def _loop(self) -> None:
        while True:
            due = self._next_deadline()
            if not self._queue.empty():
                timeout: float | None = 0
            else:
                timeout = None if due is None else max(0.0, due - time.monotonic())
            events = self._selector.select(timeout)
            batch: list[tuple[Job, _Waiter]] = []
            detached: list[_Detach] = []
            stop = False
            for key, mask in events:
                if key.data is None:
                    self._drain_wake()
                    continue
                source: Source = key.data
                if id(source) not in self._sources:
                    continue
                try:
                    if mask & selectors.EVENT_READ and key.fd == source.fileno() and source.reading:
                        batch += [(job, _Waiter(None, callback=callback)) for job, callback in source.readable()]
                    if mask & selectors.EVENT_WRITE:
                        source.writable()
                except Exception as exc:  # a source's bug must not stop every other agent's steps
                    self._source_failed(source, exc)
            if due is not None and due <= time.monotonic():  # deadlines set since are later still
                batch += self._expire()
            while len(batch) < _MAX_BATCH:
                try:
                    item = self._queue.get_nowait()
                except queue.Empty:
                    break
                if item is None:
                    stop = True
                    break
                if isinstance(item, _Attach):
                    self._sources[id(item.source)] = item.source
                elif isinstance(item, _Detach):
                    self._sources.pop(id(item.source), None)
                    detached.append(item)
                else:
                    batch.append(item)
            if batch:
                self._run_batch(batch)
            self._sync_watches()
            for item in detached:
                item.loop.call_soon_threadsafe(_resolve, [(item.future, True, None)])
            if stop and self._queue.empty():
                return
            if stop:
                self._queue.put(None)  # finish what was queued behind a full batch first

    def _next_deadline(self) -> float | None:
        """The earliest of the sources' deadlines (``time.monotonic()``), if any."""
        due: float | None = None
        for source in self._sources.values():
            deadline = source.deadline()
            if deadline is not None and (due is None or deadline < due):
                due = deadline
        return due

    def _expire(self) -> list[tuple[Job, _Waiter]]:
        now = time.monotonic()
        due: list[tuple[Job, _Waiter]] = []
        for source in list(self._sources.values()):
            deadline = source.deadline()
            if deadline is not None and deadline <= now:
                try:
                    due += [(job, _Waiter(None, callback=callback)) for job, callback in source.expired(now)]
                except Exception as exc:  # noqa: BLE001 - same as above
                    self._source_failed(source, exc)
        return due

    def _source_failed(self, source: Source, exc: Exception) -> None:
        self._on_event("error", f"store writer: a wire end failed ({type(exc).__name__}: {exc})")
        try:
            source.failed(exc)
        except Exception as again:  # noqa: BLE001 - the thread must outlive it; the event says what happened
            self._on_event("error", f"store writer: a failed wire end could not be ended ({again!r})")

    def _drain_wake(self) -> None:
        try:
            while os.read(self._wake_read, 4096):
                pass
        except BlockingIOError:
            pass

    def _sync_watches(self) -> None:
        """Register each source's fds for exactly what it wants now; forget detached ones."""
        for key in list(self._watched):
            if key not in self._sources:
                self._set_watch(key, None, -1, -1)
        for key, source in self._sources.items():
            want_read = source.fileno() if source.reading else -1
            want_write = source.writing()
            self._set_watch(key, source, want_read, -1 if want_write is None else want_write)

    def _set_watch(self, key: int, source: Source | None, read_fd: int, write_fd: int) -> None:
        old_read, old_write = self._watched.get(key, (-1, -1))
        if (old_read, old_write) == (read_fd, write_fd):
            return
        for fd in {old_read, old_write} - {-1}:
            try:
                self._selector.unregister(fd)
            except (KeyError, ValueError, OSError):
                pass
        if source is None:
            self._watched.pop(key, None)
            return
        try:
            if read_fd != -1 and read_fd == write_fd:
                self._selector.register(read_fd, selectors.EVENT_READ | selectors.EVENT_WRITE, source)
            else:
                if read_fd != -1:
                    self._selector.register(read_fd, selectors.EVENT_READ, source)
                if write_fd != -1:
                    self._selector.register(write_fd, selectors.EVENT_WRITE, source)
        except (ValueError, OSError) as exc:  # a closed fd: the source is going away
            self._on_event("warning", f"store writer: cannot watch a wire end ({exc})")
            read_fd = write_fd = -1
        self._watched[key] = (read_fd, write_fd)

    def _run_batch(self, batch: list[tuple[Job, _Waiter]]) -> None:
        try:
            outcomes = self._commit(batch)
        except Exception as exc:  # the thread must outlive any surprise, or every write hangs
            message = f"store writer failed ({type(exc).__name__}: {exc}); nothing of this batch was written"
            self._on_event("error", message)
            outcomes = [(False, StoreError(message)) for _ in batch]
        if self.after_commit is not None:  # before the results: a waiter's next move comes after it
            try:
                self.after_commit()
            except Exception as exc:  # noqa: BLE001 - the writer must outlive a broken listener
                self._on_event("error", f"store writer: after-commit work failed ({type(exc).__name__}: {exc})")
        try:
            self._deliver(batch, outcomes)
        except Exception as exc:
            self._on_event("error", f"store writer could not deliver results: {exc}")

    def _commit(self, batch: list[tuple[Job, _Waiter]]) -> list[tuple[bool, Any]]:
        """Run the batch in one transaction and one fsync; every job's (ok, value or error)."""
        env = self.store.env
        while True:
            outcomes: list[tuple[bool, Any]] = []
            try:
                with env.begin(write=True) as txn:
                    if len(batch) == 1:  # alone, a failing job undoes nothing but itself anyway
                        outcomes.append(self._run_alone(txn, batch[0][0]))
                    else:
                        outcomes += [self._run_nested(env, txn, job) for job, _ in batch]
                self.commits += 1
                return outcomes
            except lmdb.MapFullError:
                if self._grow():
                    continue
                message = "the store reached its maximum size; prune old runs or raise retention limits"
            except lmdb.Error as exc:
                message = f"store write failed ({exc}); the journal keeps everything committed before this"
            self._on_event("error", message)
            return [(False, StoreError(message)) for _ in batch]

    def _deliver(self, batch: list[tuple[Job, _Waiter]], outcomes: list[tuple[bool, Any]]) -> None:
        """Callbacks first (they answer agents), then one wake-up per event loop."""
        by_loop: dict[asyncio.AbstractEventLoop, list[tuple[asyncio.Future[Any], bool, Any]]] = {}
        for (_, waiter), (ok, value) in zip(batch, outcomes, strict=True):
            if waiter.callback is not None:
                try:
                    waiter.callback(ok, value)
                except Exception as exc:  # noqa: BLE001 - one broken callback must not stop the rest
                    self._on_event("error", f"store writer: a step callback failed ({type(exc).__name__}: {exc})")
            elif waiter.loop is not None:
                by_loop.setdefault(waiter.loop, []).append((waiter.future, ok, value))  # type: ignore[arg-type]
            elif waiter.future is not None:
                if ok:
                    waiter.future.set_result(value)
                else:
                    waiter.future.set_exception(value)
        for loop, outcomes_here in by_loop.items():
            try:
                loop.call_soon_threadsafe(_resolve, outcomes_here)
            except RuntimeError:  # that loop is closed: nobody is waiting any more
                continue

    @staticmethod
    def _run_alone(txn: lmdb.Transaction, job: Job) -> tuple[bool, Any]:
        try:
            return True, job(txn)
        except lmdb.MapFullError:
            raise
        except Exception as exc:
            txn.abort()  # the context manager then commits nothing
            return False, exc

    @staticmethod
    def _run_nested(env: lmdb.Environment, txn: lmdb.Transaction, job: Job) -> tuple[bool, Any]:
        nested = env.begin(write=True, parent=txn)
        try:
            value = job(nested)
        except lmdb.MapFullError:
            nested.abort()
            raise
        except Exception as exc:  # a job's own failure is that job's answer, not the batch's
            nested.abort()
            return False, exc
        nested.commit()
        return True, value

    def _grow(self) -> bool:
        """Double the map; safe because in the daemon no other thread opens transactions."""
        size = self.store.env.info()["map_size"]
        if size * 2 > _MAX_MAP_BYTES:
            return False
        self.store.env.set_mapsize(size * 2)
        self._on_event("info", f"store map grown to {size * 2 // 2**20} MiB")
        return True
