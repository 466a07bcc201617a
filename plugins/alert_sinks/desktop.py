"""The desktop sink: a notification on the machine's own screen.

macOS: ``osascript -e 'display notification ...'``. The alert's text is written into
the AppleScript as string literals built by :func:`applescript_string`, which escapes
backslashes and quotes and spells out line breaks, so no alert text can end the
literal and run AppleScript of its own. Linux: ``notify-send`` when it is on PATH,
given the text after ``--`` so a title starting with ``-`` is not read as an option.
Elsewhere, or without the program, building the sink fails with a config error.

The program inherits the daemon's environment: it needs the session's D-Bus or
WindowServer connection, and it is a fixed system tool, not operator code.
"""

from __future__ import annotations

import shutil
import sys
from collections.abc import Mapping
from typing import ClassVar

from corral.alerts import Alert, Settings, Severity, Sink
from corral.plugins.alert_sinks import _process
from corral.plugins.alert_sinks._text import clip, headline, one_line, without_controls

_URGENCY = {Severity.INFO: "low", Severity.WARNING: "normal", Severity.CRITICAL: "critical"}
_ICON = {Severity.INFO: "dialog-information", Severity.WARNING: "dialog-warning", Severity.CRITICAL: "dialog-error"}
_BODY_CHARS = 1000
_ESCAPES = {"\\": "\\\\", '"': '\\"', "\n": "\\n", "\r": "\\r", "\t": "\\t"}


def applescript_string(text: str) -> str:
    """``text`` as a double-quoted AppleScript string literal that evaluates to ``text``.

    AppleScript knows the escapes ``\\\\ \\" \\n \\r \\t``; other control characters are
    dropped, since a notification cannot show them anyway.
    """
    body = "".join(_ESCAPES.get(c, c) for c in without_controls(text))
    return f'"{body}"'


def subtitle(alert: Alert) -> str:
    """Severity and agent, the line under the title."""
    parts = ["resolved" if alert.resolved else alert.severity.value]
    if alert.agent:
        parts.append(alert.agent)
    return one_line(" · ".join(parts), 100)


def osascript_argv(program: str, alert: Alert, *, sound: str | None) -> list[str]:
    """The macOS command line: ``program -e 'display notification "..." with title "..." ...'``."""
    script = (
        f"display notification {applescript_string(clip(alert.body or alert.title, _BODY_CHARS))}"
        f" with title {applescript_string(headline(alert, 120))}"
        f" subtitle {applescript_string(subtitle(alert))}"
    )
    if sound:
        script += f" sound name {applescript_string(sound)}"
    return [program, "-e", script]


def notify_send_argv(program: str, alert: Alert) -> list[str]:
    """The Linux command line for ``notify-send``."""
    return [
        program,
        "--app-name=corral",
        f"--urgency={'low' if alert.resolved else _URGENCY[alert.severity]}",
        f"--icon={_ICON[alert.severity]}",
        "--",
        headline(alert, 120),
        clip(without_controls(f"{subtitle(alert)}\n{alert.body}".rstrip()), _BODY_CHARS),
    ]


class DesktopSink(Sink):
    """Shows each alert as a desktop notification.

    Config: ``sound`` (macOS only: a sound name from System Settings, e.g. ``"Basso"``),
    ``timeout``. ``platform`` is ``sys.platform`` unless a test says otherwise.
    """

    kind: ClassVar[str] = "desktop"

    def __init__(
        self, config: Mapping[str, object], *, section: str | None = None, platform: str = sys.platform
    ) -> None:
        self.platform = platform
        super().__init__(config, section=section)

    def _configure(self, settings: Settings) -> None:
        self.sound = settings.optional_text("sound")
        name = "osascript" if self.platform == "darwin" else "notify-send"
        self.program = shutil.which(name) or ""
        if self.platform == "darwin":
            if not self.program:
                settings.fail_table("desktop notifications are not available on this machine: osascript is missing")
        elif self.platform.startswith("linux"):
            if not self.program:
                settings.fail_table(
                    "desktop notifications are not available on this machine: notify-send is not on PATH;"
                    " install it (Debian/Ubuntu: apt install libnotify-bin) or remove this sink",
                )
            if self.sound:
                settings.fail("sound", "is only supported on macOS; remove it")
        else:
            settings.fail_table(f"desktop notifications are not available on this machine ({self.platform})")

    def target(self) -> str:
        return f"the desktop ({self.program or 'unavailable'})"

    async def _send(self, alert: Alert) -> None:
        if self.platform == "darwin":
            argv = osascript_argv(self.program, alert, sound=self.sound)
        else:
            argv = notify_send_argv(self.program, alert)
        try:
            finished = await _process.run(argv, stdin=b"", env=None)
        except OSError as exc:
            failure = self._error(f"could not start {self.program}: {exc.strerror or exc}", retryable=False)
        else:
            if finished.returncode == 0:
                return
            stderr = one_line(finished.stderr.decode("utf-8", "replace"), 300) or "(no output)"
            failure = self._error(f"{self.program} exited with status {finished.returncode}: {stderr}", retryable=False)
        raise failure
