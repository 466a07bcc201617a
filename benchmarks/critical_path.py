"""Where one durable step's time goes: ``python -m benchmarks.critical_path [STEPS]``.

A diagnostic, not part of ``benchmarks.run``. It runs one agent through the real engine
(as ``benchmarks.corral_bench`` does) with timestamps taken at the points a step passes,
by wrapping a few private methods in this process only (``Attempt._on_step``,
``Attempt._answer``, ``Attempt._report_step``, ``Journal.tool``, ``Writer._commit``);
if those are renamed, this script needs the same change. The agent stamps when it
asks (``time.monotonic()``, one clock for both processes) and how long ``ctx.tool``
took. Prints the median of each segment of the critical path.
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
from corral import journal as journal_module
from corral.config import load_config
from corral.host import host
from corral.store import writer as writer_module

Marks = dict[int, dict[str, float]]


def _instrument(marks: Marks, commits: list[tuple[float, float, int]]) -> Callable[[], None]:
    """Wrap the private methods; returns a function that puts the originals back."""
    Attempt, Journal, Writer = attempt_module.Attempt, journal_module.Journal, writer_module.Writer
    originals = {
        (Attempt, "_on_step"): Attempt._on_step,
        (Attempt, "_answer"): Attempt._answer,
        (Attempt, "_report_step"): Attempt._report_step,
        (Journal, "tool"): Journal.tool,
        (Writer, "_commit"): Writer._commit,
    }

    def mark(seq: int, what: str) -> None:
        marks.setdefault(seq, {})[what] = time.monotonic()

    async def on_step(self: Any, child: Any, message: dict[str, Any]) -> Any:
        mark(message["seq"], "step_read")
        return await originals[(Attempt, "_on_step")](self, child, message)

    async def answer(self: Any, child: Any, seq: int, decision: Any) -> Any:
        mark(seq, "answer")
        outcome = await originals[(Attempt, "_answer")](self, child, seq, decision)
        mark(seq, "sent")
        return outcome

    def report_step(self: Any, entry: dict[str, Any], *, replayed: bool) -> None:
        began = time.monotonic()
        originals[(Attempt, "_report_step")](self, entry, replayed=replayed)
        marks.setdefault(entry["seq"], {})["report_s"] = time.monotonic() - began

    def tool(self: Any, txn: Any, seq: int, *args: Any) -> Any:
        mark(seq, "job_start")
        decision = originals[(Journal, "tool")](self, txn, seq, *args)
        mark(seq, "job_end")
        return decision

    def commit(self: Any, batch: list[Any]) -> Any:
        began = time.monotonic()
        outcomes = originals[(Writer, "_commit")](self, batch)
        commits.append((began, time.monotonic(), len(batch)))
        return outcomes

    Attempt._on_step, Attempt._answer, Attempt._report_step = on_step, answer, report_step
    Journal.tool = tool
    Writer._commit = commit

    def restore() -> None:
        for (cls, name), func in originals.items():
            setattr(cls, name, func)

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
        commit_end = min((end for start, end, _ in commits if start <= m["job_end"] <= end), default=None)
        if commit_end is None:
            continue
        parts = {
            "agent asks -> daemon reads the step (incl. reading the previous done)": m["step_read"] - asked,
            "daemon reads step -> journal job starts (validate, queue, writer wakes)": m["job_start"] - m["step_read"],
            "journal job (fingerprint, key, put)": m["job_end"] - m["job_start"],
            "job end -> commit durable (fsync of the batch)": commit_end - m["job_end"],
            "commit durable -> reply starts (loop wake-up, step log + notify, settle)": m["answer"] - commit_end,
            "reply written (encode, write, drain)": m["sent"] - m["answer"],
            "reply sent -> ctx.tool returns (child: decode, tool, done frame)": asked + took - m["sent"],
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
        f"{'  of which: the step log line + corral_step_done notify (_report_step)':<{width}}  "
        f"{out['report_step_us']:8.0f} us"
    )
    print(
        f"commits while stepping: {out['commits']} for {out['steps']} steps, "
        f"{out['jobs_per_commit']:.2f} jobs each, {out['commit_us']:.0f} us per commit (median)"
    )


if __name__ == "__main__":
    main()
