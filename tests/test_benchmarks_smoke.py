"""The benchmark command runs end to end in its quick mode and prints its table.

No timing is asserted: timings belong in docs/benchmarks.md, never in unit tests.
"""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parent.parent


@pytest.mark.slow
def test_quick_benchmark_completes_and_prints_the_table(tmp_path: Path) -> None:
    result = subprocess.run(
        [sys.executable, "-m", "benchmarks.run", "--quick", "--tmpdir", str(tmp_path)],
        cwd=REPO,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert result.returncode == 0, result.stderr[-4000:]
    header = result.stdout.splitlines()[0].split()
    assert header == ["metric", "value", "baseline", "ratio", "target", "result"]
    for metric in ("step p50, 1 agent", "steps/s, 8 agents", "spawn to first request", "idle agent RSS"):
        assert metric in result.stdout
    assert "LangGraph" in result.stdout and "DBOS" in result.stdout
