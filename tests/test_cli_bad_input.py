"""Every command that takes a run id, an approval id or a number, given empty, unknown,
ambiguous, negative and malformed arguments, with the daemon down and up: one line on
stderr, the documented exit code, never a traceback; the daemon stays up and quiet."""

from __future__ import annotations

import asyncio
import json
import os
import socket
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import pytest

from corral.cli import common
from corral.cli.common import (
    EXIT_CONFIG,
    EXIT_FAILED,
    EXIT_INTERNAL,
    EXIT_NOT_FOUND,
    EXIT_OK,
    EXIT_UNAVAILABLE,
    EXIT_USAGE,
)
from corral.daemon import control
from corral.testing import CorralProject
from tests.cli_cases import commands, documented_codes, small_project, two_runs

Case = tuple[tuple[str, ...], int, str]
"""A command's arguments, the exit code it must give, and a phrase its message must hold."""


def _cases(ids: list[str]) -> list[Case]:
    shared = os.path.commonprefix(ids)
    assert shared, ids
    first = ids[0]
    id_commands: list[tuple[str, ...]] = [
        ("trace",),
        ("cancel",),
        ("retry",),
        ("release", "--happened"),
        ("logs", "counter", "--run"),
    ]
    cases: list[Case] = []
    for command in id_commands:
        verb, *rest = command

        def args(ident: str, verb: str = verb, rest: list[str] = rest) -> tuple[str, ...]:
            return (verb, *rest, ident) if verb == "logs" else (verb, ident, *rest)

        cases += [
            (args(""), EXIT_USAGE, "empty"),
            (args("   "), EXIT_USAGE, "empty"),
            (args("zz!"), EXIT_USAGE, "hex"),
            (args("é"), EXIT_USAGE, "hex"),
            (args("ffffffffffff"), EXIT_NOT_FOUND, "no run matches 'ffffffffffff'"),
            (args("f" * 600), EXIT_NOT_FOUND, "no run matches"),
            (args(shared), EXIT_USAGE, "matches 2 runs"),
        ]
    # a unique prefix or suffix reaches the run: these act on it (and it cannot take the action)
    cases += [
        (("trace", first[:-3]), EXIT_OK, ""),
        (("trace", first[-6:]), EXIT_OK, ""),
        (("logs", "counter", "--run", first[-6:]), EXIT_OK, ""),
        (("cancel", first[-6:]), EXIT_NOT_FOUND, f"run {first} "),
        (("retry", first[:-2]), EXIT_NOT_FOUND, f"run {first} "),
        (("release", first[-5:], "--happened"), EXIT_NOT_FOUND, f"run {first} "),
    ]
    for verb, *rest in [("approve",), ("deny", "--reason", "no")]:
        cases += [
            ((verb, "", *rest), EXIT_USAGE, "empty"),
            ((verb, "xyz?", *rest), EXIT_USAGE, "hex"),
            ((verb, "abcdef0123", *rest), EXIT_NOT_FOUND, "no approval request matches 'abcdef0123'"),
        ]
    cases += [
        (("runs", "-n", "0"), EXIT_USAGE, "at least 1"),
        (("runs", "-n", "-3"), EXIT_USAGE, "at least 1"),
        (("runs", "-n", "three"), EXIT_USAGE, "at least 1"),
        (("runs", "nosuchagent"), EXIT_NOT_FOUND, "no agent named 'nosuchagent'"),
        (("runs", ""), EXIT_USAGE, "an agent name cannot be empty"),
        (("logs", "-n", "-5", "counter"), EXIT_USAGE, "0 or more"),
        (("logs", "-n", "x", "counter"), EXIT_USAGE, "0 or more"),
        (("logs", "-n", "99999999999999999999", "counter"), EXIT_USAGE, "at most"),
        (("spend", "--days", "-1"), EXIT_USAGE, "at least 1"),
        (("spend", "--days", "99999999999"), EXIT_USAGE, "at most"),
        (("run", "counter", "--input", '"\\ud800"'), EXIT_USAGE, "--input is not valid JSON"),
        (("run", "counter", "--input", "[" * 5000 + "]" * 5000), EXIT_USAGE, "--input is not valid JSON"),
        (("run", "counter", "--input", "NaN"), EXIT_USAGE, "--input is not valid JSON (NaN is not a JSON value"),
        (("run", "counter", "--input", '{"a": -Infinity}'), EXIT_USAGE, "--input is not valid JSON (-Infinity"),
        (("release", first, "--happened", "--value", "{nope"), EXIT_USAGE, "--value is not valid JSON"),
        (("alerts", "--since", "0s"), EXIT_USAGE, "more than zero"),
        (("pause", "counter", "--for", "0s"), EXIT_USAGE, "more than zero"),
        (("pause", "counter", "--for=-5s"), EXIT_USAGE, "--for"),
        (("pause", "counter", "--for", "99999999999d"), EXIT_USAGE, "too far"),
        (("pause", "counter", "--until", "2001-01-01T00:00:00+00:00"), EXIT_USAGE, "in the past"),
        (("pause", "counter", "--until", "soon"), EXIT_USAGE, "--until"),
        (("pause", "", "--for", "1h"), EXIT_USAGE, "an agent name cannot be empty"),
        (("trace",), EXIT_USAGE, "required"),
        (("runs", "--limit"), EXIT_USAGE, "expected one argument"),
    ]
    return cases


