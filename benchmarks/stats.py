"""Percentiles and the result table; nothing here measures anything."""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass


def percentile(values: Sequence[float], q: float) -> float:
    """Nearest-rank percentile (``q`` in 0..100) of a non-empty sequence."""
    ordered = sorted(values)
    rank = max(1, math.ceil(q / 100 * len(ordered)))
    return ordered[min(rank, len(ordered)) - 1]


def summary(runs: Sequence[Sequence[float]], warmup: int) -> dict[str, float]:
    """p50/p99/mean in milliseconds over several runs' step latencies (seconds).

    The first ``warmup`` steps of each run are dropped: they pay for one-off work
    (first imports, caches, page faults) that a long-lived agent does not repeat.
    """
    kept = [lat for run in runs for lat in (run[warmup:] if len(run) > warmup else run)]
    total = sum(kept)
    return {
        "n": len(kept),
        "p50_ms": percentile(kept, 50) * 1000,
        "p99_ms": percentile(kept, 99) * 1000,
        "mean_ms": total / len(kept) * 1000,
        "steps_per_s": len(kept) / total if total > 0 else float("nan"),
    }


@dataclass
class Row:
    """One line of the table: corral's value, the baseline's, and the verdict."""

    metric: str
    value: float | None
    baseline: float | None = None
    baseline_name: str = ""
    target: str = ""
    passed: bool | None = None
    unit: str = ""
    skipped: str = ""

    @property
    def ratio(self) -> float | None:
        if self.value is None or self.baseline is None or self.baseline == 0:
            return None
        return self.value / self.baseline

    @property
    def verdict(self) -> str:
        if self.skipped or self.value is None:
            return "skipped"
        if self.passed is None:
            return "info"
        return "PASS" if self.passed else "FAIL"


def _number(value: float | None, unit: str) -> str:
    if value is None:
        return "-"
    text = f"{value:,.0f}" if abs(value) >= 100 else f"{value:.3g}" if abs(value) < 10 else f"{value:.1f}"
    return f"{text} {unit}".strip()


def table(rows: Sequence[Row]) -> str:
    """A fixed-width table: metric, value, baseline, ratio, target, pass/fail."""
    header = ("metric", "value", "baseline", "ratio", "target", "result")
    lines = [header]
    for row in rows:
        base = _number(row.baseline, row.unit)
        if row.baseline_name:
            base = f"{base} ({row.baseline_name})"
        ratio = f"{row.ratio:.2f}x" if row.ratio is not None else "-"
        lines.append((row.metric, _number(row.value, row.unit), base, ratio, row.target or "-", row.verdict))
    widths = [max(len(line[i]) for line in lines) for i in range(len(header))]
    out = ["  ".join(cell.ljust(w) for cell, w in zip(line, widths, strict=True)).rstrip() for line in lines]
    out.insert(1, "  ".join("-" * w for w in widths))
    return "\n".join(out)
