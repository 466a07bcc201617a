"""``python -m benchmarks.run [--quick]``: corral's durable-step cost next to its baselines.

Measures, in one invocation and on the same disk: corral's per-step latency and
throughput with one and with eight agents, spawn-to-first-request time and an idle
agent's memory; a bare pipe + synced-LMDB baseline; LangGraph with its SQLite
checkpointer; DBOS Transact on SQLite. Prints one table of ratios against the
baselines and the targets, and exits 0 (``--strict``: 1 if a target is missed).
See docs/benchmarks.md for what each number means.
"""

from __future__ import annotations

import argparse
import datetime
import json
import os
import platform
import shutil
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

if __package__ in (None, ""):  # run as a file: make the repository root importable
    sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

import psutil  # noqa: E402

from benchmarks import bare, corral_bench, telemetry_bench  # noqa: E402
from benchmarks.stats import Row, summary, table  # noqa: E402

REPO = Path(__file__).resolve().parent.parent
SKIP_HINT = "pip install 'corral[bench]'"
MiB = 2**20


@dataclass(frozen=True)
class Sizes:
    """How much work each measurement does; ``--quick`` shrinks all of it."""

    steps: int
    concurrent_steps: int
    agents: int
    first_runs: int
    idle_seconds: float
    bare_steps: int
    framework_steps: int
    warmup: int
    rounds: int


FULL = Sizes(
    steps=1000,
    concurrent_steps=400,
    agents=8,
    first_runs=10,
    idle_seconds=1.5,
    bare_steps=1000,
    framework_steps=500,
    warmup=20,
    rounds=5,
)
QUICK = Sizes(
    steps=60,
    concurrent_steps=30,
    agents=8,
    first_runs=2,
    idle_seconds=1.0,
    bare_steps=100,
    framework_steps=30,
    warmup=5,
    rounds=1,
)


def machine(tmp: Path) -> dict[str, Any]:
    """Facts that decide what the numbers mean: cores, kernel, filesystem, date."""
    mounts = sorted(
        (p for p in psutil.disk_partitions(all=True) if str(tmp).startswith(p.mountpoint)),
        key=lambda p: len(p.mountpoint),
    )
    fs = f"{mounts[-1].fstype} on {mounts[-1].device} ({mounts[-1].mountpoint})" if mounts else "unknown"
    return {
        "load_before": os.getloadavg(),
        "cpus": os.cpu_count(),
        "kernel": f"{platform.system()} {platform.release()}",
        "python": platform.python_version(),
        "tmp": str(tmp),
        "filesystem": fs,
        "date": datetime.datetime.now(datetime.UTC).strftime("%Y-%m-%d %H:%M UTC"),
    }


def framework(module: str, steps: int, workdir: Path) -> dict[str, Any]:
    """Run one optional baseline in a process of its own; its last stdout line is JSON."""
    db = workdir / f"{module}.sqlite"
    try:
        done = subprocess.run(
            [sys.executable, "-m", f"benchmarks.{module}", str(steps), str(db)],
            cwd=REPO,
            capture_output=True,
            text=True,
            timeout=600,
        )
    except subprocess.TimeoutExpired:
        return {"skipped": f"{module} did not finish within 600 s"}
    lines = done.stdout.strip().splitlines()
    if done.returncode != 0 or not lines:
        tail = done.stderr.strip().splitlines()[-1:] or ["no output"]
        return {"skipped": f"{module} failed (exit {done.returncode}): {tail[0]}"}
    result: dict[str, Any] = json.loads(lines[-1])
    return result


