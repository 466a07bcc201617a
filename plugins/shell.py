"""Built-in ``run_command``: a shell command in the agent's workdir. Off unless granted.

It is always ``high_stakes`` (a human approves each call before it runs) and never
idempotent: a call a crash interrupted puts the run on hold rather than run twice. The
command runs with ``/bin/sh -c`` inside the agent's sandbox, with the agent's own
environment, in a new process group so a timeout kills everything it started (and
whatever is left of that group when it exits). Output is capped; the rest is read and
dropped so the command never blocks on a full pipe.
"""

from __future__ import annotations

import os
import selectors
import signal
import subprocess
import time
from collections.abc import Callable
from typing import IO, Any

import corral
from corral.sandbox.paths import refused

OUTPUT_MAX = 64 * 1024
"""Bytes of stdout, and of stderr, kept for the model."""
TIMEOUT_DEFAULT = 60.0
TIMEOUT_LIMIT = 600.0
DRAIN_SECONDS = 0.5
"""How long output is still read after the command exited (what its killed group left in the pipes)."""


@corral.tool(high_stakes=True)
def run_command(command: str, timeout: float = TIMEOUT_DEFAULT) -> dict[str, Any]:
    """Run a shell command (/bin/sh -c) in the agent's workdir and return its output.

    Needs a human's approval for every call. Returns ``exit_code`` (negative: killed by
    that signal), ``stdout`` and ``stderr`` (each at most 65536 bytes, UTF-8),
    ``truncated`` (true when output was cut) and ``timed_out`` (true when the command
    ran out of time and was killed, with everything it started). Processes it leaves
    running in the background are killed when it exits.

    Args:
        command: The command line, e.g. "ls -la | head".
        timeout: Most seconds the command may run, at most 600.
    """
    if not command.strip():
        raise refused("command is empty; give the command line to run")
    if "\x00" in command:
        raise refused("command contains a NUL byte")
    if not 0 < timeout <= TIMEOUT_LIMIT:
        raise refused(f"timeout must be more than 0 and at most {TIMEOUT_LIMIT:g} seconds")
    process = subprocess.Popen(
        ["/bin/sh", "-c", command],
        stdin=subprocess.DEVNULL,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        start_new_session=True,
        close_fds=True,
    )
    assert process.stdout is not None and process.stderr is not None
    deadline = time.monotonic() + timeout
    try:
        output, truncated, timed_out = _collect(process, process.stdout, process.stderr, deadline)
        if not timed_out:  # it may have closed its output and still be running
            try:
                process.wait(max(deadline - time.monotonic(), 0))
            except subprocess.TimeoutExpired:
                timed_out = True
    finally:
        _kill_group(process.pid)
        process.wait()
        process.stdout.close()
        process.stderr.close()
    return {
        "exit_code": process.returncode,
        "stdout": output[process.stdout].decode("utf-8", errors="replace"),
        "stderr": output[process.stderr].decode("utf-8", errors="replace"),
        "truncated": truncated,
        "timed_out": timed_out,
    }


def _collect(
    process: subprocess.Popen[bytes], stdout: IO[bytes], stderr: IO[bytes], deadline: float
) -> tuple[dict[IO[bytes], bytearray], bool, bool]:
    """Read both pipes until they close, the deadline passes, or a little after the command exits."""
    output: dict[IO[bytes], bytearray] = {stdout: bytearray(), stderr: bytearray()}
    truncated = timed_out = False
    drain_until: float | None = None
    with selectors.DefaultSelector() as selector:
        for pipe in output:
            os.set_blocking(pipe.fileno(), False)
            selector.register(pipe, selectors.EVENT_READ, data=pipe)
        while selector.get_map():
            now = time.monotonic()
            if drain_until is None and process.poll() is not None:
                _kill_group(process.pid)  # what it left in the background goes with it
                drain_until = now + DRAIN_SECONDS
            if now >= deadline and drain_until is None:
                timed_out = True
                break
            if drain_until is not None and now >= drain_until:
                break
            limit = drain_until if drain_until is not None else deadline
            for key, _ in selector.select(timeout=min(limit - now, 0.1)):
                pipe = key.data
                chunk = os.read(pipe.fileno(), 65536)
                if not chunk:
                    selector.unregister(pipe)
                    continue
                kept = output[pipe]
                room = OUTPUT_MAX - len(kept)
                if len(chunk) > room:
                    truncated = True
                kept += chunk[: max(room, 0)]
    return output, truncated, timed_out


def _kill_group(pgid: int) -> None:
    try:
        os.killpg(pgid, signal.SIGKILL)
    except (ProcessLookupError, PermissionError):
        pass  # the group is already gone


@corral.hookimpl
def corral_register_tools(register: Callable[..., Any]) -> None:
    register(run_command)
