"""What the browser tests run against: a daemon with the example agents and the test
agents, its console, and Debian's chromium (fixtures in tests/browser/conftest.py)."""

from __future__ import annotations

import os
import shutil
import tomllib
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from corral.testing import CorralProject
from tests.models.fake_servers import FakeServer
from tests.projects import DEPLOY_PLUGIN, DEPLOYER, fake_model

ROOT = Path(__file__).resolve().parents[2]
CHROMIUM_NAMES = ("chromium", "chromium-browser")

WAITER = """
import pathlib

def run(ctx):
    ctx.state["started"] = ctx.input
    while not pathlib.Path("go").exists():
        import time
        time.sleep(0.05)
    ctx.log.info("went", input=ctx.input)
    return {"went": ctx.input}
"""
"""Runs until a file ``go`` appears in its workdir: the test watches it live, then lets it end."""


def chromium_path() -> str | None:
    """Debian's chromium (``CORRAL_CHROMIUM`` names another)."""
    given = os.environ.get("CORRAL_CHROMIUM")
    if given:
        return given
    return next((found for name in CHROMIUM_NAMES if (found := shutil.which(name))), None)


@dataclass
class Site:
    """A running daemon with its console: the project, the model server and the console's URL."""

    project: CorralProject
    model: FakeServer
    url: str

    def login_link(self) -> str:
        """A fresh one-time login link, as ``corral console`` prints it."""
        return str(self.project.cli_json("console")["login"])

    def workdir(self, agent: str) -> Path:
        return self.project.home / "agents" / agent


def example_project(root: Path, model_url: str, agents: dict[str, str]) -> CorralProject:
    """examples/corral.toml and its agents, its console on a free port, model ``fake`` at
    ``model_url``, the deployer (approvals) and ``agents`` (name -> source) besides."""
    project = CorralProject(root)
    shutil.copytree(ROOT / "examples" / "agents", project.agents_dir, dirs_exist_ok=True)
    example: dict[str, Any] = tomllib.loads((ROOT / "examples" / "corral.toml").read_text())
    project.corral.update(example["corral"])
    project.limits.update(example.get("limits", {}))
    project.models.update(example.get("models", {}))
    project.models["fake"] = fake_model(model_url)
    project.tables["console"] = {"listen": "127.0.0.1:0"}
    plugin = root / "deploy_plugin.py"
    plugin.write_text(DEPLOY_PLUGIN)
    project.corral["plugins"] = [str(plugin)]
    for name, table in example["agents"].items():
        project.agents[name] = table
    project.agent("deployer", DEPLOYER, tools=["deploy"])
    for name, source in agents.items():
        project.agent(name, source, models=["fake"], tools=["write_file", "read_file"])
    project.agent("waiter", WAITER)
    return project
