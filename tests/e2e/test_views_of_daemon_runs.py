"""What the read-only views say of runs a daemon made: `corral runs --trigger` tells a
timed run from one started by hand, and `corral trace --tree` says a run waited for its
approval (tests/test_filters.py and tests/test_trace.py cover the rest without a daemon)."""

from __future__ import annotations

import time

from corral.testing import CorralProject
from tests.projects import run_until_held

OK = "def run(ctx):\n    ctx.log.info('fine')\n    return 1\n"


def _ids(project: CorralProject, *args: str) -> list[str]:
    return [run["id"] for run in project.cli_json("runs", *args)]


def test_runs_by_trigger_from_a_daemon(corral_project: CorralProject) -> None:
    corral_project.agent("ticker", OK, every="1s")
    corral_project.start_daemon()
    deadline = time.monotonic() + 20
    while time.monotonic() < deadline and not _ids(corral_project, "--trigger", "interval", "--state", "succeeded"):
        time.sleep(0.2)
    corral_project.cli("run", "ticker", "--wait", check=True)
    by_hand = _ids(corral_project, "--trigger", "cli")
    timed = _ids(corral_project, "--trigger", "interval")
    assert len(by_hand) == 1 and timed and not set(by_hand) & set(timed)


def test_the_tree_says_a_run_waited_for_its_approval(deployer: CorralProject) -> None:
    deployer.start_daemon()
    approval, run = run_until_held(deployer, "prod")
    assert deployer.cli("approve", approval).returncode == 0
    deployer.wait_for_run(run["id"], states=("succeeded",))
    tree = deployer.cli("trace", run["id"], "--tree", check=True).stdout
    [second] = [line for line in tree.splitlines() if "attempt 2" in line]
    assert f"waited for approval {approval}, approved" in second and "backoff" not in tree, tree
