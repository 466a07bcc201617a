"""A command agent's program (``[agents.NAME] command = [...]``), run by the runtime as its child.

The runtime stays the wire's speaker and the door's server; the program runs inside the same
sandbox, because everything the launcher applied is inherited: rlimits, the seccomp filter,
Landlock, the namespaces, the cgroup, the session the daemon's tree kill ends. Its stdout
is the runtime's own (the agent log); its stderr goes there too, through a thread that
keeps its end for the failure's message. The program learns of its run from its
environment (:data:`VARIABLES`, and the door's) and gives its result in the file
``$CORRAL_RESULT`` names.
"""

from __future__ import annotations

import errno
import json
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import threading
from collections.abc import Sequence
from pathlib import Path
from typing import IO, Any

from corral.errors import CommandFailed

VARIABLES = (
    "CORRAL_RUN_ID",
    "CORRAL_AGENT",
    "CORRAL_ATTEMPT",
    "CORRAL_TRACE_ID",
    "CORRAL_INPUT",
    "CORRAL_RESULT",
    "CORRAL_CODE",
)
"""What the runtime adds to the program's environment (the door adds ``CORRAL_API_URL``,
``CORRAL_DOOR_TOKEN`` and the SDKs' variables; docs/agents.md lists them all)."""
TAIL = 8000
"""Bytes of the end of stderr kept for a failure: the error and what led to it."""
LINGER = 1.0
"""Seconds the program's stderr may stay open after it ended (its last words on their way) before
the run ends without them: a child it left running holds the pipe until the daemon ends it."""
QUOTED = 1500
"""Characters of that end quoted in the failure's message (the rest is in its ``traceback``)."""


def resolved(command: Sequence[str], code: Path) -> list[str]:
    """``command`` with its relative paths made absolute against ``code``: the program when it
    names a path (``./agent.sh``, ``bin/agent``), and each argument that names a file or folder
    found in ``code`` (``agent.js``). A bare program name (``node``) is looked up on the
    sandbox's ``PATH`` when it starts; other arguments are passed as written."""
    program, *args = command
    if os.sep in program and not os.path.isabs(program):
        program = str(code / program)
    return [program, *(str(code / arg) if _in_code(arg, code) else arg for arg in args)]


def _in_code(arg: str, code: Path) -> bool:
    if not arg or os.path.isabs(arg) or arg.startswith("-"):
        return False
    try:
        return (code / arg).exists()
    except (OSError, ValueError):  # a name too long, or with a NUL
        return False


def unrunnable(program: str, path: str) -> str | None:
    """Why ``program`` (as :func:`resolved` gives it) cannot be started with ``PATH`` ``path``, or None."""
    found = program if os.sep in program else shutil.which(program, mode=os.F_OK, path=path)
    if found is not None and os.sep in program and not os.path.exists(found):
        return f"program {program} does not exist; fix the path (a relative one starts at code) or create it"
    if found is None:
        return (
            f"program {program!r} is not found on the sandbox's PATH ({path}); install it there or give its "
            "absolute path (a program in code: ./NAME)"
        )
    if os.path.isdir(found) or not os.access(found, os.X_OK):
        return (
            f"program {found} cannot be executed; make it executable (chmod +x), or name its interpreter "
            f'first: command = ["sh", "{os.path.basename(found)}"]'
        )
    return None


def run(command: Sequence[str], run: dict[str, Any]) -> Any:
    """Start ``command`` for ``run`` (the welcome's run), wait for it, and return its result:
    the JSON in ``$CORRAL_RESULT``, None when it wrote none. Raises :class:`CommandFailed`."""
    folder = Path(tempfile.mkdtemp(prefix=_folder_prefix(run["run_id"]), dir=os.environ.get("TMPDIR")))
    try:
        given, result = folder / "input.json", folder / "result.json"
        given.write_text(json.dumps(run.get("input"), ensure_ascii=False))
        env = {
            **os.environ,
            "CORRAL_RUN_ID": run["run_id"],
            "CORRAL_AGENT": run["agent"],
            "CORRAL_ATTEMPT": str(run["attempt"]),
            "CORRAL_TRACE_ID": run["trace_id"],
            "CORRAL_INPUT": str(given),
            "CORRAL_RESULT": str(result),
            "CORRAL_CODE": run["code"],
        }
        status, stderr = _wait(command, env)
        if status != 0:
            raise CommandFailed(f"{_ended(command[0], status)}{_quote(stderr)}", stderr)
        return _result(result)
    finally:
        shutil.rmtree(folder, ignore_errors=True)


