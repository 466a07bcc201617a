"""One import name, whatever the install: a built wheel and an editable install agree."""

from __future__ import annotations

import subprocess
import sys
import tomllib
import venv
import zipfile
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
PROBE = (
    "import corral, corral.plugins, corral.sandbox, corral.cli.main, corral.store, json, importlib.util;"
    "print(json.dumps({'corral': corral.__file__, 'plugins': corral.plugins.__file__,"
    " 'sandbox': corral.sandbox.__file__, 'bare': [m for m in ('core', 'plugins', 'sandbox')"
    " if importlib.util.find_spec(m) is not None]}))"
)


def _venv(path: Path) -> Path:
    venv.EnvBuilder(system_site_packages=True, with_pip=True).create(path)
    return path / "bin" / "python"


def _probe(python: Path) -> dict[str, object]:
    import json

    out = subprocess.run([str(python), "-I", "-c", PROBE], capture_output=True, text=True, check=True, cwd="/")
    return json.loads(out.stdout)


@pytest.mark.slow
def test_wheel_installs_only_the_corral_package(tmp_path: Path) -> None:
    subprocess.run(
        [sys.executable, "-m", "pip", "wheel", "--no-deps", "-q", "-w", str(tmp_path / "dist"), str(ROOT)],
        check=True,
        capture_output=True,
    )
    [wheel] = (tmp_path / "dist").glob("corral-*.whl")
    tops = {name.split("/", 1)[0] for name in zipfile.ZipFile(wheel).namelist()}
    assert {top for top in tops if not top.endswith(".dist-info")} == {"corral"}
    python = _venv(tmp_path / "venv")
    subprocess.run([str(python), "-m", "pip", "install", "-q", "--no-deps", str(wheel)], check=True)
    found = _probe(python)
    site = str(tmp_path / "venv")
    assert str(found["corral"]).startswith(site) and str(found["plugins"]).startswith(site)
    assert found["bare"] == [], "no bare core/plugins/sandbox module lands in site-packages"
    entry = zipfile.ZipFile(wheel).read(f"{wheel.name.rsplit('-', 3)[0]}.dist-info/entry_points.txt").decode()
    assert "corral = corral.cli.main:main" in entry
    version = subprocess.run([str(tmp_path / "venv" / "bin" / "corral"), "--version"], capture_output=True, text=True)
    assert version.stdout.startswith("corral ")


@pytest.mark.slow
def test_editable_install_imports_the_same_names_from_the_source_folders(tmp_path: Path) -> None:
    python = _venv(tmp_path / "venv")
    subprocess.run([str(python), "-m", "pip", "install", "-q", "--no-deps", "-e", str(ROOT)], check=True)
    found = _probe(python)
    assert found["corral"] == str(ROOT / "core" / "__init__.py")
    assert found["plugins"] == str(ROOT / "plugins" / "__init__.py")
    assert found["sandbox"] == str(ROOT / "sandbox" / "__init__.py")
    assert found["bare"] == []


def test_every_package_folder_is_listed_in_pyproject() -> None:
    config = tomllib.loads((ROOT / "pyproject.toml").read_text())["tool"]["setuptools"]
    mapping = config["package-dir"]
    on_disk = set()
    for name, folder in mapping.items():
        for init in (ROOT / folder).rglob("__init__.py"):
            if "__pycache__" in init.parts:
                continue
            relative = init.parent.relative_to(ROOT / folder)
            on_disk.add(".".join([name, *relative.parts]) if relative.parts else name)
    assert set(config["packages"]) == on_disk
