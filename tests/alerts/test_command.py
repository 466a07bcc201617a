"""The command sink runs a real program: argv without a shell, the alert as JSON on stdin, a small env."""

from __future__ import annotations

import asyncio
import dataclasses
import json
import time
from pathlib import Path

import psutil
import pytest

from corral.alerts import Alert, SinkError
from corral.plugins.alert_sinks.command import PASSED_ENV, CommandSink

from .receivers import assert_secret_free, fake_program, recorded_argv

SECRET = "hunter2-command-SECRET"


def _deliver(sink: CommandSink, alert: Alert) -> SinkError | None:
    try:
        asyncio.run(sink.deliver(alert))
    except SinkError as exc:
        return exc
    return None


def test_alert_json_on_stdin_exact_argv_and_a_small_environment(
    tmp_path: Path, alert: Alert, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("OPENAI_API_KEY", "sk-daemon-only")
    out = tmp_path / "out"
    program = fake_program(tmp_path / "bin", "page-me", f"cat > '{out}.stdin'; env > '{out}.env'")
    sink = CommandSink({"command": [str(program), "--urgent", "$HOME; rm -rf /"], "env": {"PAGER_TOKEN": SECRET}})
    assert _deliver(sink, alert) is None
    assert recorded_argv(program) == [str(program), "--urgent", "$HOME; rm -rf /"]  # no shell between
    assert json.loads(Path(f"{out}.stdin").read_text()) == alert.to_dict()
    env = dict(line.split("=", 1) for line in Path(f"{out}.env").read_text().splitlines() if "=" in line)
    assert env["PAGER_TOKEN"] == SECRET
    assert "OPENAI_API_KEY" not in env
    assert set(env) - {"PAGER_TOKEN", "PWD", "SHLVL", "_"} <= set(PASSED_ENV)


def test_program_found_on_path_and_one_that_ignores_stdin(tmp_path: Path, alert: Alert) -> None:
    sink = CommandSink({"command": ["true"]})
    assert sink.argv[0].startswith("/") and sink.argv[0].endswith("/true")
    big = dataclasses.replace(alert, body="x" * 1_000_000)  # far more than a pipe holds
    assert _deliver(sink, big) is None


def test_non_zero_exit_is_retryable_with_status_and_scrubbed_stderr(tmp_path: Path, alert: Alert) -> None:
    program = fake_program(tmp_path / "bin", "page-me", 'echo "token $PAGER_TOKEN rejected" >&2; exit 3')
    error = _deliver(CommandSink({"command": [str(program)], "env": {"PAGER_TOKEN": SECRET}}), alert)
    assert error is not None and error.retryable
    shown = "[redacted:alerts.command.env.PAGER_TOKEN]"
    assert (
        str(error)
        == f"alert sink [alerts.command] (command to page-me): {program} exited with status 3: token {shown} rejected"
    )
    assert_secret_free(error, SECRET)


def test_flood_of_stderr_is_cut_to_an_excerpt(tmp_path: Path, alert: Alert) -> None:
    program = fake_program(tmp_path / "bin", "noisy", "head -c 2000000 /dev/zero | tr '\\0' e >&2; exit 1")
    error = _deliver(CommandSink({"command": [str(program)]}), alert)
    assert error is not None and len(str(error)) < 700 and str(error).endswith("eee…")


def test_killed_by_a_signal(tmp_path: Path, alert: Alert) -> None:
    program = fake_program(tmp_path / "bin", "crash", "kill -KILL $$")
    error = _deliver(CommandSink({"command": [str(program)]}), alert)
    assert error is not None and error.retryable
    assert "was killed by SIGKILL" in str(error)


def test_timeout_kills_the_whole_process_group(tmp_path: Path, alert: Alert) -> None:
    pid_file = tmp_path / "grandchild.pid"
    program = fake_program(tmp_path / "bin", "slow", f"sleep 30 & echo $! > '{pid_file}'; wait")
    started = time.monotonic()
    error = _deliver(CommandSink({"command": [str(program)], "timeout": 0.5}), alert)
    assert time.monotonic() - started < 2
    assert error is not None and error.retryable and "gave no answer within 0.5s" in str(error)
    grandchild = int(pid_file.read_text())
    deadline = time.monotonic() + 2
    while _alive(grandchild):
        assert time.monotonic() < deadline, "the program's child outlived the timeout"
        time.sleep(0.02)


def _alive(pid: int) -> bool:
    try:
        return psutil.Process(pid).status() != psutil.STATUS_ZOMBIE
    except psutil.NoSuchProcess:
        return False


def test_program_gone_after_config_is_not_retryable(tmp_path: Path, alert: Alert) -> None:
    program = fake_program(tmp_path / "bin", "page-me")
    sink = CommandSink({"command": [str(program)]})
    program.unlink()
    error = _deliver(sink, alert)
    assert error is not None and not error.retryable
    assert f"could not start {program}: No such file or directory; check the path" in str(error)
