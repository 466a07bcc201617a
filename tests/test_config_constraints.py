"""Each kind of config value is declared once (corral.config.kinds): its type, its bounds,
its shorthand and its wording; every table key names its kind, and no reader checks a
value's type or bounds by hand."""

from __future__ import annotations

import ast
import dataclasses
import importlib
from decimal import Decimal
from pathlib import Path
from typing import Any

import pytest

from corral.config import kinds
from corral.config.kinds import Key, Rule, Wrong, read
from corral.config.problems import table_keys

ROOT = Path(__file__).resolve().parents[1]
CONFIG = ROOT / "core" / "config"
KINDS = CONFIG / "kinds.py"
UNITS = CONFIG / "units.py"
SECTIONS = sorted(path.stem for path in CONFIG.glob("*.py") if path.stem not in ("__init__", "kinds"))


@pytest.mark.parametrize(
    ("kind", "value", "read_as"),
    [
        (kinds.PositiveInt, 3, 3),
        (kinds.Limit, 5, 5),
        (kinds.Limit, "none", None),
        (kinds.Limit, False, None),
        (kinds.Count, 0, 0),
        (kinds.PositiveNumber, 2, 2.0),
        (kinds.Seconds, 0, 0.0),
        (kinds.PositiveSeconds, "1h30m", 5400.0),
        (kinds.SecondsLimit, "none", None),
        (kinds.PositiveSecondsOrOff, False, None),
        (kinds.Port, 443, 443),
        (kinds.AnyPort, 0, 0),
        (kinds.Texts, ["a", "b"], ("a", "b")),
        (kinds.Names, "one", ("one",)),
        (kinds.EnvName, "API_TOKEN", "API_TOKEN"),
        (kinds.Zone, "Europe/Paris", "Europe/Paris"),
        (kinds.Dollars, 0.1, Decimal("0.1")),
        (kinds.Price, 0, Decimal("0")),
        (kinds.Fractions, [0.5, 0.8], (0.5, 0.8)),
        (kinds.Loopback, "::1", "::1"),
        (kinds.HttpUrl, "http://127.0.0.1:11434/v1", "http://127.0.0.1:11434/v1"),
        (kinds.Flag, False, False),
    ],
)
def test_each_kind_reads_what_an_operator_may_write(kind: Any, value: object, read_as: object) -> None:
    assert read(value, kind) == read_as


@pytest.mark.parametrize(
    ("kind", "value", "message"),
    [
        (kinds.PositiveInt, 0, "0 is not a positive integer"),
        (kinds.PositiveInt, True, "True is not a positive integer"),
        (kinds.PositiveInt, 1.5, "1.5 is not a positive integer"),
        (kinds.PositiveInt, "3", "'3' is not a positive integer"),
        (kinds.Limit, "unlimited", "'unlimited' is not a positive integer"),
        (kinds.Limit, 0, "0 is not a positive integer"),
        (kinds.Count, -1, "-1 is not a whole number, 0 or more"),
        (kinds.PositiveNumber, float("inf"), "inf is not a positive number"),
        (kinds.PositiveSeconds, 0, "must be more than zero"),
        (kinds.PositiveSeconds, "soon", "'soon' is not a duration"),
        (kinds.Seconds, -1, "a duration cannot be negative"),
        (kinds.Seconds, float("inf"), "must be a finite duration"),
        (kinds.Port, 0, "0 is not a port number; give an integer from 1 to 65535"),
        (kinds.AnyPort, 70000, "70000 is not a port number"),
        (kinds.Texts, ["a", ""], "['a', ''] is not a list of non-empty strings"),
        (kinds.SomeTexts, [], "[] is not a list of non-empty strings"),
        (kinds.EnvName, "1BAD", "'1BAD' is not an environment variable name"),
        (kinds.Zone, "Mars/Olympus", "'Mars/Olympus' is not a time zone"),
        (kinds.Dollars, 0, "0 is not a positive amount of dollars"),
        (kinds.Price, float("nan"), "nan is not a price (0 or more)"),
        (kinds.Fractions, [2], "[2] must be a list of fractions between 0 and 1"),
        (kinds.Loopback, "0.0.0.0", "'0.0.0.0' is not a loopback address"),
        (kinds.HttpUrl, "ftp://example.com", "'ftp://example.com' is not an http(s) URL"),
        (kinds.HttpUrl, "http://", "'http://' is not an http(s) URL"),
        (kinds.HttpUrl, "https://exa mple.com", "'https://exa mple.com' is not an http(s) URL"),
        (kinds.Flag, "yes", "'yes' is not true or false"),
        (kinds.choice("a", "b"), "c", "'c' is not one of 'a', 'b'"),
    ],
)
def test_each_kind_says_what_is_wrong_in_its_own_words(kind: Any, value: object, message: str) -> None:
    with pytest.raises(Wrong) as caught:
        read(value, kind)
    assert str(caught.value).startswith(message), caught.value


def test_a_refined_kind_keeps_the_bounds_and_reading_and_changes_only_the_words() -> None:
    from typing import Annotated

    refined = Annotated[kinds.PositiveSeconds, Rule("must be more than zero; give e.g. 10")]
    assert read("2m", refined) == 120.0, "the shorthand of the inner kind still reads"
    with pytest.raises(Wrong, match=r"^must be more than zero; give e.g. 10$"):
        read(0, refined)


