"""corral measured through its real engine: host(), Engine.create_run/execute, a real
sandboxed child per run, and the real LMDB store (``sync=True``) in a temp dir.

The benchmark process is the store's one writer, exactly like ``corral up`` or a
foreground ``corral run``; the only thing swapped in is the ``ProcessControl`` seam, by a
subclass that notes when each spawn began.
"""

from __future__ import annotations

import asyncio
import json
import threading
import time
from collections.abc import Awaitable, Callable, Sequence
from pathlib import Path
from typing import Any

import psutil

from corral.config import load_config
from corral.daemon.host import host
from corral.run.engine import Engine
from corral.sandbox.processes import Child, ProcessControl

HERE = Path(__file__).resolve().parent
TOOLS_PLUGIN = HERE / "bench_tools.py"
AGENT_CODE = HERE / "agents"
MAX_AGENTS = 8


class TimedProcessControl(ProcessControl):
    """The real process control, plus the monotonic time each run's spawn began."""

    def __init__(self) -> None:
        super().__init__()
        self.spawned: dict[str, float] = {}

    async def spawn(
        self,
        policy_args: dict[str, Any],
        workdir: Path,
        env: dict[str, str],
        cgroup: Path | None,
        wrap: Sequence[str] = (),
        namespaced: bool = False,
        seccomp: bool = False,
    ) -> Child:
        began = time.monotonic()
        child = await super().spawn(policy_args, workdir, env, cgroup, wrap, namespaced, seccomp)
        self.spawned.setdefault(str(policy_args["run_id"]), began)
        return child


def _toml(value: Any) -> str:
    return json.dumps(value)  # the strings and lists written here are valid TOML as JSON


def write_config(root: Path, agents: int = MAX_AGENTS, telemetry: str | None = None) -> Path:
    """A corral.toml with ``agents`` step agents, a one-call agent and an idle agent;
    ``telemetry``: the OTLP/HTTP endpoint to export to (``[telemetry]`` defaults otherwise)."""
    lines = [
        "[corral]",
        f"home = {_toml(str(root / 'home'))}",
        f"plugins = {_toml([str(TOOLS_PLUGIN)])}",
        f"max_concurrent_runs = {agents * 2}",
    ]
    tables = {f"bench-{i}": ("bench_agents:steps", ["noop"]) for i in range(1, agents + 1)}
    tables["first"] = ("bench_agents:first_step", ["noop"])
    tables["idle"] = ("bench_agents:idle", ["idle"])
    for name, (entry, tools) in tables.items():
        lines += [
            "",
            f"[agents.{name}]",
            f"code = {_toml(str(AGENT_CODE))}",
            f"entry = {_toml(entry)}",
            f"tools = {_toml(tools)}",
            "max_attempts = 1",
        ]
    if telemetry is not None:
        lines += ["", "[telemetry]", f"otlp_endpoint = {_toml(telemetry)}"]
    root.mkdir(parents=True, exist_ok=True)
    path = root / "corral.toml"
    path.write_text("\n".join(lines) + "\n")
    return path


Watch = Callable[[list[str]], Awaitable[None]]
"""Told the ids of a measurement's runs once they are created, before any starts (the
console benchmark opens the first one's page)."""


async def _run(engine: Engine, agent: str, input: dict[str, Any]) -> dict[str, Any]:
    run = await engine.create_run(agent, input, trigger="bench")
    return await _execute(engine, run)


async def _execute(engine: Engine, run: dict[str, Any]) -> dict[str, Any]:
    final = await engine.execute(run["id"])
    if final["state"] != "succeeded":
        raise RuntimeError(f"benchmark run of {run['agent']} ended {final['state']}: {final.get('error')}")
    return final


async def measure_steps(engine: Engine, agents: int, steps: int, watch: Watch | None = None) -> dict[str, Any]:
    """``agents`` runs started together; with more than one, they meet at a barrier first."""
    barrier = agents > 1
    workdirs = [engine.config.workdir(f"bench-{i}") for i in range(1, agents + 1)]
    for workdir in workdirs:
        (workdir / "ready").unlink(missing_ok=True)
        (workdir / "go").unlink(missing_ok=True)
    created = [
        await engine.create_run(f"bench-{i}", {"steps": steps, "barrier": barrier}, trigger="bench")
        for i in range(1, agents + 1)
    ]
    if watch is not None:
        await watch([run["id"] for run in created])
    commits0, cpu0, threads0 = engine.writer.commits, time.process_time(), thread_cpu()
    began = time.monotonic()
    runs = [asyncio.create_task(_execute(engine, run)) for run in created]
    if barrier:
        while not all((w / "ready").exists() for w in workdirs):
            if any(r.done() for r in runs):
                break  # a run failed early: gather below reports it
            await asyncio.sleep(0.005)
        for workdir in workdirs:
            (workdir / "go").touch()
    finals = await asyncio.gather(*runs)
    wall, cpu = time.monotonic() - began, time.process_time() - cpu0
    threads = {name: used - threads0.get(name, 0.0) for name, used in thread_cpu().items()}
    results = [f["result"] for f in finals]
    window = max(r["end"] for r in results) - min(r["first"] for r in results)
    return {
        "agents": agents,
        "steps": steps,
        "lat": [r["lat"] for r in results],
        "window_s": window,
        "wall_s": wall,
        "steps_per_s": agents * steps / window,
        "steps_per_s_incl_spawn": agents * steps / wall,
        "commits": engine.writer.commits - commits0,
        "daemon_cpu_s": cpu,
        "daemon_threads_cpu_s": threads,
        "agent_cpu_s": sum(r["cpu"] for r in results),
    }


