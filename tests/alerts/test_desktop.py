"""The desktop sink: the exact argv for notify-send and osascript, run through fake programs on PATH."""

from __future__ import annotations

import asyncio
import dataclasses
import re
import time
from pathlib import Path

import pytest

from corral.alerts import Alert, SinkError
from corral.errors import ConfigError
from corral.plugins.alert_sinks.desktop import DesktopSink, applescript_string, osascript_argv

from .receivers import fake_program, recorded_argv

_LITERAL = r'"((?:[^"\\]|\\.)*)"'
_SCRIPT = re.compile(
    rf"^display notification {_LITERAL} with title {_LITERAL} subtitle {_LITERAL}(?: sound name {_LITERAL})?$"
)
_UNESCAPE = {"\\": "\\", '"': '"', "n": "\n", "r": "\r", "t": "\t"}


def _applescript_value(literal: str) -> str:
    """What AppleScript makes of a literal's inside: its five escapes, nothing else."""
    return re.sub(r"\\(.)", lambda m: _UNESCAPE[m.group(1)], literal)


@pytest.fixture
def bin_dir(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """A directory first on PATH, for fake notify-send / osascript programs."""
    directory = tmp_path / "bin"
    directory.mkdir()
    monkeypatch.setenv("PATH", f"{directory}:/usr/bin:/bin")
    return directory


@pytest.mark.parametrize(
    "text",
    [
        "plain",
        'say "hi"',
        "back\\slash\\",
        'end" & (do shell script "touch /tmp/pwned") & "',
        "two\nlines\ttab\r",
        '\\"',
    ],
)
def test_applescript_literal_evaluates_to_the_text_and_cannot_be_escaped(text: str) -> None:
    literal = applescript_string(text)
    match = re.fullmatch(_LITERAL, literal)
    assert match is not None, literal  # one literal, closed exactly at the end
    assert _applescript_value(match.group(1)) == text


def test_osascript_argv_is_one_display_notification_statement(alert: Alert) -> None:
    argv = osascript_argv("/usr/bin/osascript", alert, sound="Basso")
    assert argv[:2] == ["/usr/bin/osascript", "-e"] and len(argv) == 3
    match = _SCRIPT.fullmatch(argv[2])
    assert match is not None, argv[2]
    body, title, subtitle, sound = (_applescript_value(g) for g in match.groups())
    assert body == alert.body
    assert title == 'CRITICAL: Run "nightly" failed\\ badly Bcc: evil@example.com'
    assert (subtitle, sound) == ("critical · nightly", "Basso")


def test_macos_path_runs_osascript(bin_dir: Path, alert: Alert) -> None:
    program = fake_program(bin_dir, "osascript")
    sink = DesktopSink({"sound": "Glass"}, platform="darwin")
    asyncio.run(sink.deliver(alert))
    assert recorded_argv(program) == osascript_argv(str(program), alert, sound="Glass")


def test_linux_runs_notify_send_with_the_text_after_double_dash(bin_dir: Path, alert: Alert) -> None:
    program = fake_program(bin_dir, "notify-send")
    sink = DesktopSink({}, platform="linux")
    asyncio.run(sink.deliver(dataclasses.replace(alert, title="-h looks like an option")))
    assert recorded_argv(program) == [
        str(program),
        "--app-name=corral",
        "--urgency=critical",
        "--icon=dialog-error",
        "--",
        "CRITICAL: -h looks like an option",
        f"critical · nightly\n{alert.body}",
    ]
    asyncio.run(sink.deliver(dataclasses.replace(alert, resolved=True, body="")))
    assert recorded_argv(program)[2:7] == [
        "--urgency=low",
        "--icon=dialog-error",
        "--",
        "RESOLVED: " + 'Run "nightly" failed\\ badly Bcc: evil@example.com',
        "resolved · nightly",
    ]


def test_missing_program_is_a_config_error_naming_the_fix(bin_dir: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("PATH", str(bin_dir))  # holds neither program
    with pytest.raises(ConfigError) as caught:
        DesktopSink({"sound": "Glass"}, platform="linux")
    assert caught.value.problems == [
        "[alerts.desktop]: desktop notifications are not available on this machine: notify-send is not on PATH;"
        " install it (Debian/Ubuntu: apt install libnotify-bin) or remove this sink",
        "[alerts.desktop] sound: is only supported on macOS; remove it",
    ]
    with pytest.raises(ConfigError, match="not available on this machine: osascript is missing"):
        DesktopSink({}, platform="darwin")
    with pytest.raises(ConfigError, match=r"not available on this machine \(win32\)"):
        DesktopSink({}, platform="win32")


def test_failing_program_is_not_retryable(bin_dir: Path, alert: Alert) -> None:
    fake_program(bin_dir, "notify-send", "echo 'Cannot autolaunch D-Bus without X11 $DISPLAY' >&2; exit 1")
    with pytest.raises(SinkError) as caught:
        asyncio.run(DesktopSink({}, platform="linux").deliver(alert))
    assert not caught.value.retryable
    assert "exited with status 1: Cannot autolaunch D-Bus without X11 $DISPLAY" in str(caught.value)


def test_hanging_program_is_cut_off_by_the_timeout(bin_dir: Path, alert: Alert) -> None:
    fake_program(bin_dir, "notify-send", "sleep 30")
    sink = DesktopSink({"timeout": 0.5}, platform="linux")
    started = time.monotonic()
    with pytest.raises(SinkError, match=r"gave no answer within 0.5s") as caught:
        asyncio.run(sink.deliver(alert))
    assert time.monotonic() - started < 2
    assert caught.value.retryable
