"""Agent functions the benchmarks run; each returns its own timings as the run's result.

Timestamps that are compared across processes use ``time.monotonic()`` (one system-wide
clock on Linux and macOS); step latencies use ``time.perf_counter()``.
"""

import os
import time
from typing import Any


def steps(ctx: Any) -> dict[str, Any]:
    """``ctx.input["steps"]`` no-op tool calls, each timed.

    With ``ctx.input["barrier"]`` it first says it is ready (a ``ready`` file in its
    workdir) and waits for a ``go`` file, so that several agents start stepping at once.
    """
    entered = time.monotonic()
    if ctx.input.get("barrier"):
        with open("ready", "w") as f:
            f.write("ready\n")
        while not os.path.exists("go"):
            time.sleep(0.002)
    latencies: list[float] = []
    starts: list[float] = []
    stamps = ctx.input.get("stamps", False)
    first, cpu = time.monotonic(), time.process_time()
    for _ in range(ctx.input["steps"]):
        if stamps:
            starts.append(time.monotonic())
        t0 = time.perf_counter()
        ctx.tool("noop")
        latencies.append(time.perf_counter() - t0)
    result: dict[str, Any] = {
        "entered": entered,
        "first": first,
        "end": time.monotonic(),
        "lat": latencies,
        "cpu": time.process_time() - cpu,
    }
    if stamps:
        result["starts"] = starts
    return result


def first_step(ctx: Any) -> dict[str, float]:
    """One no-op call; says when the first request was about to be sent and when it was answered."""
    first = time.monotonic()
    ctx.tool("noop")
    return {"first": first, "answered": time.monotonic()}


def idle(ctx: Any) -> dict[str, bool]:
    """Block inside a tool for ``ctx.input["seconds"]``."""
    ctx.tool("idle", seconds=ctx.input["seconds"])
    return {"done": True}