def thread_cpu() -> dict[str, float]:
    """CPU seconds used so far by this process's threads, by name (numbered pool threads
    together): which of the daemon's threads a measurement's CPU went to."""
    names = {thread.native_id: thread.name for thread in threading.enumerate()}
    used: dict[str, float] = {}
    for thread in psutil.Process().threads():
        name = names.get(thread.id, "other").split(" (")[0].rstrip("0123456789_-")
        used[name] = used.get(name, 0.0) + thread.user_time + thread.system_time
    return used


def pool(rounds: list[dict[str, Any]]) -> dict[str, Any]:
    """Several rounds of one measurement as one: latencies pooled, times and counts added."""
    pooled = dict(rounds[0])
    pooled["lat"] = [run for r in rounds for run in r["lat"]]
    for key in ("window_s", "wall_s", "commits", "daemon_cpu_s", "agent_cpu_s"):
        pooled[key] = sum(r[key] for r in rounds)
    names = {name for r in rounds for name in r["daemon_threads_cpu_s"]}
    pooled["daemon_threads_cpu_s"] = {n: sum(r["daemon_threads_cpu_s"].get(n, 0.0) for r in rounds) for n in names}
    pooled["steps"] = sum(r["steps"] for r in rounds)
    pooled["steps_per_s"] = pooled["agents"] * pooled["steps"] / pooled["window_s"]
    pooled["steps_per_s_incl_spawn"] = pooled["agents"] * pooled["steps"] / pooled["wall_s"]
    pooled["rounds"] = [{k: v for k, v in r.items() if k != "lat"} for r in rounds]
    return pooled


async def _first_steps(engine: Engine, processes: TimedProcessControl, runs: int) -> dict[str, Any]:
    """Spawn-to-first-request, one run at a time, and the wall time of the whole run."""
    first, answered, walls = [], [], []
    for _ in range(runs):
        began = time.monotonic()
        final = await _run(engine, "first", {})
        walls.append(time.monotonic() - began)
        spawned = processes.spawned[final["id"]]
        first.append(final["result"]["first"] - spawned)
        answered.append(final["result"]["answered"] - spawned)
    return {"spawn_to_first_s": first, "spawn_to_answered_s": answered, "run_wall_s": walls}


async def _idle_memory(engine: Engine, seconds: float, samples: int = 5) -> dict[str, Any]:
    """RSS and USS of an agent's process while it sleeps inside a tool."""
    marker = engine.config.workdir("idle") / "idle.marker"
    marker.unlink(missing_ok=True)
    run = await engine.create_run("idle", {"seconds": seconds}, trigger="bench")
    task = asyncio.create_task(engine.execute(run["id"]))
    deadline = time.monotonic() + 30
    while not marker.exists():
        if task.done() or time.monotonic() > deadline:
            await task
            raise RuntimeError("the idle agent never reached its tool")
        await asyncio.sleep(0.01)
    await asyncio.sleep(0.05)
    rss, uss, tree = [], [], []
    try:
        child = engine.processes.live[run["id"]]
        proc = child.launcher() or psutil.Process(child.pid)  # the agent, not bubblewrap around it
        for _ in range(samples):
            info = proc.memory_full_info()
            rss.append(info.rss)
            uss.append(info.uss)
            tree.append(len(proc.children(recursive=True)) + 1)
            await asyncio.sleep(0.05)
    except (psutil.NoSuchProcess, KeyError):
        pass  # the tool's sleep ended early (a very loaded machine); keep what was sampled
    final = await task
    if not rss:
        raise RuntimeError("the idle agent ended before its memory could be sampled; raise idle_seconds")
    if final["state"] != "succeeded":
        raise RuntimeError(f"the idle run ended {final['state']}: {final.get('error')}")
    return {"rss": sorted(rss)[len(rss) // 2], "uss": sorted(uss)[len(uss) // 2], "processes": max(tree)}


def measure(
    root: Path,
    *,
    steps: int,
    concurrent_steps: int,
    agents: int,
    first_runs: int,
    idle_seconds: float,
    rounds: int = 1,
    between: Callable[[int], None] = lambda r: None,
) -> dict[str, Any]:
    """Every corral measurement, in one host (one store, one writer) under ``root``.

    The single- and multi-agent measurements run in ``rounds`` rounds; ``between(i)`` runs
    before round ``i`` (the bare baseline, so that both see the same machine noise).
    """
    config = load_config(write_config(root, agents), environ={})
    with host(config, echo=None) as composed:
        engine = composed.engine
        processes = TimedProcessControl()
        engine.processes = processes
        protections = processes.prepare()

        async def go() -> dict[str, Any]:
            out: dict[str, Any] = {"protections": protections, "lmdb_flags": engine.store.env.flags()}
            out["first"] = await _first_steps(engine, processes, first_runs)
            single, multi = [], []
            for i in range(rounds):
                between(i)
                single.append(await measure_steps(engine, 1, steps))
                multi.append(await measure_steps(engine, agents, concurrent_steps))
            out["single"], out["multi"] = pool(single), pool(multi)
            out["idle"] = await _idle_memory(engine, idle_seconds)
            return out

        return asyncio.run(go())


def single_agent(root: Path, steps: int, telemetry: str | None = None) -> dict[str, Any]:
    """One single-agent measurement in a host of its own under ``root`` (exporting to the
    OTLP/HTTP endpoint ``telemetry``, if given), closed afterwards."""
    config = load_config(write_config(root, 1, telemetry), environ={})
    with host(config, echo=None) as composed:
        processes = TimedProcessControl()
        composed.engine.processes = processes
        processes.prepare()
        return asyncio.run(measure_steps(composed.engine, 1, steps))
