"""Running a short-lived program for a sink without blocking the event loop.

The program gets its own session, so when the sink's timeout cancels the call the
whole process group is killed, including anything it started that still holds the
pipes. stdout is discarded; stderr is kept up to :data:`STDERR_BYTES` (the rest is
drained and dropped) for the error message.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import signal
from collections.abc import Mapping, Sequence
from dataclasses import dataclass

STDERR_BYTES = 4096
_DRAIN_GRACE = 1.0  # after the program exits, how long a leftover child may hold stderr open


@dataclass(frozen=True, slots=True)
class Finished:
    """How the program ended: its exit status (negative: killed by that signal) and stderr's start."""

    returncode: int
    stderr: bytes


async def _feed(stream: asyncio.StreamWriter, data: bytes) -> None:
    with contextlib.suppress(BrokenPipeError, ConnectionResetError):  # the program need not read it
        stream.write(data)
        await stream.drain()
        stream.close()
        await stream.wait_closed()


async def _collect(stream: asyncio.StreamReader, kept: bytearray) -> None:
    while chunk := await stream.read(65536):
        kept += chunk[: max(0, STDERR_BYTES - len(kept))]


async def run(argv: Sequence[str], *, stdin: bytes, env: Mapping[str, str] | None) -> Finished:
    """Run ``argv`` (no shell) with ``stdin``; raises OSError when it cannot be started.

    Cancelling the call (the sink's timeout does) kills the program's process group.
    """
    proc = await asyncio.create_subprocess_exec(
        *argv,
        stdin=asyncio.subprocess.PIPE,
        stdout=asyncio.subprocess.DEVNULL,
        stderr=asyncio.subprocess.PIPE,
        env=dict(env) if env is not None else None,
        start_new_session=True,
        close_fds=True,
    )
    if proc.stdin is None or proc.stderr is None:  # pragma: no cover - both were asked for as pipes
        raise OSError("the program's pipes were not created")
    stderr = bytearray()
    tasks = (asyncio.create_task(_feed(proc.stdin, stdin)), asyncio.create_task(_collect(proc.stderr, stderr)))
    try:
        returncode = await proc.wait()
        await asyncio.wait({tasks[1]}, timeout=_DRAIN_GRACE)
        return Finished(returncode, bytes(stderr))
    finally:
        for task in tasks:
            task.cancel()
        if proc.returncode is None:
            with contextlib.suppress(ProcessLookupError, PermissionError):
                os.killpg(proc.pid, signal.SIGKILL)
            await proc.wait()
        await asyncio.gather(*tasks, return_exceptions=True)
