"""Retention keeps each agent's journals bounded by age and size."""

from __future__ import annotations

import asyncio
import time
from pathlib import Path

from corral.config import load_config
from corral.daemon.host import host
from corral.run import upkeep

AGENT = "def run(ctx):\n    for i in range(3):\n        ctx.tool('word_count', text='a b c ' * 20)\n    return 1\n"


def _config(tmp_path: Path, retention: str) -> Path:
    (tmp_path / "agents").mkdir()
    (tmp_path / "agents" / "talker.py").write_text(AGENT)
    path = tmp_path / "corral.toml"
    path.write_text(
        f'[agents.talker]\ncode = "agents"\nentry = "talker:run"\ntools = ["word_count"]\n{retention}\n'
        '[agents.other]\ncode = "agents"\nentry = "talker:run"\ntools = ["word_count"]\n'
    )
    return path


def _run_and_prune(path: Path, runs: int, pause: float = 0.0) -> tuple[list[dict], int, list[dict]]:
    config = load_config(path)
    with host(config, echo=None) as composed:
        engine = composed.engine

        async def go() -> tuple[list[dict], int, list[dict]]:
            ids = []
            for agent in ["other"] + ["talker"] * runs:
                run = await engine.create_run(agent)
                await engine.execute(run["id"])
                ids.append(run["id"])
            await asyncio.sleep(pause)
            removed = await upkeep.prune(engine.records, engine.writer, engine.config, engine.log)
            remaining = await engine.writer.run(lambda txn: engine.records.list_runs(txn, None, 100))
            journals = await engine.writer.run(lambda txn: [list(engine.records.steps(txn, i)) for i in ids])
            return remaining, removed, journals

        return asyncio.run(go())


def test_size_limit_removes_the_oldest_finished_runs_of_that_agent_only(tmp_path: Path) -> None:
    remaining, removed, journals = _run_and_prune(_config(tmp_path, "retention_mb = 0.002"), runs=5)
    talker = [r for r in remaining if r["agent"] == "talker"]
    assert removed >= 1 and len(talker) == 5 - removed
    assert sum(r["journal_bytes"] for r in talker) <= 0.002 * 2**20
    assert [r["agent"] for r in remaining].count("other") == 1, "another agent's runs are untouched"
    assert journals[1] == [] and len(journals[-1]) == 3, "oldest journal gone, newest kept"


def test_age_limit_removes_runs_older_than_retention_days(tmp_path: Path) -> None:
    started = time.time()
    remaining, removed, _ = _run_and_prune(_config(tmp_path, "retention_days = 0.00001"), runs=2, pause=1.0)
    assert removed == 2
    assert {r["agent"] for r in remaining} == {"other"}
    assert time.time() - started < 30
