"""What the tests of the command line's bad input share: a small project with runs whose
ids share a prefix, the documented exit codes, and every command of the parser."""

from __future__ import annotations

import argparse
import re
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from corral.testing import CorralProject

DOCS = Path(__file__).resolve().parent.parent / "docs" / "operating.md"


def two_runs(project: CorralProject, via_daemon: bool) -> list[str]:
    """Two runs of ``counter``, created within a few seconds, so their ids share a prefix."""
    if via_daemon:
        ids = [project.cli_json("run", "counter")["id"] for _ in range(2)]
        for run_id in ids:
            project.wait_for_run(run_id, timeout=20)
        return ids
    return [project.cli_json("run", "counter", "--wait")["id"] for _ in range(2)]


def small_project(project: CorralProject) -> None:
    """Two agents that succeed: ``counter`` and ``other``."""
    project.agent("counter", "def run(ctx):\n    return 1\n")
    project.agent("other", "def run(ctx):\n    return 2\n")


def documented_codes() -> Iterator[tuple[int, str]]:
    """The exit codes and their meanings, from docs/operating.md's table."""
    text = DOCS.read_text()
    section = text[text.index("### Exit codes") :]
    for match in re.finditer(r"^\| (\d+) \| (.+) \|$", section, re.MULTILINE):
        yield int(match[1]), match[2]


def commands(parser: argparse.ArgumentParser, prefix: tuple[str, ...] = ()) -> Iterator[tuple[tuple[str, ...], Any]]:
    """Every command and subcommand of the parser (a plugin's too), with its parser."""
    for action in parser._actions:
        if isinstance(action, argparse._SubParsersAction):
            for name, sub in action.choices.items():
                yield (*prefix, name), sub
                yield from commands(sub, (*prefix, name))
