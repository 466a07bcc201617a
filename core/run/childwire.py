"""The daemon's end of one child's wire, read and answered on the store writer's thread.

The writer thread reads the pipe (this is a :class:`corral.store.writer.Source`), turns
step-path frames (``step``, ``done``, ``reconciled``) into journal jobs through the
attempt's :class:`corral.run.steps.Steps`, and writes each answer the moment its commit is
durable. Every other frame (``hello``, ``log``, ``finish``), and how the stream ended, goes
to the event loop in order through :meth:`ChildWire.next`, and only once every job asked
for by the frames before it is durable: the loop never sees ``finish`` before the last
``done`` is on disk. The protocol is strict request and reply, so the pipe is empty
whenever an answer is due and an answer up to the pipe's capacity goes in one
non-blocking write; a bigger one is finished as the child reads it.
"""

from __future__ import annotations

import asyncio
import collections
import os
import threading
import time
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

from corral import wire
from corral.errors import ProtocolError

if TYPE_CHECKING:
    from corral.store.writer import Callback, Job

FRAME_DEADLINE = 10.0
"""Once a frame has begun it must arrive whole within this many seconds."""
REPLY_TIMEOUT = 10.0
"""An answer the child has not taken within this many seconds ends the run."""
_READ_SIZE = 1 << 18
_MAX_UNREAD = 256  # frames given to the loop and not yet taken before reading pauses


class StepPath:
    """What serves the step-path frames on the writer thread (implemented by corral.run.steps)."""

    HANDLES: frozenset[str] = frozenset()

    def take(self, message: dict[str, Any]) -> list[tuple[Job, Callback]]:
        """Jobs for one frame, in order."""
        raise NotImplementedError

    def last_seq(self) -> int:
        """The step the agent last asked for (0: none yet)."""
        raise NotImplementedError

    def flush(self, *, now: float | None = None) -> list[tuple[Job, Callback]]:
        """Jobs for whatever was taken but not yet journaled: all of it, or with ``now``
        only what has waited past :meth:`deadline`."""
        raise NotImplementedError

    def deadline(self) -> float | None:
        """When what was taken must be journaled even if nothing follows it."""
        raise NotImplementedError


