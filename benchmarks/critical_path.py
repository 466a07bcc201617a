"""Where one durable step's time goes: ``python -m benchmarks.critical_path [STEPS]``.

A diagnostic, not part of ``benchmarks.run``. It runs one agent through the real engine
(as ``benchmarks.corral_bench`` does) with timestamps taken at the points a step passes,
by wrapping a few private names in this process only (``ChildWire.readable``,
``Steps._step``, ``ChildWire.send``, ``Writer._commit``, ``Attempt._report_steps``); if
those are renamed, this script needs the same change. The agent stamps when it asks
(``time.monotonic()``, one clock for both processes) and how long ``ctx.tool`` took.
Prints the median of each segment of the critical path.

``python -m benchmarks.critical_path STEPS --agents N`` (N > 1) looks at the store writer's
rounds instead, with N agents stepping at once: how its time splits between waiting,
reading and deciding, the commit (the jobs' Python, then LMDB's commit and fsync) and
answering, and what a commit costs by how many jobs it carries.
"""

from __future__ import annotations

import asyncio
import statistics
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from benchmarks import corral_bench
from corral.config import load_config
from corral.daemon.host import host
from corral.run import attempt as attempt_module
from corral.run import childwire as childwire_module
from corral.run import steps as steps_module
from corral.store import writer as writer_module

Marks = dict[int, dict[str, float]]


def _instrument(marks: Marks, commits: list[tuple[float, float, int]]) -> Callable[[], None]:
    """Wrap the private methods; returns a function that puts the originals back."""
    ChildWire, Steps = childwire_module.ChildWire, steps_module.Steps
    Writer, Attempt = writer_module.Writer, attempt_module.Attempt
    originals: dict[tuple[Any, str], Any] = {
        (ChildWire, "readable"): ChildWire.readable,
        (ChildWire, "send"): ChildWire.send,
        (Steps, "_step"): Steps._step,
        (Writer, "_commit"): Writer._commit,
        (Attempt, "_report_steps"): Attempt._report_steps,
    }
    read_began = [0.0]

    def readable(self: Any) -> Any:
        read_began[0] = time.monotonic()
        return originals[(ChildWire, "readable")](self)

    def step(self: Any, message: dict[str, Any]) -> Any:
        marks.setdefault(message["seq"], {})["read"] = read_began[0]
        jobs = originals[(Steps, "_step")](self, message)
        marks[message["seq"]]["decided"] = time.monotonic()
        return jobs

    def send(self: Any, message: dict[str, Any]) -> None:
        if "seq" in message:
            marks.setdefault(message["seq"], {})["reply"] = time.monotonic()
        originals[(ChildWire, "send")](self, message)

    def commit(self: Any, batch: list[Any]) -> Any:
        began = time.monotonic()
        outcomes = originals[(Writer, "_commit")](self, batch)
        commits.append((began, time.monotonic(), len(batch)))
        return outcomes

    def report_steps(self: Any, reports: list[Any]) -> None:
        began = time.monotonic()
        originals[(Attempt, "_report_steps")](self, reports)
        for entry, _ in reports:
            marks.setdefault(entry["seq"], {})["report_s"] = (time.monotonic() - began) / len(reports)

    ChildWire.readable, ChildWire.send, Steps._step = readable, send, step  # type: ignore[method-assign]
    Writer._commit, Attempt._report_steps = commit, report_steps  # type: ignore[method-assign]

    def restore() -> None:
        for (owner, name), func in originals.items():
            setattr(owner, name, func)

    return restore


