"""Start the probe child and read its report."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path
from typing import Any

PROBE = Path(__file__).with_name("probe.py")


def run_probe(spec: dict[str, Any], *, expect_ok: bool = True) -> dict[str, Any]:
    """Run ``probe.py`` with ``spec``; return its JSON report, or, if ``expect_ok`` is False, its stderr."""
    result = subprocess.run(
        [sys.executable, str(PROBE), json.dumps(spec)], capture_output=True, text=True, timeout=30, check=False
    )
    if not expect_ok:
        assert result.returncode != 0, result.stdout
        return {"stderr": result.stderr}
    assert result.returncode == 0, result.stderr
    report: dict[str, Any] = json.loads(result.stdout)
    return report
