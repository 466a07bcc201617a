"""The benchmark command runs end to end in its quick mode and prints its table.

No timing is asserted: timings belong in docs/benchmarks.md, never in unit tests.
"""

from __future__ import annotations

import subprocess
import sys
import tempfile
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parent.parent


def _quick(module: str, tmp_path: Path) -> str:
    """``python -m benchmarks.MODULE --quick``'s output; it must exit 0."""
    result = subprocess.run(
        [sys.executable, "-m", f"benchmarks.{module}", "--quick", "--tmpdir", str(tmp_path)],
        cwd=REPO,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert result.returncode == 0, result.stderr[-4000:]
    return result.stdout


@pytest.mark.slow
def test_quick_benchmark_completes_and_prints_the_table(tmp_path: Path) -> None:
    out = _quick("run", tmp_path)
    header = out.splitlines()[0].split()
    assert header == ["metric", "value", "baseline", "ratio", "target", "result"]
    for metric in ("step p50, 1 agent", "steps/s, 8 agents", "spawn to first request", "idle agent RSS"):
        assert metric in out
    assert "LangGraph" in out and "DBOS" in out


@pytest.mark.slow
def test_quick_console_benchmark_completes_and_prints_the_table(tmp_path: Path) -> None:
    out = _quick("console_bench", tmp_path)
    for metric in (
        "step p50, console open",
        "8-agent steps/s, console open",
        "runs page p50, newest",
        "run page refetch",
    ):
        assert metric in out
    assert "the viewer fetched" in out


@pytest.mark.slow
def test_the_model_door_benchmark_completes_and_prints_both_sides(tmp_path: Path) -> None:
    out = _quick("door", tmp_path)
    for row in ("call", "streamed, first token", "ctx.model (no HTTP)", "target: at most 2 ms added"):
        assert row in out


@pytest.mark.slow
def test_the_journal_growth_benchmark_completes_and_prints_the_sizes(tmp_path: Path) -> None:
    out = _quick("journal_growth", tmp_path)
    assert "10 turns of 2000 bytes" in out and "journal:" in out and "limits.journal_mb" in out


@pytest.mark.slow
def test_the_journal_readers_benchmark_completes_and_prints_each_reader() -> None:
    """It runs ``corral up`` in its temp dir: pytest's ``tmp_path`` is too long a folder for
    the control socket's path (a Unix socket's is limited to about 100 bytes)."""
    with tempfile.TemporaryDirectory(prefix="jr-", dir="/tmp") as short:
        out = _quick("journal_readers", Path(short))
    for row in ("trace --json", "trace --step 10 --json", "diff RUN RUN", "console /runs/RUN", "bytes stored"):
        assert row in out
