"""benchmarks/scheduling.py runs and prints its table; no timing is asserted."""

from __future__ import annotations

import pytest

from benchmarks import scheduling


def test_the_scheduling_benchmark_runs(capsys: pytest.CaptureFixture[str]) -> None:
    assert scheduling.main(["--agents", "3", "--seconds", "2.5"]) == 0
    out = capsys.readouterr().out
    assert "3 agents on 1 s intervals" in out
    for row in ("fire -> queued", "fire -> child start", "fire -> agent code"):
        assert row in out
