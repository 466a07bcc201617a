"""The command sink: run a program of the operator's with the alert as JSON on stdin.

The program is started directly (no shell, so alert text is never parsed as shell),
in its own session, with a small environment: the daemon's ``PATH``, ``HOME``, locale
and temp-dir variables plus the configured ``env``. Nothing else is passed on, so
model API keys in the daemon's environment never reach it. Exit status 0 is
delivered; any other status, or a kill, is retryable, with the status and the start
of stderr in the error. A program that outlives the timeout is killed with its
whole process group.
"""

from __future__ import annotations

import json
import os
import shutil
import signal
from typing import ClassVar

from corral.alerts import Alert, Settings, Sink
from corral.plugins.alert_sinks import _process
from corral.plugins.alert_sinks._text import one_line

PASSED_ENV = ("PATH", "HOME", "LANG", "LC_ALL", "LC_CTYPE", "TZ", "TMPDIR", "USER", "LOGNAME")
"""The daemon's variables a command inherits; everything else must be given in ``env``."""


def _signal_name(number: int) -> str:
    try:
        return signal.Signals(number).name
    except ValueError:
        return f"signal {number}"


class CommandSink(Sink):
    """Runs ``command`` once per alert, writing the alert's JSON (:meth:`Alert.to_dict`) to stdin.

    Config: ``command`` (required: the program and its arguments as a list), ``env``
    (extra environment variables; values are secret), ``timeout`` (default 30 s).
    """

    kind: ClassVar[str] = "command"
    default_timeout: ClassVar[float] = 30.0

    def _configure(self, settings: Settings) -> None:
        self.argv = settings.text_list("command", '["/usr/local/bin/page-me", "--urgent"]')
        self.env = settings.secret_env("env")
        if not self.argv:
            return
        program = self.argv[0]
        found = shutil.which(program)
        if found is None:
            where = "is not an executable file" if os.sep in program else "was not found on PATH"
            settings.fail("command", f"{program!r} {where}; give the full path of an executable program")
        else:
            self.argv = (os.path.abspath(found), *self.argv[1:])

    def target(self) -> str:
        return os.path.basename(self.argv[0]) if self.argv else "(no command)"

    def environment(self) -> dict[str, str]:
        """The environment the command runs with."""
        base = {name: os.environ[name] for name in PASSED_ENV if name in os.environ}
        return base | {name: value.reveal() for name, value in self.env.items()}

    async def _send(self, alert: Alert) -> None:
        stdin = (json.dumps(alert.to_dict(), ensure_ascii=False) + "\n").encode("utf-8")
        try:
            finished = await _process.run(self.argv, stdin=stdin, env=self.environment())
        except OSError as exc:
            reason = exc.strerror or type(exc).__name__
            failure = self._error(f"could not start {self.argv[0]}: {reason}; check the path", retryable=False)
        else:
            if finished.returncode == 0:
                return
            stderr = one_line(finished.stderr.decode("utf-8", "replace"), 500) or "(nothing on stderr)"
            status = (
                f"was killed by {_signal_name(-finished.returncode)}"
                if finished.returncode < 0
                else f"exited with status {finished.returncode}"
            )
            failure = self._error(f"{self.argv[0]} {status}: {stderr}", retryable=True)
        raise failure
