"""Scheduling latency: from a trigger's fire time to the agent's child process starting.

Fifty agents (``--agents``) each on a one-second interval trigger run under a real
in-process daemon (:class:`corral.daemon.root.Daemon`: scheduler, durable queue, real
sandboxed children, LMDB with ``sync=True``) for ``--seconds``. For every run it takes the
fire time the scheduler stored on it (the nominal time; no jitter is configured) and
reports, as p50 and p99:

- fire -> queued: the run stored as queued (the scheduler's own delay);
- fire -> child start: the agent's process spawned (queue, limits, sandbox preparation, spawn);
- fire -> agent code: the agent function running in that process (interpreter and runtime start-up too).

Run from the repository root: ``python -m benchmarks.scheduling`` (``--quick`` for a short run).
"""

from __future__ import annotations

import argparse
import asyncio
import json
import sys
import tempfile
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

if __package__ in (None, ""):
    sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from benchmarks.stats import percentile
from corral.config import load_config
from corral.daemon.host import host
from corral.daemon.root import Daemon
from corral.sandbox.processes import Child, ProcessControl

AGENT = "import time\n\n\ndef run(ctx):\n    return time.time()\n"


class SpawnClock(ProcessControl):
    """The real process control, noting the wall time each run's process was spawned."""

    def __init__(self) -> None:
        super().__init__()
        self.spawned: dict[str, float] = {}

    async def spawn(
        self,
        policy_args: dict[str, object],
        workdir: Path,
        env: dict[str, str],
        cgroup: Path | None,
        wrap: Sequence[str] = (),
        namespaced: bool = False,
        seccomp: bool = False,
    ) -> Child:
        child = await super().spawn(policy_args, workdir, env, cgroup, wrap, namespaced, seccomp)
        self.spawned.setdefault(str(policy_args["run_id"]), time.time())
        return child


def write_config(root: Path, agents: int, concurrency: int) -> Path:
    code = root / "agents"
    code.mkdir(parents=True, exist_ok=True)
    (code / "tick.py").write_text(AGENT)
    lines = ["[corral]", f"home = {json.dumps(str(root / 'home'))}", f"max_concurrent_runs = {concurrency}"]
    lines += ["grace_seconds = 10", "", "[limits]", "memory_mb = 256", "processes = 16"]
    for index in range(agents):
        lines += ["", f"[agents.tick{index:02d}]", 'code = "agents"', 'entry = "tick:run"', 'every = "1s"']
        lines += [f"[agents.tick{index:02d}.schedule]", "no_progress_runs = 0"]
    path = root / "corral.toml"
    path.write_text("\n".join(lines) + "\n")
    return path


async def _serve(daemon: Daemon, seconds: float) -> None:
    serving = asyncio.create_task(daemon.serve())
    await asyncio.sleep(seconds)
    daemon.engine.draining = True
    daemon.stopping.set()
    await serving


def measure(root: Path, agents: int, seconds: float, concurrency: int) -> dict[str, Any]:
    config = load_config(write_config(root, agents, concurrency), {})
    with host(config, echo=None) as composed:
        engine = composed.engine
        spawns = SpawnClock()
        engine.processes = spawns
        asyncio.run(_serve(Daemon(composed), seconds))
        with engine.store.read() as txn:
            runs = [r for r in engine.records.list_runs(txn, None, limit=1_000_000) if r.get("fire_time")]
    series: dict[str, list[float]] = {"fire -> queued": [], "fire -> child start": [], "fire -> agent code": []}
    for run in runs:
        series["fire -> queued"].append(run["created"] - run["fire_time"])
        if run["id"] in spawns.spawned:
            series["fire -> child start"].append(spawns.spawned[run["id"]] - run["fire_time"])
        if run["state"] == "succeeded" and isinstance(run.get("result"), float):
            series["fire -> agent code"].append(run["result"] - run["fire_time"])
    return {
        "agents": agents,
        "seconds": seconds,
        "max_concurrent_runs": concurrency,
        "runs": len(runs),
        "succeeded": sum(1 for r in runs if r["state"] == "succeeded"),
        "latency_ms": {
            name: {"n": len(v), "p50": percentile(v, 50) * 1000, "p99": percentile(v, 99) * 1000}
            for name, v in series.items()
            if v
        },
    }


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--agents", type=int, default=50)
    parser.add_argument("--seconds", type=float, default=20.0)
    parser.add_argument("--concurrency", type=int, default=50, help="[corral] max_concurrent_runs")
    parser.add_argument("--quick", action="store_true", help="5 seconds: a smoke run")
    parser.add_argument("--json", help="also write the results to this file")
    parser.add_argument("--tmpdir", help="where the store goes (default: the system temp dir)")
    args = parser.parse_args(argv)
    seconds = 5.0 if args.quick else args.seconds
    with tempfile.TemporaryDirectory(dir=args.tmpdir, prefix="corral-sched-bench-") as tmp:
        result = measure(Path(tmp), args.agents, seconds, args.concurrency)
    print(
        f"{result['agents']} agents on 1 s intervals for {seconds:g} s, max_concurrent_runs = "
        f"{result['max_concurrent_runs']}: {result['runs']} runs, {result['succeeded']} succeeded"
    )
    print(f"{'latency':<22}{'n':>6}{'p50 ms':>10}{'p99 ms':>10}")
    for name, row in result["latency_ms"].items():
        print(f"{name:<22}{row['n']:>6}{row['p50']:>10.1f}{row['p99']:>10.1f}")
    if args.json:
        Path(args.json).write_text(json.dumps(result, indent=2))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
