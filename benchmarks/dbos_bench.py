"""Baseline: DBOS Transact on SQLite, a workflow of STEPS ``@DBOS.step`` calls.

Run in its own process (``python -m benchmarks.dbos_bench STEPS DB_PATH``), because
DBOS is a process-wide singleton with its own threads; prints one JSON object. DBOS
records each step's output in its system database before the workflow goes on, so a
step's time (``perf_counter`` around the call, inside the workflow) is the step's
(empty) work plus DBOS's checkpoint of it: one SQLite transaction per step, with
SQLite's default ``synchronous=FULL``.
"""

from __future__ import annotations

import json
import logging
import sqlite3
import sys
import time
from importlib.metadata import version
from typing import Any


def measure(steps: int, db_path: str) -> dict[str, Any]:
    try:
        from dbos import DBOS, DBOSConfig
    except ImportError as exc:
        return {"skipped": f"{exc}; pip install 'corral[bench]'"}

    @DBOS.step()
    def noop() -> None:
        return None

    @DBOS.workflow()
    def loop(n: int) -> list[float]:
        latencies = []
        for _ in range(n):
            t0 = time.perf_counter()
            noop()
            latencies.append(time.perf_counter() - t0)
        return latencies

    config: DBOSConfig = {"name": "corral-bench", "system_database_url": f"sqlite:///{db_path}", "log_level": "WARNING"}
    DBOS(config=config)
    try:
        DBOS.launch()
        lat = loop(steps)
    finally:
        DBOS.destroy(destroy_registry=True)
    conn = sqlite3.connect(db_path)
    try:
        pragmas = {name: conn.execute(f"PRAGMA {name}").fetchone()[0] for name in ("journal_mode", "synchronous")}
        tables = {row[0] for row in conn.execute("SELECT name FROM sqlite_master WHERE type = 'table'")}
        outputs = (
            conn.execute("SELECT count(*) FROM operation_outputs").fetchone()[0]
            if "operation_outputs" in tables
            else None
        )
    finally:
        conn.close()
    return {"lat": lat, "recorded_steps": outputs, "sqlite": pragmas, "version": version("dbos")}


if __name__ == "__main__":
    logging.basicConfig(level=logging.WARNING)
    print(json.dumps(measure(int(sys.argv[1]), sys.argv[2])))
