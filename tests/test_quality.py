"""The source stays lint-clean and typed: ruff and mypy run with the project's own settings."""

from __future__ import annotations

import ast
import shutil
import subprocess
import sys
import tomllib
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]


def _run(*command: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(command, cwd=ROOT, capture_output=True, text=True, timeout=300)


def test_ruff_finds_nothing() -> None:
    if shutil.which("ruff") is None:
        pytest.skip("ruff is not installed; pip install -e '.[test]'")
    result = _run("ruff", "check", "core", "sandbox", "plugins", "tests", "benchmarks")
    assert result.returncode == 0, result.stdout + result.stderr


def _package_tree(target: Path) -> Path:
    """``corral`` laid out as it installs (core/ is ``corral``, plugins/ ``corral.plugins``,
    sandbox/ ``corral.sandbox``), in links under ``target``. mypy cannot follow the editable
    install's import hook, so without this every ``from corral...`` import would be Any
    and no call across modules would be checked."""
    mapping = tomllib.loads((ROOT / "pyproject.toml").read_text())["tool"]["setuptools"]["package-dir"]
    tree = target / "corral"
    tree.mkdir(parents=True)
    for item in (ROOT / mapping["corral"]).iterdir():
        if item.name != "__pycache__":
            (tree / item.name).symlink_to(item)
    for package, folder in mapping.items():
        if package != "corral":
            (tree / package.removeprefix("corral.")).symlink_to(ROOT / folder)
    return target


def test_mypy_finds_nothing(tmp_path: Path) -> None:
    pytest.importorskip("mypy", reason="mypy is not installed; pip install -e '.[test]'")
    tree = _package_tree(tmp_path / "src")
    command = [sys.executable, "-m", "mypy", "--config-file", str(ROOT / "pyproject.toml")]
    result = subprocess.run(
        [*command, "--cache-dir", str(tmp_path / "cache"), "-p", "corral"],
        cwd=tree,
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert result.returncode == 0, result.stdout + result.stderr
    checked = int(result.stdout.rsplit(" in ", 1)[1].split()[0])
    assert checked > 100, f"mypy did not see the whole package: {result.stdout}"


def _package_of(path: Path) -> str:
    """The dotted package ``path`` is in once installed (core/ is ``corral``, plugins/
    ``corral.plugins``, ...; tests/ stays ``tests``), for resolving relative imports."""
    folders = tomllib.loads((ROOT / "pyproject.toml").read_text())["tool"]["setuptools"]["package-dir"]
    parts = path.relative_to(ROOT).parent.parts
    for package, folder in folders.items():
        if parts[:1] == (folder,):
            return ".".join((package, *parts[1:]))
    return ".".join(parts)


def _imported_modules(source: str, package: str) -> list[tuple[int, str]]:
    """(line, absolute module name) of every import in ``source``: at the top, inside
    functions and under ``TYPE_CHECKING`` alike, relative ones resolved against
    ``package``, and the names a ``from X import Y`` takes (Y may be a module);
    ``importlib.import_module`` and ``__import__`` of a constant string count too."""
    found: list[tuple[int, str]] = []
    for node in ast.walk(ast.parse(source)):
        if isinstance(node, ast.Import):
            found += [(node.lineno, alias.name) for alias in node.names]
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                parent = package.rsplit(".", node.level - 1)[0]
                base = f"{parent}.{base}" if base else parent
            found.append((node.lineno, base))
            found += [(node.lineno, f"{base}.{alias.name}") for alias in node.names]
        elif isinstance(node, ast.Call) and node.args and isinstance(node.args[0], ast.Constant):
            func = node.func
            called = func.attr if isinstance(func, ast.Attribute) else getattr(func, "id", "")
            if called in ("import_module", "__import__") and isinstance(node.args[0].value, str):
                found.append((node.lineno, node.args[0].value))
    return found


def _imports_of(path: Path) -> list[tuple[int, str]]:
    return _imported_modules(path.read_text(), _package_of(path))


def test_core_never_imports_the_built_in_plugins() -> None:
    """STYLE.md: core never imports plugins/. The built-ins are module names in
    ``corral.pluginmanager.BUILTINS``, loaded like outside plugins; anything core needs
    of them belongs in core. sandbox/ is held to the same rule: core and every agent's
    process import it."""
    offenders = [
        f"{path.relative_to(ROOT)}:{line} imports {name}"
        for folder in ("core", "sandbox")
        for path in sorted((ROOT / folder).rglob("*.py"))
        for line, name in _imports_of(path)
        if name == "corral.plugins" or name.startswith("corral.plugins.")
    ]
    assert not offenders, "\n".join(offenders)


def test_the_import_scan_sees_every_kind_of_import() -> None:
    """The scans here would pass vacuously if they missed a form; each form is found."""
    source = (
        "from typing import TYPE_CHECKING\n"
        "import corral.plugins.a\n"
        "from corral.plugins import b\n"
        "from . import plugins\n"
        "if TYPE_CHECKING:\n    from corral.plugins.c import C\n"
        "def f():\n    import importlib\n    importlib.import_module('corral.plugins.d')\n"
        "    from ..test_e import fixture\n"
    )
    names = {name for _, name in _imported_modules(source, "corral.schedule")}
    assert {"corral.plugins.a", "corral.plugins.b", "corral.schedule.plugins", "corral.plugins.c"} <= names
    assert {"corral.plugins.d", "corral.test_e.fixture"} <= names
    assert _package_of(ROOT / "core" / "schedule" / "triggers.py") == "corral.schedule"
    assert _package_of(ROOT / "tests" / "models" / "test_client.py") == "tests.models"


def _test_modules() -> list[Path]:
    return sorted(path for path in (ROOT / "tests").rglob("test_*.py") if "__pycache__" not in path.parts)


def test_no_test_module_imports_another() -> None:
    """STYLE.md: a test module never imports another's fixtures or helpers; what several
    modules share lives in a conftest.py (fixtures) or a helper module not named test_*."""
    offenders = []
    for path in _test_modules():
        for line, name in _imports_of(path):
            last = name.rsplit(".", 1)[-1]
            if name.startswith("tests.") and (last.startswith("test_") or last == "conftest"):
                offenders.append(f"{path.relative_to(ROOT)}:{line} imports {name}")
    assert not offenders, "\n".join(offenders)


def test_test_files_are_named_after_behaviour() -> None:
    """STYLE.md: named after the behaviour they test, never after how the work was done."""
    process = ("review", "issue", "regression", "finding")
    offenders = [str(path.relative_to(ROOT)) for path in _test_modules() if any(word in path.stem for word in process)]
    assert not offenders, f"rename after the behaviour tested: {offenders}"


def test_a_name_means_one_thing() -> None:
    """STYLE.md: a public class name is defined once in corral (no two ``Decision``s,
    ``Attempt``s, ``Secret``s or ``Request``s to import under aliases)."""
    defined: dict[str, list[str]] = {}
    for folder in ("core", "plugins", "sandbox"):
        for path in sorted((ROOT / folder).rglob("*.py")):
            for node in ast.parse(path.read_text()).body:
                if isinstance(node, ast.ClassDef) and not node.name.startswith("_"):
                    defined.setdefault(node.name, []).append(str(path.relative_to(ROOT)))
    twice = {name: where for name, where in defined.items() if len(where) > 1}
    assert not twice, twice


def _module_graph() -> dict[str, set[str]]:
    """corral's modules and the corral modules each imports anywhere in its source (top
    level, inside functions, under TYPE_CHECKING)."""
    folders = {"core": "corral", "plugins": "corral.plugins", "sandbox": "corral.sandbox"}
    paths = {}
    for folder, package in folders.items():
        for path in (ROOT / folder).rglob("*.py"):
            parts = [p for p in path.relative_to(ROOT / folder).with_suffix("").parts if p != "__init__"]
            paths[".".join([package, *parts])] = path
    graph: dict[str, set[str]] = {}
    for name, path in paths.items():
        imported: set[str] = set()
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
                imported |= {
                    f"{node.module}.{a.name}" if f"{node.module}.{a.name}" in paths else node.module for a in node.names
                }
            elif isinstance(node, ast.Import):
                imported |= {a.name for a in node.names}
        graph[name] = {other for other in imported if other in paths and other != name}
    return graph


def test_no_import_cycles_not_even_for_typing() -> None:
    """Issue 15: no module reaches itself through its imports, counting those made only for
    type checking or inside functions (they hide a cycle, they do not remove it)."""
    graph = _module_graph()
    cycles = []
    state: dict[str, int] = {}  # 1: on the path being walked, 2: done

    def walk(name: str, path: list[str]) -> None:
        state[name] = 1
        for other in sorted(graph[name]):
            if state.get(other) == 1:
                cycles.append(" -> ".join([*path[path.index(other) :], other]))
            elif other not in state:
                walk(other, [*path, other])
        state[name] = 2

    for name in sorted(graph):
        if name not in state:
            walk(name, [name])
    assert not cycles, "\n".join(cycles)