def measure(steps: int, root: Path) -> dict[str, Any]:
    marks: Marks = {}
    commits: list[tuple[float, float, int]] = []
    restore = _instrument(marks, commits)
    try:
        config = load_config(corral_bench.write_config(root, 1), environ={})
        with host(config, echo=None) as composed:
            engine = composed.engine
            engine.processes.prepare()

            async def go() -> dict[str, Any]:
                run = await engine.create_run("bench-1", {"steps": steps, "stamps": True})
                return await engine.execute(run["id"])

            final = asyncio.run(go())
    finally:
        restore()
    result = final["result"]
    segments: dict[str, list[float]] = {}
    warmup = min(20, steps // 5)
    for seq in range(warmup + 1, steps + 1):
        m, asked, took = marks[seq], result["starts"][seq - 1], result["lat"][seq - 1]
        commit = next(((start, end) for start, end, _ in commits if start <= m["reply"] and end >= m["decided"]), None)
        if commit is None or "read" not in m:
            continue
        parts = {
            "agent asks -> writer thread starts reading the step": m["read"] - asked,
            "read, decode and decide the step (validate, journal job built)": m["decided"] - m["read"],
            "decided -> commit begins": commit[0] - m["decided"],
            "commit: journal job + fsync of the round": commit[1] - commit[0],
            "commit durable -> answer written (on the writer thread)": m["reply"] - commit[1],
            "answer written -> ctx.tool returns (child: decode, tool, done frame)": asked + took - m["reply"],
            "whole step, as the agent sees it": took,
        }
        for name, value in parts.items():
            segments.setdefault(name, []).append(value)
    reports = [m["report_s"] for m in marks.values() if "report_s" in m]
    during = [c for c in commits if c[0] >= result["first"] and c[1] <= result["end"]]
    return {
        "segments_us": {k: statistics.median(v) * 1e6 for k, v in segments.items()},
        "report_step_us": statistics.median(reports) * 1e6 if reports else None,
        "commits": len(during),
        "steps": steps,
        "commit_us": statistics.median((end - start) * 1e6 for start, end, _ in during),
        "jobs_per_commit": statistics.mean(n for _, _, n in during),
    }


def _instrument_rounds(events: list[tuple[str, float, float, int]]) -> Callable[[], None]:
    """Wrap the writer's commit, its jobs and its answering; ``events`` gets (what, start, end, n)."""
    Writer = writer_module.Writer
    commit, deliver = Writer._commit, Writer._deliver
    alone, nested = Writer._run_alone, Writer._run_nested
    in_jobs = [0.0]

    def timed_commit(self: Any, batch: list[Any]) -> Any:
        in_jobs[0] = 0.0
        began = time.perf_counter()
        outcomes = commit(self, batch)
        ended = time.perf_counter()
        events.append(("commit", began, ended, len(batch)))
        events.append(("jobs", began, began + in_jobs[0], len(batch)))
        return outcomes

    def timed_deliver(self: Any, batch: list[Any], outcomes: list[Any]) -> None:
        began = time.perf_counter()
        deliver(self, batch, outcomes)
        events.append(("answer", began, time.perf_counter(), len(batch)))

    def timed(run: Callable[..., Any]) -> Callable[..., Any]:
        def job(*args: Any) -> Any:
            began = time.perf_counter()
            try:
                return run(*args)
            finally:
                in_jobs[0] += time.perf_counter() - began

        return staticmethod(job)

    Writer._commit, Writer._deliver = timed_commit, timed_deliver  # type: ignore[method-assign]
    Writer._run_alone, Writer._run_nested = timed(alone), timed(nested)  # type: ignore[method-assign,assignment]

    def restore() -> None:
        Writer._commit, Writer._deliver = commit, deliver  # type: ignore[method-assign]
        Writer._run_alone, Writer._run_nested = alone, nested  # type: ignore[method-assign]

    return restore


def rounds(agents: int, steps: int, root: Path) -> dict[str, Any]:
    """The writer's rounds while ``agents`` agents make ``steps`` steps each (middle 60%)."""
    events: list[tuple[str, float, float, int]] = []
    restore = _instrument_rounds(events)
    try:
        config = load_config(corral_bench.write_config(root, agents), environ={})
        with host(config, echo=None) as composed:
            engine = composed.engine
            engine.processes.prepare()
            stepped = asyncio.run(corral_bench.measure_steps(engine, agents, steps))
    finally:
        restore()
    commits = [e for e in events if e[0] == "commit"]
    middle = commits[len(commits) // 5 : -len(commits) // 5 or None]
    first, last = middle[0][1], middle[-1][2]
    spent: dict[str, float] = {}
    for what, began, ended, _ in events:
        if first <= began and ended <= last:
            spent[what] = spent.get(what, 0.0) + ended - began
    window = last - first
    by_jobs: dict[int, list[float]] = {}
    for _, began, ended, n in middle:
        by_jobs.setdefault(n, []).append((ended - began) * 1e6)
    return {
        "steps_per_s": stepped["steps_per_s"],
        "jobs_per_commit": statistics.mean(n for *_, n in middle),
        "round_us": window / len(middle) * 1e6,
        "share": {
            "commit: the jobs' Python": spent["jobs"] / window,
            "commit: LMDB commit + fsync": (spent["commit"] - spent["jobs"]) / window,
            "answering (callbacks, replies into the pipes)": spent["answer"] / window,
            "the rest (waiting, reading and deciding frames)": 1 - (spent["commit"] + spent["answer"]) / window,
        },
        "commit_us_by_jobs": {n: (len(v), statistics.median(v)) for n, v in sorted(by_jobs.items()) if len(v) >= 20},
    }


def main() -> None:
    args = sys.argv[1:]
    agents = 1
    if "--agents" in args:
        at = args.index("--agents")
        agents = int(args[at + 1])
        del args[at : at + 2]
    steps = int(args[0]) if args else 2000
    with tempfile.TemporaryDirectory(prefix="corral-critical-") as tmp:
        if agents > 1:
            print_rounds(agents, rounds(agents, steps, Path(tmp)))
            return
        out = measure(steps, Path(tmp))
    width = max(len(k) for k in out["segments_us"])
    for name, value in out["segments_us"].items():
        print(f"{name:<{width}}  {value:8.0f} us")
    print(
        f"{'per step, on the background thread: log line + corral_step_done':<{width}}  {out['report_step_us']:8.0f} us"
    )
    print(
        f"commits while stepping: {out['commits']} for {out['steps']} steps, "
        f"{out['jobs_per_commit']:.2f} jobs each, {out['commit_us']:.0f} us per commit (median)"
    )


def print_rounds(agents: int, out: dict[str, Any]) -> None:
    print(
        f"{agents} agents: {out['steps_per_s']:,.0f} steps/s, {out['jobs_per_commit']:.2f} jobs per commit, "
        f"one writer round every {out['round_us']:.0f} us"
    )
    for name, share in out["share"].items():
        print(f"  {name:<50} {share:6.1%} of the writer's time")
    for n, (count, median) in out["commit_us_by_jobs"].items():
        print(f"  commit of {n} jobs ({count}x): {median:.0f} us (median)")


if __name__ == "__main__":
    main()