def _declarations() -> list[tuple[str, type]]:
    """Every class of the config package that declares table keys."""
    found = []
    for name in SECTIONS:
        module = importlib.import_module(f"corral.config.{name}")
        for value in vars(module).values():
            if isinstance(value, type) and value.__module__ == module.__name__ and table_keys(value):
                found.append((f"{name}.{value.__name__}", value))
    return found


def test_the_sections_declare_their_keys() -> None:
    names = {name for name, _ in _declarations()}
    assert {"agents.AgentConfig", "agents.Limits", "guardrails.GuardrailConfig", "loader.CorralConfig"} <= names


@pytest.mark.parametrize(("name", "declared"), _declarations(), ids=[name for name, _ in _declarations()])
def test_every_declared_key_reads_with_a_kind_that_has_words(name: str, declared: type) -> None:
    """A key whose kind has no Rule (and is not a choice) would answer a wrong value with
    msgspec's own "Expected `int`" instead of corral's wording and fix."""
    from typing import Literal, get_origin

    for key, (kind, marker) in table_keys(declared).items():
        checked, rule, found = kinds._peel(kind)
        assert found is marker and isinstance(marker, Key)
        assert rule is not None or get_origin(checked) is Literal, f"{name}.{key} has a kind without words"
        if dataclasses.is_dataclass(declared):
            field = {f.name: f for f in dataclasses.fields(declared)}[key]
            if field.default is not dataclasses.MISSING and field.default is not None:
                assert read(field.default, kind) == field.default, f"{name}.{key}: its default is not of its kind"


def _readers() -> list[tuple[Path, ast.AST]]:
    """Every piece of code that reads an operator's config table: the config package (but
    the kinds and the units their shorthand is parsed with), and each function of a plugin
    that reads its own table: an alert sink's ``_configure`` (given a
    :class:`corral.config.settings.Settings`), a trigger kind's factory (given a
    ``BuildContext``)."""
    readers: list[tuple[Path, ast.AST]] = [
        (path, ast.parse(path.read_text())) for path in sorted(CONFIG.glob("*.py")) if path not in (KINDS, UNITS)
    ]
    for path in sorted(p for folder in ("core", "plugins") for p in (ROOT / folder).rglob("*.py")):
        if path.parent == CONFIG:
            continue
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.FunctionDef) and any(
                arg.annotation is not None and ast.unparse(arg.annotation) in ("Settings", "BuildContext")
                for arg in node.args.args
            ):
                readers.append((path, node))
    return readers


def _hand_checks(path: Path, code: ast.AST) -> list[str]:
    """Type and bound checks written by hand: ``isinstance(x, int/float/bool)``, and an
    order comparison with 0 or 1."""
    found = []
    for node in ast.walk(code):
        if isinstance(node, ast.Call) and isinstance(node.func, ast.Name) and node.func.id == "isinstance":
            names = {n.id for n in ast.walk(node.args[1]) if isinstance(n, ast.Name)} if len(node.args) > 1 else set()
            if names & {"int", "float", "bool"}:
                found.append(f"{path.name}:{node.lineno}: {ast.unparse(node)}")
        elif isinstance(node, ast.Compare) and any(
            isinstance(op, ast.Lt | ast.LtE | ast.Gt | ast.GtE) for op in node.ops
        ):
            sides = [node.left, *node.comparators]
            if any(isinstance(side, ast.Constant) and side.value in (0, 1) for side in sides):
                found.append(f"{path.name}:{node.lineno}: {ast.unparse(node)}")
    return found


def test_the_hand_check_finder_finds_a_hand_check_and_the_readers() -> None:
    code = ast.parse(
        "def _configure(self, settings: Settings):\n    if not isinstance(n, int) or n < 1:\n        pass\n"
    )
    assert len(_hand_checks(Path("x.py"), code)) == 2
    assert {path.name for path, _ in _readers()} >= {"agents.py", "loader.py", "mail.py", "webhook.py", "timers.py"}


def test_no_config_reader_checks_a_type_or_a_bound_by_hand() -> None:
    """ "A positive integer", "a port", "a duration above zero": each is a kind in
    corral.config.kinds, checked by msgspec and worded there once."""
    found = [check for path, code in _readers() for check in _hand_checks(path, code)]
    assert found == [], "use a kind from corral.config.kinds:\n" + "\n".join(found)


def _strings(path: Path) -> list[str]:
    """The strings a module says (messages), without its docstrings."""
    tree = ast.parse(path.read_text())
    documented = (ast.Module, ast.ClassDef, ast.FunctionDef, ast.AsyncFunctionDef)
    docstrings = {
        id(node.body[0].value) for node in ast.walk(tree) if isinstance(node, documented) and ast.get_docstring(node)
    }
    return [
        node.value
        for node in ast.walk(tree)
        if isinstance(node, ast.Constant) and isinstance(node.value, str) and id(node) not in docstrings
    ]


def test_the_words_of_a_kind_are_written_once() -> None:
    words = ["positive integer", "positive whole number", "is not a port number", "is not true or false"]
    sources = [path for folder in ("core", "plugins", "sandbox") for path in (ROOT / folder).rglob("*.py")]
    found = [
        f"{path.relative_to(ROOT)}: {word!r}"
        for path in sources
        if path != KINDS
        for word in words
        if any(word in text for text in _strings(path))
    ]
    assert found == [], "say it with the kind from corral.config.kinds:\n" + "\n".join(found)