def _check(project: CorralProject, cases: list[Case]) -> None:
    """Run the cases 8 at a time, except those that reach a run: with the daemon down they
    take the home's lock, which two at once cannot."""
    acting = [case for case in cases if case[2].startswith("run ")]
    parallel = [case for case in cases if case not in acting]
    with ThreadPoolExecutor(8) as pool:
        results = dict(zip(parallel, pool.map(lambda case: project.cli(*case[0]), parallel), strict=True))
    results.update((case, project.cli(*case[0])) for case in acting)
    wrong = []
    for (args, code, phrase), result in ((case, results[case]) for case in cases):
        output = result.stdout + result.stderr
        problems = []
        if "Traceback" in output:
            problems.append("a traceback")
        if result.returncode != code:
            problems.append(f"exit {result.returncode}, not {code}")
        if code != EXIT_OK and len(result.stderr.strip().splitlines()) != 1:
            problems.append("not one line on stderr")
        if phrase not in result.stderr:
            problems.append(f"no {phrase!r} in the message")
        if problems:
            wrong.append(f"corral {' '.join(map(repr, args))}: {', '.join(problems)}:\n{result.stderr.strip()}")
    assert not wrong, "\n".join(wrong)


@pytest.mark.slow
def test_bad_ids_and_numbers_are_one_line_errors_with_the_daemon_down(corral_project: CorralProject) -> None:
    small_project(corral_project)
    ids = two_runs(corral_project, via_daemon=False)
    _check(corral_project, _cases(ids))
    status = corral_project.cli("status")
    assert status.returncode == 0 and "paused" not in status.stdout, status.stderr


@pytest.mark.slow
def test_bad_ids_and_numbers_are_one_line_errors_with_the_daemon_up(corral_project: CorralProject) -> None:
    small_project(corral_project)
    daemon = corral_project.start_daemon()
    ids = two_runs(corral_project, via_daemon=True)
    _check(corral_project, _cases(ids))
    assert daemon.process.poll() is None, "the daemon is still up"
    stderr = corral_project.daemon_stderr()
    assert "Traceback" not in stderr and "Unhandled exception" not in stderr, stderr
    assert corral_project.cli("status", check=True)


