"""Shell completion as a shell asks for it (argcomplete's protocol, the real `corral`
process): subcommands, agent names from the config, run states and log levels."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from corral.testing import CorralProject


def _complete(project: CorralProject, line: str, tmp_path: Path) -> set[str]:
    out = tmp_path / "completions"
    env = {
        **project.env,
        "_ARGCOMPLETE": "1",
        "_ARGCOMPLETE_SHELL": "bash",
        "_ARGCOMPLETE_IFS": "\n",
        "_ARGCOMPLETE_STDOUT_FILENAME": str(out),
        "COMP_LINE": line,
        "COMP_POINT": str(len(line)),
        "COMP_TYPE": "9",
    }
    result = subprocess.run(
        [sys.executable, "-m", "corral"], env=env, cwd=project.root, capture_output=True, text=True, timeout=60
    )
    assert result.returncode == 0, result.stderr
    return {word.strip() for word in out.read_text().split("\n") if word.strip()}


@pytest.mark.parametrize(
    ("line", "expected"),
    [
        ("corral ru", {"run", "runs"}),
        ("corral run c", {"counter", "crawler"}),
        ("corral stop cr", {"crawler"}),
        ("corral runs --state f", {"failed"}),
        ("corral logs --level w", {"warning"}),
    ],
)
def test_the_shell_completes_commands_agents_states_and_levels(
    corral_project: CorralProject, tmp_path: Path, line: str, expected: set[str]
) -> None:
    for name in ("counter", "crawler"):
        corral_project.agent(name, "def run(ctx):\n    return 1\n")
    assert _complete(corral_project, line, tmp_path) == expected, line


def test_an_empty_agent_name_is_a_usage_error(corral_project: CorralProject) -> None:
    corral_project.agent("counter", "def run(ctx):\n    return 1\n")
    for args in (("run", ""), ("pause", " ", "--for", "1h"), ("runs", ""), ("logs", ""), ("tools", "")):
        result = corral_project.cli(*args)
        assert result.returncode == 2 and "an agent name cannot be empty" in result.stderr, (args, result.stderr)
        assert "Traceback" not in result.stderr
    assert os.environ.get("_ARGCOMPLETE") is None


def test_blank_text_names_and_backwards_windows_are_usage_errors(corral_project: CorralProject) -> None:
    """Values that would match or mean nothing are refused (exit 2), not answered with an
    empty result: a blank --reason or --event, a secret name no variable can have, a window
    whose --until is before its --since; an unknown agent's alerts are a 5, as for runs."""
    corral_project.agent("counter", "def run(ctx):\n    return 1\n")
    for args, phrase in [
        (("deny", "abcdef0123", "--reason", " "), "--reason cannot be empty"),
        (("logs", "--event", ""), "--event cannot be empty"),
        (("secrets", "set", "a b"), "'a b' is not a secret name"),
        (("runs", "--since", "1m", "--until", "2h"), "the window ends before it starts"),
        (("logs", "--since", "1m", "--until", "2h"), "the window ends before it starts"),
    ]:
        result = corral_project.cli(*args)
        assert result.returncode == 2 and phrase in result.stderr, (args, result.stderr)
    corral_project.cli("run", "counter", "--wait", check=True)  # a store to read alerts from
    unknown = corral_project.cli("alerts", "--agent", "nosuch")
    assert unknown.returncode == 5 and "agents: counter" in unknown.stderr, unknown.stderr