def _folder_prefix(run_id: str) -> str:
    return f"corral-{run_id}-"


def remove_folders(tmpdir: Path, run_id: str) -> None:
    """Remove the run's folders (:func:`run` makes one an attempt) from ``tmpdir``, the agent's
    ``TMPDIR``. The daemon calls it when an attempt ends however it ended: a runtime that was
    killed (kill -9, wall time, cancel) never reached its ``finally``, and the run's input,
    perhaps private, would stay in the workdir for good.

    The agent owns ``tmpdir``, so nothing in it is followed: ``tmpdir`` opened with
    ``O_NOFOLLOW``, and each folder removed relative to it (``shutil.rmtree`` with ``dir_fd``
    does not follow links either); a link or file the agent put there under the name is left.
    """
    prefix = _folder_prefix(run_id)
    try:
        fd = os.open(tmpdir, os.O_RDONLY | os.O_DIRECTORY | os.O_NOFOLLOW | os.O_CLOEXEC)
    except OSError:  # no TMPDIR (the run never started) or not a folder: nothing of ours is there
        return
    try:
        for name in os.listdir(fd):
            if name.startswith(prefix):
                shutil.rmtree(name, ignore_errors=True, dir_fd=fd)
    finally:
        os.close(fd)


def _wait(command: Sequence[str], env: dict[str, str]) -> tuple[int, str]:
    """Run ``command`` to its end: (its status, negative for a signal; the end of its stderr)."""
    try:
        process = _start(command, env)
    except OSError as exc:
        why = unrunnable(command[0], env.get("PATH", os.defpath)) or f"{type(exc).__name__}: {exc}"
        if exc.errno == errno.ENOEXEC:
            why = f"{command[0]} is not a program the system can start (a script without a #! line?); name its "
            why += f'interpreter first: command = ["sh", "{os.path.basename(command[0])}"]'
        raise CommandFailed(f"the command could not be started: {why}") from None
    assert process.stderr is not None
    kept = _Tail(process.stderr)
    kept.start()
    status = process.wait()
    kept.join(LINGER)  # a child it left behind may hold the pipe open: the daemon's tree kill ends it
    return status, kept.text()


class _Tail(threading.Thread):
    """Copies the program's stderr to ours (the agent log) and keeps its last :data:`TAIL` bytes."""

    def __init__(self, stream: IO[bytes]) -> None:
        super().__init__(name="corral-command-stderr", daemon=True)
        self.stream = stream
        self.kept = b""

    def run(self) -> None:
        while chunk := os.read(self.stream.fileno(), 1 << 16):
            view = memoryview(chunk)
            while view:
                try:
                    view = view[os.write(2, view) :]
                except OSError:  # our stderr is gone; keep reading, or the program blocks on a full pipe
                    break
            self.kept = (self.kept + chunk)[-TAIL:]
        self.stream.close()

    def text(self) -> str:
        return self.kept.decode("utf-8", errors="replace")


