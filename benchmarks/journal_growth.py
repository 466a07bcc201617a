"""How a door agent's journal grows with its conversation: each Chat Completions request
carries the whole history, so stored whole, step N would hold N turns and a run of N turns
about N²/2 (corral stores a step as the messages it added, core/store/conversations.py).
This runs one conversation of ``--turns``
turns (``benchmarks/agents/conversation_agent.py``, openai SDK, each turn adding
``--turn-bytes`` of text) under a foreground ``corral run`` against
``benchmarks/model_server.py``, then reads every journal entry's size in the store.

    python -m benchmarks.journal_growth                      # 50 turns of 2,000 bytes
    python -m benchmarks.journal_growth --turn-bytes 20000   # tool results the size of a page
    python -m benchmarks.journal_growth --quick              # 10 turns: a smoke run
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from benchmarks import model_server
from corral.store import Store
from corral.store.schema import journal_prefix

HERE = Path(__file__).resolve().parent
KEY_VAR = "JOURNAL_BENCH_KEY"
JOURNAL_MB = 128
"""``limits.journal_mb``'s default, which the total is held against."""


def config(root: Path, port: int, entry: str = "conversation_agent:run") -> Path:
    """``root/corral.toml``: the agent ``talker`` (``entry`` of ``benchmarks/agents``) on the
    model server at ``port``, with no journal or turn limit."""
    return model_server.config(
        root,
        port,
        KEY_VAR,
        f"""[agents.talker]
code = {json.dumps(str(HERE / "agents"))}
entry = "{entry}"
models = ["fake"]
limits = {{ wall_seconds = 3600, cpu_seconds = 3600, journal_mb = "none" }}
guardrails = {{ max_model_turns = "none" }}
""",
    )


def environ(root: Path, config: Path) -> dict[str, str]:
    """This process's environment for a ``corral`` command on ``root/home`` and ``config``."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("CORRAL_")}
    return env | {"CORRAL_HOME": str(root / "home"), "CORRAL_CONFIG": str(config), KEY_VAR: "bench-key"}


def run_talker(root: Path, config: Path, payload: dict[str, int]) -> dict[str, Any]:
    """One foreground ``corral run talker --wait`` with ``payload`` as its input; its record."""
    done = subprocess.run(
        [sys.executable, "-m", "corral", "run", "talker", "--input", json.dumps(payload), "--wait", "--json"],
        env=environ(root, config),
        cwd=root,
        capture_output=True,
        text=True,
        timeout=3600,
    )
    if done.returncode != 0:
        raise SystemExit(f"corral run failed ({done.returncode}): {done.stdout[-2000:]} {done.stderr[-2000:]}")
    record: dict[str, Any] = json.loads(done.stdout)
    return record


def step_bytes(home: Path, run_id: str) -> list[int]:
    """The bytes each journal entry of ``run_id`` takes in the store (key and value), by seq."""
    store = Store.open(home / "store", readonly=True)
    try:
        prefix = journal_prefix(run_id)
        sizes = []
        with store.env.begin(db=store.dbs["journal"]) as txn:
            cursor = txn.cursor()
            if cursor.set_range(prefix):
                for key, value in cursor:
                    if not bytes(key).startswith(prefix):
                        break
                    sizes.append(len(key) + len(value))
        return sizes
    finally:
        store.env.close()


def measure(root: Path, *, turns: int, turn_bytes: int) -> dict[str, object]:
    """One conversation; the size of each of its journal entries, and its total."""
    with model_server.serving() as port:
        run = run_talker(root, config(root, port), {"turns": turns, "turn_bytes": turn_bytes})
    sizes = step_bytes(root / "home", run["id"])
    return {"turns": turns, "turn_bytes": turn_bytes, "conversation": run["result"], "steps": sizes}


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--turns", type=int, default=50)
    parser.add_argument("--turn-bytes", type=int, default=2000, help="text each turn adds to the conversation")
    parser.add_argument("--quick", action="store_true", help="10 turns: a smoke run")
    parser.add_argument("--json", help="also write the results to this file")
    parser.add_argument("--tmpdir", help="where the store goes (default: the system temp dir)")
    args = parser.parse_args(argv)
    turns = 10 if args.quick else args.turns
    with tempfile.TemporaryDirectory(dir=args.tmpdir, prefix="corral-journal-bench-") as tmp:
        results = measure(Path(tmp), turns=turns, turn_bytes=args.turn_bytes)
    sizes: list[int] = results["steps"]  # type: ignore[assignment]
    total = sum(sizes)
    print(
        f"{turns} turns of {args.turn_bytes} bytes; the conversation's text at the end: {results['conversation']} bytes"
    )
    print(f"{'step':>6}{'bytes':>12}")
    for seq in sorted({1, 2, len(sizes) // 4, len(sizes) // 2, len(sizes) - 1, len(sizes)} - {0}):
        print(f"{seq:>6}{sizes[seq - 1]:>12,}")
    print(f"journal: {total:,} bytes in {len(sizes)} steps, {total / max(len(sizes), 1):,.0f} a step on average")
    print(f"that is {total / (JOURNAL_MB * 2**20):.2%} of limits.journal_mb's default, {JOURNAL_MB} MiB")
    if args.json:
        Path(args.json).write_text(json.dumps(results, indent=2))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
