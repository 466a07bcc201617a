"""What a model call through the model door adds over the same openai SDK call made straight
to the same model server, measured in the same runs: p50 and p99, plain and streamed (time
to the first content chunk). Target: no more than 2 ms added at p50.

One sandboxed agent (``benchmarks/agents/door_agent.py``) under a foreground ``corral run``
(the CLI is then the daemon: the real engine, LMDB with ``sync=True``) alternates the two
sides call by call, so both see the same noise; the model server
(``benchmarks/model_server.py``) answers at once, in a process of its own. The agent's
network grant names the server's port, so the direct side is allowed to reach it.

    python -m benchmarks.door            # 3 runs of 150 call pairs, about a minute
    python -m benchmarks.door --quick    # 1 run of 30: a smoke run
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from benchmarks import model_server
from benchmarks.stats import percentile

HERE = Path(__file__).resolve().parent
WARMUP = 10
KEY_VAR = "DOOR_BENCH_KEY"


def _config(root: Path, port: int) -> Path:
    return model_server.config(
        root,
        port,
        KEY_VAR,
        f"""[agents.door]
code = {json.dumps(str(HERE / "agents"))}
entry = "door_agent:run"
models = ["fake"]
limits = {{ wall_seconds = 600, cpu_seconds = 600 }}
guardrails = {{ max_model_turns = "none" }}
sandbox = {{ network = ["127.0.0.1:{port}"] }}
""",
    )


def _run(root: Path, config: Path, port: int, calls: int) -> dict[str, list[float]]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("CORRAL_")}
    env.update(CORRAL_HOME=str(root / "home"), CORRAL_CONFIG=str(config), **{KEY_VAR: "bench-key"})
    payload = json.dumps({"calls": calls, "direct": f"http://127.0.0.1:{port}/v1"})
    done = subprocess.run(
        [sys.executable, "-m", "corral", "run", "door", "--input", payload, "--wait", "--json"],
        env=env,
        cwd=root,
        capture_output=True,
        text=True,
        timeout=900,
    )
    if done.returncode not in (0, 1):
        raise SystemExit(f"corral run failed ({done.returncode}): {done.stderr[-2000:]}")
    run = json.loads(done.stdout)
    if run["state"] != "succeeded":
        raise SystemExit(f"the benchmark agent failed: {run.get('error')}")
    result: dict[str, list[float]] = run["result"]
    return result


def _pooled(runs: Sequence[dict[str, list[float]]], key: str) -> list[float]:
    return [value * 1000 for run in runs for value in run[key][WARMUP:]]


def fsync_ms(folder: Path, times: int = 50) -> float:
    """The median ``fdatasync`` of a 4 KiB write in ``folder`` now: what each of a model
    step's two commits waits for at least (LMDB syncs its data and then its meta page)."""
    spent = []
    with open(folder / "fsync-probe", "wb") as probe:
        for _ in range(times):
            probe.write(b"x" * 4096)
            probe.flush()
            began = time.perf_counter()
            os.fdatasync(probe.fileno())
            spent.append((time.perf_counter() - began) * 1000)
    return percentile(spent, 50)


def measure(root: Path, *, calls: int, runs: int) -> dict[str, Any]:
    """``runs`` runs of ``calls`` call pairs; milliseconds per side, and what the door adds."""
    with model_server.serving() as port:
        config = _config(root, port)
        measured = [_run(root, config, port, calls) for _ in range(runs)]
    results: dict[str, Any] = {"calls": calls, "runs": runs, "fsync_p50": fsync_ms(root)}
    for what in ("call", "first", "streamed"):
        door, direct = _pooled(measured, f"door_{what}"), _pooled(measured, f"direct_{what}")
        row = {
            f"{side}_{q}": percentile(values, n)
            for side, values in (("door", door), ("direct", direct))
            for q, n in (("p50", 50), ("p99", 99))
        }
        row["added_p50"] = row["door_p50"] - row["direct_p50"]
        row["added_p99"] = row["door_p99"] - row["direct_p99"]
        results[what] = row
    journaled = _pooled(measured, "ctx_call")
    results["ctx_model"] = {"p50": percentile(journaled, 50), "p99": percentile(journaled, 99)}
    return results


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--calls", type=int, default=150, help="call pairs per run")
    parser.add_argument("--runs", type=int, default=3)
    parser.add_argument("--quick", action="store_true", help="1 run of 30 pairs: a smoke run")
    parser.add_argument("--json", help="also write the results to this file")
    parser.add_argument("--tmpdir", help="where the store goes (default: the system temp dir)")
    args = parser.parse_args(argv)
    calls, runs = (30, 1) if args.quick else (args.calls, args.runs)
    with tempfile.TemporaryDirectory(dir=args.tmpdir, prefix="corral-door-bench-") as tmp:
        results = measure(Path(tmp), calls=calls, runs=runs)
    heads = ("door p50", "direct p50", "added p50", "door p99", "direct p99", "added p99")
    print(f"{'ms':<26}" + "".join(f"{head:>12}" for head in heads))
    labels = {"call": "call", "first": "streamed, first token", "streamed": "streamed, whole"}
    for what, label in labels.items():
        row = results[what]
        print(
            f"{label:<26}{row['door_p50']:>12.2f}{row['direct_p50']:>12.2f}{row['added_p50']:>12.2f}"
            f"{row['door_p99']:>12.2f}{row['direct_p99']:>12.2f}{row['added_p99']:>12.2f}"
        )
    journaled = results["ctx_model"]
    print(f"{'ctx.model (no HTTP)':<26}{journaled['p50']:>12.2f}{'':>36}{journaled['p99']:>12.2f}")
    print(f"fdatasync p50 on the store's disk meanwhile: {results['fsync_p50']:.2f} ms; load {os.getloadavg()[0]:.1f}")
    verdict = "PASS" if results["call"]["added_p50"] <= 2.0 and results["first"]["added_p50"] <= 2.0 else "FAIL"
    print(f"target: at most 2 ms added at p50 (call and first token): {verdict}")
    if args.json:
        Path(args.json).write_text(json.dumps(results, indent=2))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