def test_an_ambiguous_id_lists_its_candidates_with_agent_and_state(corral_project: CorralProject) -> None:
    small_project(corral_project)
    ids = two_runs(corral_project, via_daemon=False)
    shared = os.path.commonprefix(ids)
    for args in [("trace", shared), ("cancel", shared), ("logs", "--run", shared)]:
        result = corral_project.cli(*args)
        assert result.returncode == EXIT_USAGE, result.stderr
        [line] = result.stderr.splitlines()
        assert all(f"{run_id} (counter, succeeded)" in line for run_id in ids), line
        assert "give more of the id" in line


def _raw(path: Path, payload: bytes) -> list[dict[str, Any]]:
    with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as sock:
        sock.settimeout(10)
        sock.connect(str(path))
        sock.sendall(payload)
        sock.shutdown(socket.SHUT_WR)
        data = b""
        while chunk := sock.recv(65536):
            data += chunk
    return [json.loads(line) for line in data.splitlines()]


NOT_JSON = [
    b'{"op": "run", "agent": "counter", "input": NaN}\n',
    b'{"op": "run", "agent": "counter", "input": {"limit": Infinity}}\n',
]
"""Python's json takes NaN and Infinity; no other JSON reader does, so neither may a run's input."""
MALFORMED = [
    *NOT_JSON,
    b"not json\n",
    b"[1, 2]\n",
    b'{"op": 5}\n',
    b'{"op": "explode"}\n',
    b'{"op": "cancel"}\n',
    b'{"op": "cancel", "run": ""}\n',
    b'{"op": "cancel", "run": ["x"]}\n',
    b'{"op": "retry", "run": "\\u00e9"}\n',
    b'{"op": "release", "run": "' + b"f" * 600 + b'", "happened": true}\n',
    b'{"op": "approve", "id": ""}\n',
    b'{"op": "deny", "id": {"a": 1}, "reason": "x"}\n',
    b'{"op": "run", "agent": ["counter"]}\n',
    b'{"op": "run", "agent": "counter", "input": "\\ud800"}\n',
    b'{"op": "run", "agent": "counter", "input": ' + b"[" * 101 + b"]" * 101 + b"}\n",  # past the 100 levels kept
    b'{"op": "pause", "agent": {"a": 1}}\n',
    b'{"op": "pause", "agent": "counter", "until": 1}\n',
    b'{"op": "pause", "agent": "counter", "until": 1e300}\n',
    b'{"op": "pause", "agent": "counter", "until": "soon"}\n',
    b'{"op": "resume", "agent": null}\n',
]


def test_malformed_control_requests_get_one_error_reply_and_a_log_line(corral_project: CorralProject) -> None:
    small_project(corral_project)
    daemon = corral_project.start_daemon()
    for payload in MALFORMED:
        answers = _raw(corral_project.socket, payload)
        assert len(answers) == 1 and answers[0]["ok"] is False and answers[0]["error"], (payload, answers)
        assert not answers[0].get("internal"), (payload, answers)
        assert "Traceback" not in answers[0]["error"]
        if payload in NOT_JSON:
            assert answers[0]["error"].startswith("bad request: not valid JSON ("), answers
    assert daemon.process.poll() is None
    stderr = corral_project.daemon_stderr()
    assert "Traceback" not in stderr and "Unhandled exception" not in stderr, stderr
    events = [json.loads(line) for line in (corral_project.home / "logs" / "corral.log").read_text().splitlines()]
    refused = [e for e in events if e["event"] == "control request refused"]
    assert len(refused) >= 10, [e["event"] for e in events]
    assert all(e["level"] == "warning" and e.get("error") for e in refused)
    assert corral_project.cli_json("status")["agents"]["counter"]["pause"] is None, "no request paused it"


INTERNAL = """
import corral


def add_commands(sub, common):
    boom = sub.add_parser("boom", parents=[common], help="fail as a bug would")
    boom.set_defaults(func=lambda args: {}["missing"])


@corral.hookimpl
def corral_register_commands(register):
    register(add_commands)
"""


