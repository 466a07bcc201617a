"""corral's benchmarks: durable-step cost, group commit, start-up and memory, side by side
with a bare pipe + LMDB baseline, LangGraph's SQLite checkpointer and DBOS on SQLite.

Run ``python -m benchmarks.run`` from the repository root; see benchmarks/README.md.
"""
