"""Become a program that dies with its parent: ``python -I -S -B deathsig.py FD PARENT PROGRAM [ARG...]``.

The runtime starts a command agent's program through this file (:mod:`corral.sandbox.command`)
rather than setting the parent-death signal itself between fork and exec (``preexec_fn``):
the runtime has threads (the door's server, the stderr tail), and Python code run in the
child of a threaded process's fork can deadlock on a lock another thread held at the fork
(docs: ``subprocess``, RELIABILITY.md). Here the fork and exec are subprocess's own, in C;
this process is single-threaded, sets ``PR_SET_PDEATHSIG`` on itself, checks its parent is
still the runtime (which may have died before the prctl), and execs the program: the
signal survives ``execve``.

It must not import corral: ``-S`` keeps site-packages out, so that it costs a bare
interpreter's start. ``FD`` is a pipe's write end, closed by the exec (the program started)
or given the ``errno`` of a failed one, so that the runtime says why as it would for a
program it had started itself.
"""

from __future__ import annotations

import ctypes
import os
import signal
import sys

PR_SET_PDEATHSIG = 1
ORPHANED = 70
"""The exit status when the runtime died before the signal was set (nobody reads it)."""
NOT_STARTED = 127


def main(argv: list[str]) -> None:
    report, parent, program = int(argv[0]), int(argv[1]), argv[2:]
    os.set_inheritable(report, False)  # closed by the exec: the runtime reads its end to EOF
    ctypes.CDLL(None, use_errno=True).prctl(PR_SET_PDEATHSIG, signal.SIGKILL, 0, 0, 0)
    if os.getppid() != parent:
        os._exit(ORPHANED)
    try:
        os.execvp(program[0], program)
    except OSError as exc:
        os.write(report, str(exc.errno or 0).encode())
        os._exit(NOT_STARTED)


if __name__ == "__main__":
    main(sys.argv[1:])
