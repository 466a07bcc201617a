"""Where one durable step's time goes: ``python -m benchmarks.critical_path [STEPS]``.

A diagnostic, not part of ``benchmarks.run``. It runs one agent through the real engine
(as ``benchmarks.corral_bench`` does) with timestamps taken at the points a step passes,
by wrapping a few private names in this process only (``ChildWire.readable``,
``Steps._step``, ``ChildWire.send``, ``Writer._commit``, ``Attempt._report_steps``); if
those are renamed, this script needs the same change. The agent stamps when it asks
(``time.monotonic()``, one clock for both processes) and how long ``ctx.tool`` took.
Prints the median of each segment of the critical path.
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
from corral import attempt as attempt_module
from corral import childwire as childwire_module
from corral import steps as steps_module
from corral.config import load_config
from corral.host import host
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
        with host(config, echo=None) as engine:
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


def main() -> None:
    steps = int(sys.argv[1]) if len(sys.argv) > 1 else 2000
    with tempfile.TemporaryDirectory(prefix="corral-critical-") as tmp:
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


if __name__ == "__main__":
    main()
