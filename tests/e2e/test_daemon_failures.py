"""A run the daemon itself fails on (a bug of corral's or of a plugin it trusted) ends
``failed`` with kind ``internal`` and a message naming corral.log: never a record left
``running`` with no process behind it and resumed into the same failure at every restart.

The cause here, patched into nothing: a guardrail plugin whose ``before`` answers a string
where a ``Decision`` belongs, which the daemon fails on in the store writer's thread as it
reads the step. The deep log value that found this (``ctx.log`` with a list 900 deep, which
the daemon failed on in its event loop) is cut before it can now: tests/e2e/test_deep_values.py.
"""

from __future__ import annotations

from concurrent.futures import ThreadPoolExecutor
from typing import Any

from corral.testing import CorralProject

from .support import assert_no_processes, log_events, run_waited

PLUGIN = """
import corral


class Sloppy:
    name = "sloppy"

    def start(self, run, agent):
        return self

    def before(self, action):
        if action.name == "word_count":
            return "deny"  # a Decision belongs here
        return None

    def after(self, step):
        return None


@corral.hookimpl
def corral_register_guardrails(register):
    register(Sloppy())
"""

AGENT = """
def run(ctx):
    ctx.state["before"] = 1
    return ctx.tool("word_count", text="one two")
"""


def test_a_run_the_daemon_fails_on_ends_failed_frees_its_slot_and_is_not_resumed(
    corral_project: CorralProject,
) -> None:
    plugin = corral_project.root / "sloppy.py"
    plugin.write_text(PLUGIN)
    corral_project.corral.update(plugins=[str(plugin)], max_concurrent_runs=1)
    corral_project.agent("victim", AGENT, tools=["word_count"], max_attempts=3)
    corral_project.agent("bystander", "def run(ctx):\n    return 'fine'\n")
    daemon = corral_project.start_daemon()
    names = ["victim", "victim", "bystander"]  # three failures in a row would pause the agent
    ended = [corral_project.run_record(r["id"]) for r in _runs(corral_project, names)]
    victims = [run for run in ended if run["agent"] == "victim"]
    assert len(victims) == 2
    for run in victims:
        assert run["state"] == "failed", run
        assert run["error"]["kind"] == "internal", run["error"]
        assert "corral.log" in run["error"]["message"] and "AttributeError" in run["error"]["message"], run
        assert run["attempt"] == 1, run
        assert_no_processes(run, corral_project.home / "agents" / "victim")
    assert [r["state"] for r in ended if r["agent"] == "bystander"] == ["succeeded"]
    running = [r for r in corral_project.cli_json("runs") if r["state"] == "running"]
    assert not running, running

    daemon.stop()
    corral_project.start_daemon()
    after = [corral_project.run_record(run["id"]) for run in victims]
    assert [(r["state"], r["attempt"]) for r in after] == [("failed", 1)] * 2, after
    started = [e for e in log_events(corral_project, "victim") if e["event"] == "run started"]
    assert len(started) == 2, "a run the daemon failed on was started again after the restart"
    crashed = [e for e in log_events(corral_project, None) if e["event"] == "run crashed in the daemon"]
    assert len(crashed) == 2 and {e["run_id"] for e in crashed} == {r["id"] for r in victims}


def _runs(project: CorralProject, names: list[str]) -> list[dict[str, Any]]:
    """Start every run at once, more than ``max_concurrent_runs``: the later ones wait for
    the slots of the failed ones; each as ``corral run --wait`` reports it."""
    with ThreadPoolExecutor(max_workers=len(names)) as pool:
        return list(pool.map(lambda name: run_waited(project, name), names))
