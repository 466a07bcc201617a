"""Telemetry on against off, in the same run: corral's single-agent step with ``[telemetry]``
exporting every step's span to a local OTLP/HTTP receiver (``benchmarks/otlp_sink.py``, a
process of its own, as a collector is), and without it.

Rounds alternate (off, on, on, off, ...), each in a fresh corral home and host, so slow
drift of the machine falls on both sides alike. The receiver's span count says that the
spans were exported, not only built.
"""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path
from typing import Any

from benchmarks import corral_bench
from corral.config.telemetry import INSTALL, exporter_installed

REPO = Path(__file__).resolve().parent.parent


def measure(root: Path, *, steps: int, rounds: int) -> dict[str, Any]:
    """``rounds`` single-agent runs of ``steps`` steps with telemetry off, and as many on."""
    if not exporter_installed():
        return {"skipped": f"the OpenTelemetry packages are not installed ({INSTALL})"}
    sink = subprocess.Popen(
        [sys.executable, "-m", "benchmarks.otlp_sink"],
        cwd=REPO,
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        text=True,
    )
    assert sink.stdin is not None and sink.stdout is not None
    endpoint = f"http://127.0.0.1:{int(sink.stdout.readline())}"
    measured: dict[str, list[dict[str, Any]]] = {"off": [], "on": []}
    try:
        for i in range(rounds):
            for mode in ("off", "on") if i % 2 == 0 else ("on", "off"):
                where = root / f"{mode}-{i}"
                measured[mode].append(corral_bench.single_agent(where, steps, endpoint if mode == "on" else None))
    finally:
        sink.stdin.close()
        received = sink.stdout.read().strip()
        sink.wait(10)
    pooled = {mode: corral_bench.pool(runs) for mode, runs in measured.items()}
    return {**pooled, "spans_received": int(received or 0), "spans_expected": rounds * (steps + 1)}
