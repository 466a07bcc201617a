"""What "the same code" means on resume (``engine.code_hash``): an entry agent's ``.py`` files, a
command agent's every file and its command, never what installed packages and caches hold."""

from __future__ import annotations

from pathlib import Path

from corral.config import AgentConfig, load_config
from corral.run.engine import code_hash


def _agent(tmp_path: Path, table: str) -> AgentConfig:
    config = tmp_path / "corral.toml"
    config.write_text(f'[agents.a]\ncode = "code"\n{table}\n')
    return load_config(config, {"CORRAL_HOME": str(tmp_path / "home")}).agents["a"]


def test_a_command_agents_hash_covers_its_files_and_command_but_not_installed_packages(tmp_path: Path) -> None:
    code = tmp_path / "code"
    (code / "node_modules" / "openai").mkdir(parents=True)
    (code / "agent.js").write_text("console.log(1)\n")
    (code / "node_modules" / "openai" / "index.js").write_text("v1\n")
    agent = _agent(tmp_path, 'command = ["node", "agent.js"]')
    first = code_hash(agent)
    (code / "node_modules" / "openai" / "index.js").write_text("v2\n")
    (code / "notes.json").write_bytes(b"")
    assert code_hash(agent) != first, "a new file of the agent's own is a change"
    (code / "notes.json").unlink()
    assert code_hash(agent) == first, "an installed package is not the agent's code"
    (code / "agent.js").write_text("console.log(2)\n")
    assert code_hash(agent) != first
    assert code_hash(_agent(tmp_path, 'command = ["node", "agent.js", "--fast"]')) != code_hash(agent)


def test_an_entry_agents_hash_covers_its_python_files_only(tmp_path: Path) -> None:
    code = tmp_path / "code"
    (code / ".venv").mkdir(parents=True)
    (code / "a.py").write_text("def run(ctx):\n    return 1\n")
    agent = _agent(tmp_path, 'entry = "a:run"')
    first = code_hash(agent)
    (code / "data.txt").write_text("not code\n")
    (code / ".venv" / "site.py").write_text("installed\n")
    assert code_hash(agent) == first
    (code / "b.py").write_text("X = 1\n")
    assert code_hash(agent) != first
