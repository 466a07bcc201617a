"""The config package has no import cycle: each module imports alone, and no section
imports the loader (the sections are what the loader is made of)."""

from __future__ import annotations

import ast
import subprocess
import sys
from pathlib import Path

import pytest

PACKAGE = Path(__file__).resolve().parents[1] / "core" / "config"
MODULES = sorted(path.stem for path in PACKAGE.glob("*.py") if path.stem != "__init__")
CONSUMERS = {"loader", "check"}
"""Modules that put the sections together or use the whole config; every other is a section or a part of one."""


def _config_imports(module: str) -> set[str]:
    """The corral.config modules ``module`` imports, at the top, inside functions or for type checking."""
    tree = ast.parse((PACKAGE / f"{module}.py").read_text())
    found: set[str] = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.ImportFrom) and node.module and node.module.startswith("corral.config"):
            if node.module == "corral.config":
                found.add("__init__")
            else:
                found.add(node.module.removeprefix("corral.config."))
        elif isinstance(node, ast.Import):
            found |= {a.name.removeprefix("corral.config.") for a in node.names if a.name.startswith("corral.config.")}
    return found


def test_there_are_sections_to_check() -> None:
    assert {"agents", "alerts", "budget", "guardrails", "models", "sandbox", "schedule", "tools"} <= set(MODULES)


@pytest.mark.parametrize("module", sorted(set(MODULES) - CONSUMERS))
def test_a_section_never_imports_the_loader_or_the_package(module: str) -> None:
    imported = _config_imports(module)
    assert not imported & {"loader", "check", "__init__"}, f"corral.config.{module} imports {imported}"


def test_the_config_modules_import_each_other_without_a_cycle() -> None:
    graph = {module: _config_imports(module) & set(MODULES) for module in MODULES}
    done: set[str] = set()

    def visit(module: str, path: tuple[str, ...]) -> None:
        assert module not in path, f"import cycle: {' -> '.join([*path, module])}"
        if module in done:
            return
        for imported in graph[module]:
            visit(imported, (*path, module))
        done.add(module)

    for module in MODULES:
        visit(module, ())


@pytest.mark.parametrize("module", MODULES)
def test_each_config_module_imports_alone_in_a_fresh_interpreter(module: str) -> None:
    result = subprocess.run(
        [sys.executable, "-c", f"import corral.config.{module}"], capture_output=True, text=True, timeout=60
    )
    assert result.returncode == 0, result.stderr


def test_reading_the_config_loads_no_network_or_mail_client(tmp_path: Path) -> None:
    """Every CLI command reads the config: HTTP and SMTP clients, croniter and watchdog load
    only where a model is called, a sink or a trigger is built."""
    example = PACKAGE.parents[1] / "examples" / "corral.toml"
    code = (
        "import sys; from pathlib import Path; from corral.config import load_config; "
        f"load_config(Path({str(example)!r}), {{'CORRAL_HOME': {str(tmp_path)!r}}}); "
        "print(sorted(m for m in ('httpx', 'aiosmtplib', 'croniter', 'watchdog') if m in sys.modules))"
    )
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60)
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == "[]"
