"""Meta-tests: the docs name every hook, command, config key and wire message, and every hook has a test."""

from __future__ import annotations

import argparse
import inspect
import re
from dataclasses import fields
from pathlib import Path

import pytest

from corral import hookspecs, wire
from corral.cli.main import parser
from corral.config import AgentConfig, CorralConfig, Limits

ROOT = Path(__file__).resolve().parent.parent
DOCS = ROOT / "docs"
TESTS = ROOT / "tests"

HOOKS = sorted(name for name, func in inspect.getmembers(hookspecs, inspect.isfunction) if name.startswith("corral_"))


def _text(name: str) -> str:
    return (DOCS / name).read_text(encoding="utf-8")


def _headings(markdown: str) -> set[str]:
    return {m[1].strip().strip("`") for m in re.finditer(r"^#{1,6}\s+(.+?)\s*$", markdown, re.MULTILINE)}


def _subcommands() -> list[str]:
    for action in parser()._actions:
        if isinstance(action, argparse._SubParsersAction):
            return sorted(action.choices)
    raise AssertionError("the corral parser has no subcommands")


def _config_keys() -> list[str]:
    daemon = {f.name for f in fields(CorralConfig)} - {"path", "limits", "agents"} | {"home"}
    agent = {f.name for f in fields(AgentConfig)} - {"name"}
    limits = {f.name for f in fields(Limits)}
    return sorted(daemon | agent | limits)


def test_there_is_something_to_check() -> None:
    assert HOOKS, "no corral_* hooks found in core/hookspecs.py"
    assert _subcommands() and _config_keys()
    assert wire.CHILD_MESSAGES and wire.DAEMON_MESSAGES


@pytest.mark.parametrize("hook", HOOKS)
def test_every_hook_is_a_heading_in_plugins_md(hook: str) -> None:
    assert hook in _headings(_text("plugins.md")), f"docs/plugins.md needs a heading '### {hook}'"


@pytest.mark.parametrize("hook", HOOKS)
def test_every_hook_is_exercised_by_a_test(hook: str) -> None:
    this = Path(__file__).resolve()
    users = [
        path.relative_to(ROOT)
        for path in sorted(TESTS.rglob("*.py"))
        if path.resolve() != this and hook in path.read_text(encoding="utf-8")
    ]
    assert users, f"no test under tests/ implements or calls {hook}"


@pytest.mark.parametrize("command", _subcommands())
def test_every_command_is_in_operating_md(command: str) -> None:
    assert f"corral {command}" in _text("operating.md"), f"docs/operating.md does not describe `corral {command}`"


@pytest.mark.parametrize("key", _config_keys())
def test_every_config_key_is_in_operating_md(key: str) -> None:
    assert f"`{key}`" in _text("operating.md"), f"docs/operating.md does not document the config key `{key}`"


@pytest.mark.parametrize("message", sorted(set(wire.CHILD_MESSAGES) | set(wire.DAEMON_MESSAGES)))
def test_every_wire_message_is_in_protocol_md(message: str) -> None:
    assert f"`{message}`" in _text("protocol.md"), f"docs/protocol.md does not document the message `{message}`"


@pytest.mark.parametrize(("table", "direction"), [(wire.CHILD_MESSAGES, "child"), (wire.DAEMON_MESSAGES, "daemon")])
def test_every_wire_field_is_in_protocol_md(table: dict[str, dict[str, object]], direction: str) -> None:
    text = _text("protocol.md")
    missing = [f"{kind}.{name}" for kind, spec in table.items() for name in spec if f"`{name}`" not in text]
    assert not missing, f"docs/protocol.md does not document these {direction} message fields: {missing}"


