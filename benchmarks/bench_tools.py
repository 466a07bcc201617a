"""Drop-in plugin for the benchmarks (named in ``[corral] plugins``): two trivial tools.

``noop`` does nothing, so a step's latency is corral's overhead alone. ``idle`` leaves a
marker file in the workdir and sleeps, so the benchmark can weigh an agent that is
blocked inside a tool.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import corral

IDLE_MARKER = "idle.marker"


@corral.tool(idempotent=True)
def noop() -> None:
    """Do nothing; the cheapest tool a durable step can run."""


@corral.tool(idempotent=True)
def idle(seconds: float) -> None:
    """Say we are idle (a marker file in the workdir), then sleep.

    Args:
        seconds: How long to sleep.
    """
    Path(IDLE_MARKER).write_text("idle\n")
    time.sleep(seconds)


@corral.hookimpl
def corral_register_tools(register: Callable[..., Any]) -> None:
    register(noop)
    register(idle)