def measure(sizes: Sizes, workdir: Path, log: Any) -> dict[str, Any]:
    results: dict[str, Any] = {"machine": machine(workdir), "sizes": sizes.__dict__}
    bare_rounds: list[dict[str, Any]] = []
    group_rounds: list[tuple[dict[str, Any], dict[str, Any]]] = []

    def bare_round(i: int) -> None:
        log(
            f"round {i + 1}/{sizes.rounds}: bare {sizes.bare_steps} steps (1 child, then grouped: 1 and "
            f"{sizes.agents} children), corral {sizes.steps} steps x 1 agent, "
            f"{sizes.concurrent_steps} steps x {sizes.agents} agents ..."
        )
        bare_rounds.append(bare.durable_steps(workdir / f"bare-{i}", sizes.bare_steps))
        group_rounds.append(
            (
                bare.group_steps(workdir / f"bare-group-1-{i}", 1, sizes.bare_steps),
                bare.group_steps(workdir / f"bare-group-n-{i}", sizes.agents, sizes.concurrent_steps),
            )
        )

    log(f"corral: {sizes.first_runs} one-call runs first ...")
    results["corral"] = corral_bench.measure(
        workdir / "corral",
        steps=sizes.steps,
        concurrent_steps=sizes.concurrent_steps,
        agents=sizes.agents,
        first_runs=sizes.first_runs,
        idle_seconds=sizes.idle_seconds,
        rounds=sizes.rounds,
        between=bare_round,
    )
    rounds = 2 * sizes.rounds
    log(f"telemetry: {rounds} rounds of {sizes.steps} steps x 1 agent, exporting to a local receiver and not ...")
    results["telemetry"] = telemetry_bench.measure(workdir / "telemetry", steps=sizes.steps, rounds=rounds)
    results["bare"] = {
        "lat": [r["lat"] for r in bare_rounds],
        "commit_lat": [r["commit_lat"] for r in bare_rounds],
        "parent_cpu_s": sum(r["parent_cpu_s"] for r in bare_rounds),
        "child_cpu_s": sum(r["child_cpu_s"] for r in bare_rounds),
        "steps": sum(len(r["lat"]) for r in bare_rounds),
        "lmdb_flags": bare_rounds[0]["lmdb_flags"],
    }
    results["bare_group"] = {
        name: {key: sum(r[index][key] for r in group_rounds) for key in ("steps", "window_s", "commits")}
        for index, name in ((0, "one"), (1, "many"))
    }
    results["bare_group"]["children"] = sizes.agents
    results["bare_pipe_only"] = bare.durable_steps(workdir / "bare-pipe", sizes.bare_steps, commit=False)
    results["bare_idle"] = bare.spawn_and_idle()
    for module in ("langgraph_bench", "dbos_bench"):
        log(f"{module}: {sizes.framework_steps} checkpointed steps ...")
        results[module] = framework(module, sizes.framework_steps, workdir)
    results["machine"]["load_after"] = os.getloadavg()
    return results


