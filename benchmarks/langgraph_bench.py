"""Baseline: LangGraph with its SQLite checkpointer, a checkpoint after every step.

Run in its own process (``python -m benchmarks.langgraph_bench STEPS DB_PATH``) so its
imports and threads stay out of the other measurements; prints one JSON object. The
graph has one node that loops to itself ``STEPS`` times; ``durability="sync"`` makes
LangGraph persist each step's checkpoint before the next step starts. A step's time is
the interval between two consecutive entries into the node: the node's (empty) work
plus LangGraph's scheduling plus the synchronous checkpoint write (SQLite in WAL mode,
committed per checkpoint).
"""

from __future__ import annotations

import json
import sqlite3
import sys
import time
from importlib.metadata import version
from typing import Any, TypedDict


class State(TypedDict):
    """The graph's whole state: how many steps ran."""

    i: int


def measure(steps: int, db_path: str) -> dict[str, Any]:
    try:
        from langgraph.checkpoint.sqlite import SqliteSaver
        from langgraph.graph import END, START, StateGraph
    except ImportError as exc:
        return {"skipped": f"{exc}; pip install 'corral[bench]'"}

    entries: list[float] = []

    def step(state: State) -> dict[str, int]:
        entries.append(time.perf_counter())
        return {"i": state["i"] + 1}

    def again(state: State) -> str:
        return "step" if state["i"] < steps else END

    builder = StateGraph(State)
    builder.add_node("step", step)
    builder.add_edge(START, "step")
    builder.add_conditional_edges("step", again)
    conn = sqlite3.connect(db_path, check_same_thread=False)
    try:
        saver = SqliteSaver(conn)
        graph = builder.compile(checkpointer=saver)
        config: Any = {"configurable": {"thread_id": "bench"}, "recursion_limit": steps + 10}
        final = graph.invoke({"i": 0}, config, durability="sync")
        pragmas = {name: conn.execute(f"PRAGMA {name}").fetchone()[0] for name in ("journal_mode", "synchronous")}
        checkpoints = conn.execute("SELECT count(*) FROM checkpoints").fetchone()[0]
    finally:
        conn.close()
    if final["i"] != steps:
        raise RuntimeError(f"graph stopped at {final['i']} of {steps} steps")
    lat = [b - a for a, b in zip(entries, entries[1:], strict=False)]
    return {
        "lat": lat,
        "checkpoints": checkpoints,
        "sqlite": pragmas,
        "version": version("langgraph"),
        "saver_version": version("langgraph-checkpoint-sqlite"),
    }


if __name__ == "__main__":
    print(json.dumps(measure(int(sys.argv[1]), sys.argv[2])))