def test_an_internal_error_is_one_line_pointing_at_corral_log(corral_project: CorralProject) -> None:
    plugin = corral_project.root / "boom_plugin.py"
    plugin.write_text(INTERNAL)
    corral_project.corral["plugins"] = [str(plugin)]
    corral_project.write()
    result = corral_project.cli("boom")
    assert result.returncode == EXIT_INTERNAL and "Traceback" not in result.stdout + result.stderr
    [line] = result.stderr.splitlines()
    log = corral_project.home / "logs" / "corral.log"
    assert "KeyError" in line and str(log) in line, line
    [event] = [json.loads(text) for text in log.read_text().splitlines() if "command failed" in text]
    assert event["level"] == "error" and "Traceback" in event["exception"] and "'missing'" in event["exception"]
    assert event["command"] == ["boom"]


def test_a_failing_control_handler_answers_and_logs_and_the_server_goes_on(tmp_path: Path) -> None:
    """The connection handler never raises: a bug in the daemon is one reply marked
    internal and a log line with the traceback, and the next request is served."""
    logged: list[tuple[str, str, dict[str, Any]]] = []

    class Log:
        def warning(self, event: str, **fields: Any) -> None:
            logged.append(("warning", event, fields))

        def error(self, event: str, **fields: Any) -> None:
            logged.append(("error", event, fields))

    async def handler(request: dict[str, Any], reply: Any) -> None:
        if request["op"] == "bug":
            raise LookupError("a bug")
        await reply({"ok": True})

    class Open:
        def refusal(self, sock: object) -> None:
            return None

    path = tmp_path / "c.sock"

    async def main() -> list[list[dict[str, Any]]]:
        server = await control.serve(path, handler, Open(), log=Log())  # type: ignore[arg-type]
        loop = asyncio.get_running_loop()
        try:
            return [
                await loop.run_in_executor(None, _raw, path, b'{"op": "bug"}\n'),
                await loop.run_in_executor(None, _raw, path, b'{"op": "fine"}\n'),
            ]
        finally:
            server.close()

    failed, fine = asyncio.run(main())
    assert failed == [{"ok": False, "internal": True, "error": failed[0]["error"]}]
    assert "LookupError: a bug" in failed[0]["error"] and "corral.log" in failed[0]["error"]
    assert fine == [{"ok": True}]
    [(level, event, fields)] = logged
    assert level == "error" and event == "control request failed" and isinstance(fields["exc_info"], LookupError)
    assert fields["op"] == "bug"


def test_every_exit_code_is_in_the_documented_table() -> None:
    documented = dict(documented_codes())
    codes = sorted(value for name, value in vars(common).items() if name.startswith("EXIT_"))
    assert sorted(documented) == codes
    assert set(codes) >= {EXIT_OK, EXIT_FAILED, EXIT_USAGE, EXIT_CONFIG, EXIT_UNAVAILABLE, EXIT_NOT_FOUND}
    assert "ambiguous" in documented[EXIT_USAGE] and "corral.log" in documented[EXIT_INTERNAL]


def test_usage_errors_are_one_line_naming_the_command_and_its_help(corral_project: CorralProject) -> None:
    result = corral_project.cli("runs", "-n", "0")
    assert result.returncode == EXIT_USAGE
    [line] = result.stderr.splitlines()
    assert line.startswith("corral runs: ") and "corral runs --help" in line, line


def test_every_command_says_what_it_does_with_examples_and_every_option_has_help() -> None:
    from corral.cli.main import parser

    missing = []
    for words, sub in commands(parser([])):
        if not sub.description or not (sub.epilog or "").startswith("examples:"):
            missing.append(f"corral {' '.join(words)}: a description and examples")
        for action in sub._actions:
            if not action.help and action.dest != "help":
                missing.append(f"corral {' '.join(words)} {'/'.join(action.option_strings) or action.dest}: help")
    assert not missing, "\n".join(missing)