def _start(command: Sequence[str], env: dict[str, str]) -> subprocess.Popen[bytes]:
    """Start ``command``; on Linux, through :mod:`corral.sandbox.deathsig`, so that it gets
    SIGKILL the moment the runtime dies. Raises OSError as ``Popen`` would for the program.

    Why the signal: on a cancel, the wall time, a limit or the runtime's own death, the
    daemon's tree kill ends the program and its children (the run's cgroup, the runtime's
    process group, which they stay in, and the descendants it finds); under bubblewrap the
    PID namespace dies with the daemon too. What is left is the daemon's kill -9 without
    bubblewrap: the runtime then dies by its own parent-death signal, and only this one keeps
    the program from running on, unanswered, until the next ``corral up`` kills strays (its
    children, which the signal does not reach, wait for that: docs/durability.md).

    Why not ``preexec_fn``: it runs Python between fork and exec in a process that has
    threads, which can deadlock; the launcher file does the prctl single-threaded, after an
    exec subprocess does in C. It costs an interpreter's start (about 20 ms) a run. The
    runtime starts the program from its main thread, which lives as long as it does: the
    signal follows the thread that forked, not the process.
    """
    if not sys.platform.startswith("linux"):  # no parent-death signal: the launcher's parent watch
        return subprocess.Popen(
            list(command), env=env, stdin=subprocess.DEVNULL, stderr=subprocess.PIPE, close_fds=True
        )
    from corral.sandbox import deathsig

    said, report = os.pipe()
    try:
        process = subprocess.Popen(
            [sys.executable, "-I", "-S", "-B", deathsig.__file__, str(report), str(os.getpid()), *command],
            env=env,
            stdin=subprocess.DEVNULL,
            stderr=subprocess.PIPE,
            close_fds=True,  # the wire and the door's socket stay the runtime's
            pass_fds=(report,),
        )
    except BaseException:
        os.close(said)
        raise
    finally:
        os.close(report)
    with os.fdopen(said, "rb") as answer:
        failed = answer.read()
    if not failed:
        return process
    assert process.stderr is not None
    process.stderr.close()
    process.wait()
    number = int(failed)
    raise OSError(number, os.strerror(number))


def _ended(program: str, status: int) -> str:
    if status > 0:
        return f"the command {program!r} exited with status {status}"
    number = -status
    try:
        name = signal.Signals(number).name
    except ValueError:
        name = f"signal {number}"
    why = {
        "SIGKILL": " (a limit of the run (memory_mb, processes), a kill from outside, or the kernel's OOM killer)",
        "SIGXCPU": " (limits.cpu_seconds)",
        "SIGXFSZ": " (limits.file_size_mb)",
    }.get(name, "")
    return f"the command {program!r} was killed by {name}{why}"


def _quote(stderr: str) -> str:
    text = stderr.strip()
    if not text:
        return "; it wrote nothing to stderr"
    hint = ""
    lowered = text.lower()
    if "cannot allocate wasm memory" in lowered:
        hint = (
            " (node's WebAssembly, which its fetch uses, reserves about 10 GiB of address space: run node with "
            "--disable-wasm-trap-handler, or raise limits.address_space_mb; docs/agents.md)"
        )
    elif "out of memory" in lowered or "cannot allocate memory" in lowered or "allocation failed" in lowered:
        hint = " (out of memory: see limits.address_space_mb and limits.memory_mb)"
    end = text[-QUOTED:]
    cut = "..." if len(text) > QUOTED else ""
    return f"{hint}; the end of its stderr: {cut}{end}"


def _result(path: Path) -> Any:
    """The program's result: None when ``path`` was not written, else the JSON in it."""
    from corral.jsoninput import NotStorable, parse_input

    try:
        raw = path.read_bytes()
    except FileNotFoundError:
        return None
    except OSError as exc:
        raise CommandFailed(f"the result file $CORRAL_RESULT ({path}) cannot be read: {exc}") from None
    try:
        return parse_input(raw)
    except NotStorable as exc:
        raise CommandFailed(f"the result in $CORRAL_RESULT ({path}) cannot be stored: {exc}") from None
    except ValueError as exc:
        raise CommandFailed(
            f"the result file $CORRAL_RESULT ({path}) is not valid JSON: {exc}; write one JSON value "
            "to it, or leave it unwritten for a null result"
        ) from None