def test_the_architecture_page_names_only_what_exists() -> None:
    """docs/architecture.md is the newcomer's map: every path, file and module it names
    must exist, so a move that forgets the page fails here."""
    import importlib

    root = Path(__file__).resolve().parent.parent
    text = (root / "docs" / "architecture.md").read_text()
    names = set(re.findall(r"`([^`\s]+)`", text))
    sources = [p for folder in ("core", "sandbox", "plugins") for p in (root / folder).rglob("*.py")]
    missing = []
    for name in sorted(names):
        if "/" in name and not name.startswith("corral"):
            if not (root / name.split("::")[0]).exists():
                missing.append(name)
        elif re.fullmatch(r"\w+\.py", name):
            if not any(p.name == name for p in sources):
                missing.append(name)
        elif re.fullmatch(r"corral(\.\w+)+", name):
            module, _, attribute = name.rpartition(".")
            try:
                importlib.import_module(name)
            except ImportError:
                if not hasattr(importlib.import_module(module), attribute):
                    missing.append(name)
    assert missing == [], f"docs/architecture.md names what does not exist: {missing}"


def _first_command(markdown: str, heading: str) -> str:
    """The first line of the first ```sh block under ``heading``."""
    section = markdown[markdown.index(heading) :]
    block = section[section.index("```sh\n") + len("```sh\n") :]
    return block.splitlines()[0]


def test_the_readmes_commands_are_the_ones_ci_and_the_docs_use() -> None:
    """The README's first command installs into a virtual environment (a system-wide pip
    install is refused by Homebrew's and Debian's Pythons, PEP 668) and starts the daemon;
    the second (Debian's chromium for the browser tests, the TypeScript test's npm packages,
    then the suite) is exactly what .ci/run runs; the operating guide installs the same way, and
    supervisor.conf runs the venv's corral; every `corral X` the README shows exists."""
    readme = (ROOT / "README.md").read_text()
    venv = "python3 -m venv .venv && . .venv/bin/activate && pip install "
    install = _first_command(readme, "## Install and run")
    assert install.startswith(venv + ".") and install.endswith("corral up --config examples/corral.toml"), install
    tests = _first_command(readme, "## Run the tests")
    installs = "sh tests/browser/install_chromium.sh && sh tests/node/install.sh && "
    assert tests == installs + venv + "-e '.[test]' && python -m pytest -n 2", tests
    ci = [line for line in (ROOT / ".ci" / "run").read_text().splitlines() if line and not line.startswith("#")]
    assert ci[-1] == tests, f".ci/run runs {ci[-1]!r}, the README says {tests!r}"
    assert "pip install" not in readme.replace(venv, "").replace("pip install '.[telemetry]'", "")
    assert "python3 -m pip install" not in readme + _text("operating.md")
    assert "python3 -m venv .venv && . .venv/bin/activate\n&& pip install ." in _text("operating.md")
    assert "command=/Users/you/corral/.venv/bin/corral up" in (ROOT / "supervisor.conf").read_text()
    blocks = "\n".join(re.findall(r"```sh\n(.*?)```", readme, re.DOTALL))
    shown = set(re.findall(r"^corral ([a-z]+)", blocks, re.MULTILINE)) | set(re.findall(r"`corral ([a-z]+)", readme))
    assert shown and shown <= set(_subcommands()), shown - set(_subcommands())


def test_the_framework_examples_are_the_files_the_tests_run() -> None:
    """docs/agents.md shows each agent of tests/door/frameworks/ whole, under its path
    ("`tests/door/frameworks/NAME.py`:" and the code block), so an example that the tests
    stop passing, or that drifts from what they run, fails here."""
    text = _text("agents.md")
    shown = dict(re.findall(r"^`(tests/[\w/.-]+)`:\n\n```\w*\n(.*?)^```", text, re.MULTILINE | re.DOTALL))
    folder = TESTS / "door" / "frameworks"
    examples = {str(path.relative_to(ROOT)) for path in folder.iterdir() if path.is_file()}
    assert examples and examples <= set(shown), f"docs/agents.md does not show {sorted(examples - set(shown))}"
    drifted = [path for path, code in shown.items() if code != (ROOT / path).read_text()]
    assert not drifted, f"docs/agents.md shows these otherwise than the files the tests run: {drifted}"
