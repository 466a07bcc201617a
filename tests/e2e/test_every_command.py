"""No input makes any corral command print a Python traceback (issue 16): every command
and subcommand, found in the argparse parser (so a new one cannot be forgotten), given
nothing and then each argument empty, unknown, negative, malformed and too long, with the
daemon down and up: one line on stderr, a documented exit code, never an internal error."""

from __future__ import annotations

import argparse
import subprocess
import sys
from concurrent.futures import ThreadPoolExecutor

from corral.cli.common import EXIT_INTERNAL, EXIT_OK
from corral.testing import CorralProject
from tests.cli_cases import commands, documented_codes, small_project, two_runs

BAD_VALUES = ("", "nosuch", "-5", "{nope", "f" * 300)
"""Empty, unknown, negative, malformed and too long, for every positional argument."""
BAD_OPTION_VALUES = ("", "{nope")
"""The same for every option that takes a value (an unknown one is the positional's case)."""

NOT_RUN = {("up",), ("stop",), ("console",)}
"""Left out with no arguments: they would start the daemon in the test, stop it, or open a browser."""


def _bad_lines(parser: argparse.ArgumentParser) -> list[tuple[str, ...]]:
    """Each command given nothing, then each of its arguments given each bad value (the
    others a plausible one): the lines an operator could type by mistake."""
    lines: list[tuple[str, ...]] = []
    for words, sub in commands(parser):
        if any(isinstance(a, argparse._SubParsersAction) for a in sub._actions):
            lines.append(words)  # a command that needs a subcommand: given none
            continue
        positionals = [a for a in sub._actions if not a.option_strings and a.dest != "help"]
        options = [
            a
            for a in sub._actions
            if a.option_strings and a.nargs != 0 and a.dest not in ("help", "config") and a.choices is None
        ]
        if words not in NOT_RUN:
            lines.append(words)
        for index, _ in enumerate(positionals):
            for bad in BAD_VALUES:
                values = ["nosuch"] * len(positionals)
                values[index] = bad
                lines.append((*words, *values))
        for option in options:
            for bad in BAD_OPTION_VALUES:
                lines.append((*words, *(["nosuch"] * len(positionals)), option.option_strings[0], bad))
    return lines


def _no_traceback_and_a_documented_code(project: CorralProject, lines: list[tuple[str, ...]]) -> None:
    documented = dict(documented_codes())

    def run(args: tuple[str, ...]) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            [sys.executable, "-m", "corral", *args],
            env=project.env,
            cwd=project.root,
            capture_output=True,
            text=True,
            stdin=subprocess.DEVNULL,
            timeout=120,
        )

    with ThreadPoolExecutor(8) as pool:
        results = list(zip(lines, pool.map(run, lines), strict=True))
    wrong = []
    for args, result in results:
        problems = []
        if "Traceback" in result.stderr:  # stdout may show a traceback a log holds (corral logs)
            problems.append("a traceback")
        if result.returncode not in documented or result.returncode == EXIT_INTERNAL:
            problems.append(f"exit {result.returncode}")
        if result.returncode != EXIT_OK and len(result.stderr.strip().splitlines()) != 1:
            problems.append("not one line on stderr")
        if problems:
            wrong.append(f"corral {' '.join(map(repr, args))}: {', '.join(problems)}:\n{result.stderr.strip()[-600:]}")
    assert not wrong, f"{len(wrong)} of {len(lines)} lines:\n" + "\n".join(wrong)


def test_every_command_given_bad_arguments_answers_in_one_line_with_the_daemon_down(
    corral_project: CorralProject,
) -> None:
    from corral.cli.main import parser

    small_project(corral_project)
    two_runs(corral_project, via_daemon=False)
    lines = _bad_lines(parser([]))
    assert len(lines) > 150 and {words[0] for words in lines} >= {"run", "trace", "stop", "secrets", "init"}
    _no_traceback_and_a_documented_code(corral_project, lines)


def test_every_command_given_bad_arguments_answers_in_one_line_with_the_daemon_up(
    corral_project: CorralProject,
) -> None:
    from corral.cli.main import parser

    small_project(corral_project)
    daemon = corral_project.start_daemon()
    two_runs(corral_project, via_daemon=True)
    _no_traceback_and_a_documented_code(corral_project, _bad_lines(parser([])))
    assert daemon.process.poll() is None, "the daemon is still up"
    stderr = corral_project.daemon_stderr()
    assert "Traceback" not in stderr and "Unhandled exception" not in stderr, stderr
