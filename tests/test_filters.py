"""The filters of `corral runs` and `corral logs`, as an operator combines them: by agent,
state, trigger and time (a duration back from now or a date and time), with -n counting
what passes them."""

from __future__ import annotations

import datetime as dt
import json
import math
import time

import pytest

from corral.cli.common import EXIT_OK, EXIT_USAGE
from corral.testing import CorralProject

OK = "def run(ctx):\n    ctx.log.info('fine')\n    return 1\n"
BOOM = "def run(ctx):\n    ctx.log.warning('about to fail')\n    return 1 / 0\n"


def _ids(project: CorralProject, *args: str) -> list[str]:
    return [run["id"] for run in project.cli_json("runs", *args)]


def _a_second_boundary() -> str:
    """A local time (no zone, whole seconds) between what ran before and what runs after."""
    boundary = math.ceil(time.time()) + 1
    time.sleep(boundary - time.time() + 0.2)
    return dt.datetime.fromtimestamp(boundary).isoformat()


@pytest.mark.slow
def test_runs_are_filtered_by_agent_state_trigger_and_time(corral_project: CorralProject) -> None:
    corral_project.agent("ok", OK)
    corral_project.agent("boom", BOOM)
    first = corral_project.cli_json("run", "ok", "--wait")["id"]
    failed = json.loads(corral_project.cli("run", "boom", "--wait", "--json").stdout)["id"]
    boundary = _a_second_boundary()
    later = corral_project.cli_json("run", "ok", "--wait")["id"]

    assert _ids(corral_project) == [later, failed, first]
    assert _ids(corral_project, "--state", "failed") == [failed]
    assert _ids(corral_project, "--state", "failed,succeeded", "-n", "2") == [later, failed]
    assert _ids(corral_project, "--agent", "ok") == _ids(corral_project, "ok") == [later, first]
    assert _ids(corral_project, "--since", boundary) == [later]
    assert _ids(corral_project, "--until", boundary) == [failed, first]
    assert _ids(corral_project, "--since", "1h", "--agent", "ok", "--state", "succeeded", "-n", "1") == [later]
    assert _ids(corral_project, "--trigger", "cli") == [later, failed, first]
    assert _ids(corral_project, "--trigger", "cron") == []

    none = corral_project.cli("runs", "--state", "cancelled", "--since", "2h")
    assert none.returncode == EXIT_OK and none.stdout.strip() == "no runs in state cancelled in the last 2h"
    table = corral_project.cli("runs", "--state", "failed", check=True).stdout
    assert "ZeroDivisionError" in table or "division by zero" in table
    both = corral_project.cli("runs", "ok", "--agent", "boom")
    assert both.returncode == EXIT_USAGE and "give one" in both.stderr


@pytest.mark.slow
def test_logs_are_filtered_by_level_run_and_time_and_n_counts_what_passes(corral_project: CorralProject) -> None:
    corral_project.agent("boom", BOOM)
    runs = [json.loads(corral_project.cli("run", "boom", "--wait", "--json").stdout)["id"] for _ in range(2)]
    boundary = _a_second_boundary()
    runs.append(json.loads(corral_project.cli("run", "boom", "--wait", "--json").stdout)["id"])

    def events(*args: str) -> list[dict]:
        result = corral_project.cli("logs", "boom", "--json", *args, check=True)
        return [json.loads(line) for line in result.stdout.splitlines()]

    warnings = events("--level", "warning")
    assert warnings and all(e["level"] in ("warning", "error", "critical") for e in warnings)
    assert {e["run_id"] for e in warnings} == set(runs)
    [last] = events("--level", "error", "--event", "run ended", "-n", "1")
    assert last["run_id"] == runs[-1], "-n counts the events that pass the filters"
    assert {e["run_id"] for e in events("--since", boundary)} == {runs[-1]}
    assert {e["run_id"] for e in events("--until", boundary)} == set(runs[:2])
    assert {e["run_id"] for e in events("--run", runs[0][-8:], "--since", "1h")} == {runs[0]}
    assert events("--since", boundary, "--until", boundary) == []

    follow = corral_project.cli("logs", "boom", "-f", "--until", "1h")
    assert follow.returncode == EXIT_USAGE and "-f" in follow.stderr
