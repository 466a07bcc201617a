"""The source stays lint-clean and typed: ruff and mypy run with the project's own settings."""

from __future__ import annotations

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
