"""The daemon loop's exception handler: an accept that fails for want of descriptors is one
log line a minute, never a traceback per attempt.

asyncio reports such a failure through the loop's handler for every connection waiting in a
listening socket's backlog and retries each second, so a flood that used up the open-files
limit wrote a traceback about 6,000 times a second (155 MB of log in 2.5 minutes). Every
other report goes to asyncio's default handler unchanged.
"""

from __future__ import annotations

import asyncio
from typing import Any

from corral.observe.quietly import EveryPeriod

ACCEPT_FAULT = "socket.accept() out of system resource"
LOGGED_EVERY = 60.0
"""Seconds between two log lines about failed accepts."""


class AcceptFaults:
    """Installed with ``loop.set_exception_handler``; counts failed accepts between log lines."""

    def __init__(self, log: Any) -> None:
        self.log = log
        self.tally = EveryPeriod(LOGGED_EVERY)

    def __call__(self, loop: asyncio.AbstractEventLoop, context: dict[str, Any]) -> None:
        if context.get("message") != ACCEPT_FAULT:
            loop.default_exception_handler(context)
            return
        failed = self.tally.due()
        if not failed:
            return
        error = context.get("exception")
        self.log.error(
            "connections cannot be accepted: the daemon is out of file descriptors",
            error=getattr(error, "strerror", None) or str(error),
            failed=failed,
            fix="find what holds connections or files open (ls /proc/PID/fd, lsof -p PID); "
            "raise the open-files limit (supervisor.conf minfds)",
        )
