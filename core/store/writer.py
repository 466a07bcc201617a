"""The daemon's single LMDB writer thread, with group commit.

Every job is a function of a write transaction. Jobs that arrive while a commit is
under way are run together in the next transaction, each in a nested transaction of
its own (a job that raises is undone alone), and made durable by one fsync before any
of their futures resolve. That is how several agents' steps share the cost of one
commit without any of them being answered before it is on disk.
"""

from __future__ import annotations

import asyncio
import queue
import threading
from collections.abc import Callable
from concurrent.futures import Future
from typing import Any, TypeVar

import lmdb

from corral.errors import StoreError
from corral.store.env import Store

T = TypeVar("T")
Job = Callable[[lmdb.Transaction], Any]
_MAX_BATCH = 512
_MAX_MAP_BYTES = 1 << 40


class _Waiter:
    """Where a job's outcome goes: a thread's Future, or an event loop's future."""

    __slots__ = ("future", "loop")

    def __init__(self, future: Future[Any] | asyncio.Future[Any], loop: asyncio.AbstractEventLoop | None) -> None:
        self.future = future
        self.loop = loop


def _resolve(outcomes: list[tuple[asyncio.Future[Any], bool, Any]]) -> None:
    """On the event loop: hand every job of a batch its outcome in one wake-up."""
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
        self._queue: queue.SimpleQueue[tuple[Job, _Waiter] | None] = queue.SimpleQueue()
        self._thread = threading.Thread(target=self._loop, name="corral-store-writer", daemon=True)
        self.commits = 0
        self._thread.start()

    def submit(self, job: Callable[[lmdb.Transaction], T]) -> Future[T]:
        """Queue ``job`` from any thread; the future resolves once its effects are durable."""
        future: Future[T] = Future()
        self._queue.put((job, _Waiter(future, None)))
        return future

    async def run(self, job: Callable[[lmdb.Transaction], T]) -> T:
        """Await ``job`` from the event loop; a whole batch wakes the loop once."""
        loop = asyncio.get_running_loop()
        future: asyncio.Future[T] = loop.create_future()
        self._queue.put((job, _Waiter(future, loop)))
        return await future

    def call(self, job: Callable[[lmdb.Transaction], T]) -> T:
        """Run ``job`` and wait for it from a plain thread."""
        return self.submit(job).result()

    def close(self) -> None:
        """Finish every queued job, then stop the thread."""
        self._queue.put(None)
        self._thread.join()

    def _loop(self) -> None:
        while True:
            item = self._queue.get()
            if item is None:
                return
            batch = [item]
            stop = False
            while len(batch) < _MAX_BATCH:
                try:
                    nxt = self._queue.get_nowait()
                except queue.Empty:
                    break
                if nxt is None:
                    stop = True
                    break
                batch.append(nxt)
            try:
                outcomes = self._commit(batch)
            except Exception as exc:  # the thread must outlive any surprise, or every write hangs
                message = f"store writer failed ({type(exc).__name__}: {exc}); nothing of this batch was written"
                self._on_event("error", message)
                outcomes = [(False, StoreError(message)) for _ in batch]
            try:
                self._deliver(batch, outcomes)
            except Exception as exc:
                self._on_event("error", f"store writer could not deliver results: {exc}")
            if stop:
                return

    def _commit(self, batch: list[tuple[Job, _Waiter]]) -> list[tuple[bool, Any]]:
        """Run the batch in one transaction and one fsync; every job's (ok, value or error)."""
        env = self.store.env
        while True:
            outcomes: list[tuple[bool, Any]] = []
            try:
                with env.begin(write=True) as txn:
                    for job, _ in batch:
                        outcomes.append(self._run_nested(env, txn, job))
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

    @staticmethod
    def _deliver(batch: list[tuple[Job, _Waiter]], outcomes: list[tuple[bool, Any]]) -> None:
        by_loop: dict[asyncio.AbstractEventLoop, list[tuple[asyncio.Future[Any], bool, Any]]] = {}
        for (_, waiter), (ok, value) in zip(batch, outcomes, strict=True):
            if waiter.loop is not None:
                by_loop.setdefault(waiter.loop, []).append((waiter.future, ok, value))  # type: ignore[arg-type]
            elif ok:
                waiter.future.set_result(value)
            else:
                waiter.future.set_exception(value)
        for loop, outcomes_here in by_loop.items():
            try:
                loop.call_soon_threadsafe(_resolve, outcomes_here)
            except RuntimeError:  # that loop is closed: nobody is waiting any more
                continue

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