class ChildWire:
    """Both pipes of one child's wire, as the daemon uses them."""

    def __init__(self, read_fd: int, write_fd: int, *, max_bytes: int) -> None:
        self.max_bytes = max_bytes
        self.deadline_seconds = FRAME_DEADLINE
        self.reply_timeout = REPLY_TIMEOUT
        self.reading = True
        self.finished = False  # the loop has seen the end of the stream (or a broken frame)
        self._loop = asyncio.get_running_loop()
        self._read_fd = read_fd
        self._write_fd = write_fd
        os.set_blocking(read_fd, False)
        os.set_blocking(write_fd, False)
        self._poke: Callable[[], None] = lambda: None
        self._steps: StepPath | None = None
        # writer thread only
        self._buffer = bytearray()
        self._partial_since: float | None = None
        self._inflight = 0  # jobs asked for and not yet durable
        self._held: list[Any] = []  # frames, ends and work for the loop, behind those jobs
        self._ended = False
        self._failure: Exception | None = None  # what the writer thread failed with (:meth:`failed`)
        # shared, under the lock
        self._lock = threading.Lock()
        self._unread = 0
        self._pending = bytearray()
        self._pending_since: float | None = None
        self._closed = False
        # event loop only
        self._queue: collections.deque[Any] = collections.deque()
        self._waiter: asyncio.Future[None] | None = None

    # ------------------------------------------------------------------ event loop

    def serve(self, steps: StepPath) -> None:
        """Hand step-path frames to ``steps`` from now on; call before attaching."""
        self._steps = steps

    def attached(self, poke: Callable[[], None]) -> None:
        """The writer serves this wire now; ``poke`` wakes its thread."""
        self._poke = poke

    async def next(self, timeout: float | None = None) -> Any:
        """The next frame for the loop; None once the stream has ended cleanly.

        ``timeout`` bounds the wait (TimeoutError); without it the wait is unbounded, as a
        run may think for a long time. A broken stream raises ProtocolError, and a step the
        journal ended the run on raises what :mod:`corral.run.steps` forwarded.
        """
        while not self._queue:
            self._waiter = self._loop.create_future()
            try:
                if timeout is None:
                    await self._waiter
                else:
                    async with asyncio.timeout(timeout):
                        await self._waiter
            finally:
                self._waiter = None
        item = self._queue.popleft()
        if item is None or isinstance(item, ProtocolError) or item is self._failure:
            self.finished = True
        with self._lock:
            self._unread -= 1
            resume = not self.reading and not self._ended and self._unread <= _MAX_UNREAD // 2
            if resume:
                self.reading = True
                if self._partial_since is not None:  # the frame waited on our pause, not on the child
                    self._partial_since = time.monotonic()
        if resume:
            self._poke()
        if isinstance(item, BaseException):
            raise item
        return item

    def _arrive(self, items: list[Any]) -> None:
        self._queue.extend(items)
        if self._waiter is not None and not self._waiter.done():
            self._waiter.set_result(None)

    # ------------------------------------------------------------------ writer thread

    def fileno(self) -> int:
        return self._read_fd

    def readable(self) -> list[tuple[Job, Callback]]:
        """Read and parse what is there; step-path frames become jobs, the rest is forwarded."""
        if self._ended:
            self.reading = False  # the loop may have resumed it just as it ended
            return []
        try:
            data = os.read(self._read_fd, _READ_SIZE)
        except BlockingIOError:
            return []
        except OSError as exc:
            return self._end_with_outcomes(ProtocolError(f"wire pipe failed: {exc}"))
        if not data:
            if self._buffer:
                have = len(self._buffer)
                got = have - wire.HEADER.size if have >= wire.HEADER.size else have
                return self._end_with_outcomes(ProtocolError(f"stream ended mid-frame after {got} bytes"))
            return self._end_with_outcomes(None)
        self._buffer += data
        jobs: list[tuple[Job, Callback]] = []
        header = wire.HEADER
        whole = 0  # frames completed by this read
        try:
            while len(self._buffer) >= header.size:
                (length,) = header.unpack_from(self._buffer)
                if length > self.max_bytes:
                    raise ProtocolError(f"frame of {length} bytes exceeds the {self.max_bytes}-byte limit")
                end = header.size + length
                if len(self._buffer) < end:
                    break
                message = wire.decode(bytes(self._buffer[header.size : end]), wire.CHILD_MESSAGES)
                del self._buffer[:end]
                whole += 1
                if self._steps is not None and message["t"] in self._steps.HANDLES:
                    jobs += self._steps.take(message)
                else:
                    jobs += self._steps.flush() if self._steps is not None else []
                    self._forward(message, len(jobs))
            if self._steps is not None:
                jobs += self._steps.flush(now=time.monotonic())
        except ProtocolError as exc:
            if self._steps is not None:
                jobs += self._steps.flush()  # what was read whole before the bad frame still counts
            self._forward(exc, len(jobs))
            self._stop_reading()
        # the deadline is for one frame: a new one started by this read gets its own
        if not self._buffer:
            self._partial_since = None
        elif whole or self._partial_since is None:
            self._partial_since = time.monotonic()
        return self._count(jobs)

    def _count(self, jobs: list[tuple[Job, Callback]]) -> list[tuple[Job, Callback]]:
        return [(job, self._counted(callback)) for job, callback in jobs]

    def _counted(self, callback: Callback) -> Callback:
        self._inflight += 1

        def done(ok: bool, value: Any) -> None:
            try:
                callback(ok, value)
            finally:
                self._inflight -= 1
                if self._inflight == 0 and self._held:
                    self._release()

        return done

    def _forward(self, item: Any, jobs_before: int = 0) -> None:
        """Give ``item`` to the loop once every job asked for before it is durable; a log
        line learns the step the agent last asked for (as ``seq``) here, in order."""
        if isinstance(item, dict) and item["t"] == "log" and self._steps is not None:
            item["seq"] = self._steps.last_seq()
        self._held.append(item)
        if self._inflight == 0 and jobs_before == 0:
            self._release()

    def deliver(self, item: object) -> None:
        """For :mod:`corral.run.steps`, from a job's callback on the writer thread: work for the
        loop (a model call to make), in order after every job asked for before it."""
        self._forward(item)

    def deliver_early(self, item: object) -> bool:
        """For :mod:`corral.run.steps`, from a job on the writer thread, before its commit: give
        ``item`` (a model call to make) to the loop now, if nothing waits for the loop ahead
        of it; False (nothing done) otherwise. It overtakes only journal writes, which the
        writer keeps in order, never a frame the child sent before it."""
        if self._held or self._ended:
            return False
        self._held.append(item)
        self._release()
        return True

    def forward(self, item: BaseException) -> None:
        """For :mod:`corral.run.steps`, from a job's callback on the writer thread: the journal
        ended the run. It goes ahead of whatever waited behind that job (a ``finish`` read
        together with a ``done`` that then failed to journal must not count)."""
        self._held.insert(0, item)
        if self._inflight == 0:
            self._release()

    def _release(self) -> None:
        items, self._held = self._held, []
        with self._lock:
            self._unread += len(items)
            if self._unread >= _MAX_UNREAD and not self._ended:
                self.reading = False  # the loop is behind: the child waits in its own write
                self._partial_since = None  # a frame cut by our pause is not the child's delay
        try:
            self._loop.call_soon_threadsafe(self._arrive, items)
        except RuntimeError:
            pass  # the loop is gone: nobody is waiting

    def _end_with_outcomes(self, item: ProtocolError | None) -> list[tuple[Job, Callback]]:
        """The stream ended: outcomes the child reported and that still wait for a next
        step are journaled now, and the end reaches the loop behind them."""
        jobs = self._steps.flush() if self._steps is not None else []
        self._forward(item, len(jobs))
        self._stop_reading()
        return self._count(jobs)

    def failed(self, exc: Exception) -> None:
        """The writer thread failed on this wire (a bug of ours): the loop gets ``exc`` in
        place of what comes next, and the attempt ends the run (as the engine ends any run
        it fails on), instead of the child waiting for ever on a step nobody answers."""
        self._failure = exc
        self._end(exc)

    def _end(self, item: Exception | None) -> None:
        self._forward(item)
        self._stop_reading()

    def _stop_reading(self) -> None:
        self._ended = True
        self._buffer.clear()
        self._partial_since = None
        self.reading = False

    def deadline(self) -> float | None:
        # once the stream has ended, what the steps still wait for (a tool's next try) has no child to go to
        due = self._steps.deadline() if self._steps is not None and not self._ended else None
        if self._partial_since is not None and self.reading:
            frame = self._partial_since + self.deadline_seconds
            due = frame if due is None else min(due, frame)
        if self._pending_since is not None:
            reply = self._pending_since + self.reply_timeout
            due = reply if due is None else min(due, reply)
        return due

    def expired(self, now: float) -> list[tuple[Job, Callback]]:
        jobs = self._count(self._steps.flush(now=now)) if self._steps is not None and not self._ended else []
        if self.reading and self._partial_since is not None and now >= self._partial_since + self.deadline_seconds:
            self._end(ProtocolError(f"frame did not arrive whole within {self.deadline_seconds:g}s"))
        if self._pending_since is not None and now >= self._pending_since + self.reply_timeout:
            with self._lock:
                self._pending.clear()
                self._pending_since = None
            self._end(ProtocolError(f"the agent stopped reading replies for {self.reply_timeout:g}s"))
        return jobs

    # ------------------------------------------------------------------ writing, any thread

    def send(self, message: dict[str, Any]) -> None:
        """Write one message; never blocks. After :meth:`close`, or once the child has gone,
        messages are dropped (how the stream ends reports what happened)."""
        data = wire.encode(message)
        with self._lock:
            if self._closed:
                return
            if self._pending:
                self._pending += data
                return
            try:
                written = os.write(self._write_fd, data)
            except BlockingIOError:
                written = 0
            except OSError:
                self._closed = True
                return
            if written == len(data):
                return
            self._pending += data[written:]
            self._pending_since = time.monotonic()
        self._poke()  # the writer thread finishes it as the child reads

    @property
    def pending(self) -> int:
        """Bytes of answers not yet taken by the child."""
        return len(self._pending)

    def writing(self) -> int | None:
        return self._write_fd if self._pending and not self._closed else None

    def writable(self) -> None:
        with self._lock:
            if not self._pending or self._closed:
                return
            try:
                written = os.write(self._write_fd, self._pending)
            except BlockingIOError:
                return
            except OSError:
                self._pending.clear()
                self._pending_since = None
                self._closed = True
                return
            del self._pending[:written]
            self._pending_since = time.monotonic() if self._pending else None

    def close(self) -> None:
        """Close both pipe ends; call after the writer has let go (``Writer.detach``)."""
        with self._lock:
            if self._closed and self._write_fd < 0:
                return
            self._closed = True
            self._pending.clear()
            for fd in (self._read_fd, self._write_fd):
                try:
                    os.close(fd)
                except OSError:
                    pass
            self._read_fd = self._write_fd = -1