def _median(values: list[float]) -> float:
    ordered = sorted(values)
    return ordered[len(ordered) // 2]


def _throughput(runs: list[list[float]]) -> float:
    """Steps per second of stepping, every step counted (as corral's run windows are)."""
    return sum(len(run) for run in runs) / sum(sum(run) for run in runs)


def _rate(group: dict[str, Any]) -> float:
    return float(group["steps"] / group["window_s"])


def rows(results: dict[str, Any], warmup: int) -> list[Row]:
    """The table: corral's value, the baseline's, ratio = corral / baseline."""
    c = results["corral"]
    single, multi = summary(c["single"]["lat"], warmup), summary(c["multi"]["lat"], warmup)
    b = results["bare"]
    bare_s = summary(b["lat"], warmup)
    n_agents = c["multi"]["agents"]
    out = [
        Row(
            "step p50, 1 agent",
            single["p50_ms"],
            bare_s["p50_ms"],
            "bare",
            "<= 1.5x",
            single["p50_ms"] <= 1.5 * bare_s["p50_ms"],
            "ms",
        ),
        Row("step p99, 1 agent", single["p99_ms"], bare_s["p99_ms"], "bare", unit="ms"),
        Row("steps/s, 1 agent", c["single"]["steps_per_s"], _throughput(results["bare"]["lat"]), "bare", unit="/s"),
        Row(
            "daemon CPU per step, 1 agent",
            c["single"]["daemon_cpu_s"] / c["single"]["steps"] * 1e6,
            b["parent_cpu_s"] / b["steps"] * 1e6,
            "bare parent",
            unit="us",
        ),
        Row(
            "agent CPU per step, 1 agent",
            c["single"]["agent_cpu_s"] / c["single"]["steps"] * 1e6,
            b["child_cpu_s"] / b["steps"] * 1e6,
            "bare child",
            unit="us",
        ),
        Row(
            f"steps/s, {n_agents} agents",
            c["multi"]["steps_per_s"],
            c["single"]["steps_per_s"],
            "corral 1 agent",
            ">= 3x",
            c["multi"]["steps_per_s"] >= 3 * c["single"]["steps_per_s"],
            "/s",
        ),
        Row(
            f"steps/s, {n_agents} bare children",
            _rate(results["bare_group"]["many"]),
            _rate(results["bare_group"]["one"]),
            "bare grouped, 1 child",
            unit="/s",
        ),
        Row(f"step p50, {n_agents} agents", multi["p50_ms"], single["p50_ms"], "corral 1 agent", unit="ms"),
        Row(
            f"daemon CPU per step, {n_agents} agents",
            c["multi"]["daemon_cpu_s"] / (c["multi"]["steps"] * n_agents) * 1e6,
            c["single"]["daemon_cpu_s"] / c["single"]["steps"] * 1e6,
            "corral 1 agent",
            unit="us",
        ),
        Row(
            f"steps per commit, {n_agents} agents",
            c["multi"]["agents"] * c["multi"]["steps"] / c["multi"]["commits"],
            c["single"]["steps"] / c["single"]["commits"],
            "corral 1 agent",
        ),
    ]
    out += _telemetry_rows(results["telemetry"], warmup)
    for module, label in (("langgraph_bench", "LangGraph+SqliteSaver"), ("dbos_bench", "DBOS on SQLite")):
        other = results[module]
        if "skipped" in other:
            out += [
                Row(f"step {p} vs {label}", single[f"{p}_ms"], None, label, unit="ms", skipped=other["skipped"])
                for p in ("p50", "p99")
            ]
            continue
        theirs = summary([other["lat"]], warmup)
        out += [
            Row(f"step {p} vs {label}", single[f"{p}_ms"], theirs[f"{p}_ms"], label, unit="ms") for p in ("p50", "p99")
        ]
    first = c["first"]
    out += [
        Row(
            "spawn to first request",
            _median(first["spawn_to_first_s"]) * 1000,
            results["bare_idle"]["spawn_to_first_s"] * 1000,
            "bare child",
            unit="ms",
        ),
        Row("idle agent RSS", c["idle"]["rss"] / MiB, results["bare_idle"]["rss"] / MiB, "bare child", unit="MiB"),
        Row("idle agent USS", c["idle"]["uss"] / MiB, results["bare_idle"]["uss"] / MiB, "bare child", unit="MiB"),
    ]
    return out


def _telemetry_rows(t: dict[str, Any], warmup: int) -> list[Row]:
    """Telemetry on (exporting to a local receiver) against off, measured side by side: the
    median over the alternating rounds of each round's p50, so that a burst of the machine's
    own noise (another process's fsyncs) in one round does not decide the comparison."""
    if "skipped" in t:
        return [Row("step p50, telemetry on", None, None, "telemetry off", "<= 1.1x", unit="ms", skipped=t["skipped"])]
    on, off = _round_p50s(t["on"], warmup), _round_p50s(t["off"], warmup)
    on_p50, off_p50 = _median(on), _median(off)
    on_all, off_all = summary(t["on"]["lat"], warmup), summary(t["off"]["lat"], warmup)
    return [
        Row("step p50, telemetry on", on_p50, off_p50, "telemetry off", "<= 1.1x", on_p50 <= 1.1 * off_p50, "ms"),
        Row("step p99, telemetry on", on_all["p99_ms"], off_all["p99_ms"], "telemetry off", unit="ms"),
        Row(
            "daemon CPU per step, telemetry on",
            t["on"]["daemon_cpu_s"] / t["on"]["steps"] * 1e6,
            t["off"]["daemon_cpu_s"] / t["off"]["steps"] * 1e6,
            "telemetry off",
            unit="us",
        ),
    ]


def _round_p50s(pooled: dict[str, Any], warmup: int) -> list[float]:
    """Each round's step p50, in ms."""
    return [summary([run], warmup)["p50_ms"] for run in pooled["lat"]]


def details(results: dict[str, Any], warmup: int) -> list[str]:
    """What stands behind the table, one line each."""
    c, m = results["corral"], results["machine"]
    bare_commit = summary(results["bare"]["commit_lat"], warmup)
    pipe = summary([results["bare_pipe_only"]["lat"]], warmup)
    scaling_bare = _rate(results["bare_group"]["many"]) / _rate(results["bare_group"]["one"])
    scaling_corral = c["multi"]["steps_per_s"] / c["single"]["steps_per_s"]
    lines = [
        f"machine: {m['cpus']} cpus, {m['kernel']}, Python {m['python']}, {m['filesystem']}, {m['date']}, "
        f"load avg {m['load_before'][0]:.1f} before / {m['load_after'][0]:.1f} after",
        f"corral: LMDB sync={c['lmdb_flags']['sync']} metasync={c['lmdb_flags']['metasync']}; "
        f"protections {', '.join(c['protections']) or 'none'}",
        f"bare parts: LMDB put+commit p50 {bare_commit['p50_ms']:.3f} ms, pipe round trip alone p50 "
        f"{pipe['p50_ms']:.3f} ms",
        f"corral {c['multi']['agents']} agents: {c['multi']['agents'] * c['multi']['steps']} steps in "
        f"{c['multi']['window_s']:.2f} s of stepping ({c['multi']['steps_per_s_incl_spawn']:.0f} steps/s counting "
        f"spawn and exit); {c['multi']['commits']} commits",
        f"group commit: {results['bare_group']['children']} bare children scale {scaling_bare:.2f}x over one "
        f"({results['bare_group']['many']['steps'] / results['bare_group']['many']['commits']:.2f} steps per "
        f"commit): what group commit alone gives with this disk and these cores; corral's {c['multi']['agents']} "
        f"agents scale {scaling_corral:.2f}x ({scaling_corral / scaling_bare:.0%} of that)",
        f"corral one-call run: spawn to first request p50 {_median(c['first']['spawn_to_first_s']) * 1000:.0f} ms, "
        f"to its answer {_median(c['first']['spawn_to_answered_s']) * 1000:.0f} ms, whole run (create to ended) "
        f"{_median(c['first']['run_wall_s']) * 1000:.0f} ms",
    ]
    t = results["telemetry"]
    if "skipped" in t:
        lines.append(f"telemetry: skipped: {t['skipped']}")
    else:
        shown = {mode: " ".join(f"{p50:.3f}" for p50 in _round_p50s(t[mode], warmup)) for mode in ("off", "on")}
        lines.append(
            f"telemetry: {len(t['on']['rounds'])} rounds each way, alternating, a fresh home each; step p50 per "
            f"round (ms): off {shown['off']}; on {shown['on']}; the local receiver got {t['spans_received']} of "
            f"{t['spans_expected']} spans"
        )
    for module in ("langgraph_bench", "dbos_bench"):
        other = results[module]
        if "skipped" in other:
            lines.append(f"{module}: skipped: {other['skipped']}")
            continue
        s = summary([other["lat"]], warmup)
        lines.append(
            f"{module}: v{other['version']}, sqlite {other['sqlite']}, {s['steps_per_s']:.0f} steps/s, "
            f"mean {s['mean_ms']:.2f} ms"
        )
    return lines


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m benchmarks.run", description=__doc__.split("\n\n")[0])
    parser.add_argument("--quick", action="store_true", help="smoke run in seconds; numbers mean little")
    parser.add_argument("--steps", type=int, help="steps of the single-agent run")
    parser.add_argument("--tmpdir", type=Path, help="where the stores go (default: the system temp dir)")
    parser.add_argument("--json", type=Path, help="also write every raw measurement to this file")
    parser.add_argument("--keep", action="store_true", help="keep the temp dir (stores and logs)")
    parser.add_argument("--strict", action="store_true", help="exit 1 when a target is missed")
    args = parser.parse_args(argv)
    sizes = QUICK if args.quick else FULL
    if args.steps:
        sizes = Sizes(**{**sizes.__dict__, "steps": args.steps})
    workdir = Path(tempfile.mkdtemp(prefix="corral-bench-", dir=args.tmpdir)).resolve()
    began = time.monotonic()
    try:
        results = measure(sizes, workdir, lambda message: print(message, file=sys.stderr, flush=True))
    finally:
        if not args.keep:
            shutil.rmtree(workdir, ignore_errors=True)
    results["seconds"] = time.monotonic() - began
    table_rows = rows(results, sizes.warmup)
    print(table(table_rows))
    print()
    for line in details(results, sizes.warmup):
        print(line)
    for row in table_rows:
        if row.skipped:
            print(f"skipped ({row.baseline_name}): {SKIP_HINT}")
            break
    print(f"total {results['seconds']:.0f} s{' (quick)' if args.quick else ''}")
    if args.json:
        args.json.write_text(json.dumps(results, indent=1, default=str))
    missed = [row for row in table_rows if row.passed is False]
    return 1 if args.strict and missed else 0


if __name__ == "__main__":
    sys.exit(main())
