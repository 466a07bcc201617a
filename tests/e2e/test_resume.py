"""What a resumed run decides: holds, reconcile, non-determinism, changed code, old runs."""

from __future__ import annotations

import os
import signal
import time
from pathlib import Path

import pytest

from corral.testing import CorralProject

CHARGE = '''
import os, time
import corral

def _charged(idempotency_key, **args):
    done = open("charges.txt").read().split() if os.path.exists("charges.txt") else []
    return corral.Reconciled.happened("charged") if idempotency_key in done else corral.Reconciled.not_happened()

@corral.tool
def charge(amount: int, idempotency_key: str) -> str:
    """Not idempotent: every execution is a charge."""
    open("started.txt", "a").write(idempotency_key + "\\n")
    time.sleep(float(os.environ.get("CHARGE_SECONDS", "0")))
    open("charges.txt", "a").write(idempotency_key + "\\n")
    return "charged"

@corral.tool(reconcile=_charged)
def careful_charge(amount: int, idempotency_key: str) -> str:
    """Not idempotent, but can tell afterwards whether it happened."""
    return charge(amount, idempotency_key)

@corral.hookimpl
def corral_register_tools(register):
    register(charge)
    register(careful_charge)
'''

AGENT = """
def run(ctx):
    return ctx.tool(ctx.input["tool"], amount=5)
"""


def _wait_file(path: Path, timeout: float = 20.0) -> None:
    deadline = time.monotonic() + timeout
    while not path.exists():
        if time.monotonic() > deadline:
            raise AssertionError(f"{path} never appeared")
        time.sleep(0.02)


def _project(project: CorralProject, **table: object) -> Path:
    plugin = project.root / "charges.py"
    plugin.write_text(CHARGE)
    project.corral["plugins"] = [str(plugin)]
    project.agent("payer", AGENT, tools=["charge", "careful_charge"], env={"CHARGE_SECONDS": "30"}, **table)
    return project.home / "agents" / "payer"


def _interrupt_mid_tool(project: CorralProject, tool: str) -> tuple[str, Path]:
    workdir = _project(project)
    daemon = project.start_daemon()
    run_id = project.cli_json("run", "payer", "--input", f'{{"tool": "{tool}"}}')["id"]
    _wait_file(workdir / "started.txt")
    os.kill(daemon.pid, signal.SIGKILL)
    daemon.process.wait(10)
    return run_id, workdir


@pytest.mark.slow
def test_interrupted_non_idempotent_call_holds_until_a_human_releases_it(corral_project: CorralProject) -> None:
    run_id, workdir = _interrupt_mid_tool(corral_project, "charge")
    corral_project.agents["payer"]["env"] = {"CHARGE_SECONDS": "0"}
    corral_project.start_daemon()
    run = corral_project.wait_for_run(run_id)
    assert run["state"] == "on_hold"
    assert "outcome is unknown" in run["hold_reason"] and f"corral release {run_id}" in run["hold_reason"]
    [step] = corral_project.cli_json("trace", run_id)["steps"]
    assert step["status"] == "unknown"
    assert not (workdir / "charges.txt").exists(), "never replayed blindly"

    released = corral_project.cli("release", run_id, "--happened", "--value", '"charged by hand"')
    assert released.returncode == 0, released.stderr
    run = corral_project.wait_for_run(run_id, states=("succeeded", "failed"))
    assert run["state"] == "succeeded" and run["result"] == "charged by hand"
    assert not (workdir / "charges.txt").exists(), "a released step is not executed again"
    assert corral_project.cli("release", run_id, "--happened").returncode == 5


@pytest.mark.slow
def test_release_not_happened_runs_the_step_again_with_the_same_key(corral_project: CorralProject) -> None:
    run_id, workdir = _interrupt_mid_tool(corral_project, "charge")
    corral_project.agents["payer"]["env"] = {"CHARGE_SECONDS": "0"}
    daemon = corral_project.start_daemon()
    assert corral_project.wait_for_run(run_id)["state"] == "on_hold"
    assert daemon.stop() == 0
    # daemon down: release drives the run in the foreground
    released = corral_project.cli("release", run_id, "--not-happened")
    assert released.returncode == 0, released.stderr
    assert corral_project.run_record(run_id)["state"] == "succeeded"
    keys = (workdir / "charges.txt").read_text().split()
    assert keys == (workdir / "started.txt").read_text().split()[:1], "re-run with the same idempotency key"


@pytest.mark.slow
def test_reconcile_decides_an_interrupted_call(corral_project: CorralProject) -> None:
    run_id, workdir = _interrupt_mid_tool(corral_project, "careful_charge")
    corral_project.agents["payer"]["env"] = {"CHARGE_SECONDS": "0"}
    corral_project.write()
    result = corral_project.cli("run", "payer", "--wait", "--input", '{"tool": "careful_charge"}')
    assert result.returncode == 0
    # the interrupted run is resumed by the next daemon start
    corral_project.start_daemon()
    run = corral_project.wait_for_run(run_id)
    assert run["state"] == "succeeded", run
    [step] = corral_project.cli_json("trace", run_id)["steps"]
    assert step["reconciled"] is True and step["status"] == "done"


NONDETERMINISTIC = """
import os
def run(ctx):
    name = open("which.txt").read().strip() if os.path.exists("which.txt") else "first"
    ctx.tool("append_line", path=f"{name}.txt", line=name)
    os.kill(os.getpid(), 9) if not os.path.exists("crashed") and not open("crashed", "w").close() else None
    return name
"""


@pytest.mark.slow
def test_resume_that_asks_something_else_is_a_non_determinism_error(corral_project: CorralProject) -> None:
    corral_project.agent("flaky", NONDETERMINISTIC, tools=["append_line"])
    workdir = corral_project.home / "agents" / "flaky"
    workdir.mkdir(parents=True)
    corral_project.start_daemon()
    run_id = corral_project.cli_json("run", "flaky")["id"]
    _wait_file(workdir / "crashed")
    (workdir / "which.txt").write_text("second")
    run = corral_project.wait_for_run(run_id)
    assert run["state"] == "failed"
    message = run["error"]["message"]
    assert "non-determinism at step 1" in message and "different arguments" in message


NAP = '''
import os, time
import corral

@corral.tool(idempotent=True)
def nap(seconds: float) -> float:
    """Sleep until the time is up or a file named "wake" appears; safe to repeat."""
    open("napping", "w").close()
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline and not os.path.exists("wake"):
        time.sleep(0.05)
    return seconds

@corral.hookimpl
def corral_register_tools(register):
    register(nap)
'''

CHANGING = """
def run(ctx):
    ctx.tool("append_line", path="log.txt", line="step one")
    ctx.tool("nap", seconds=float(ctx.input))
    return VERSION
VERSION = "v1"
"""


@pytest.mark.slow
@pytest.mark.parametrize("policy", ["fail", "continue"])
def test_resume_under_changed_code_is_an_explicit_decision(corral_project: CorralProject, policy: str) -> None:
    plugin = corral_project.root / "nap.py"
    plugin.write_text(NAP)
    corral_project.corral["plugins"] = [str(plugin)]
    corral_project.agent("changing", CHANGING, tools=["append_line", "nap"], on_code_change=policy, input=30)
    workdir = corral_project.home / "agents" / "changing"
    daemon = corral_project.start_daemon()
    run_id = corral_project.cli_json("run", "changing")["id"]
    _wait_file(workdir / "napping")
    os.kill(daemon.pid, signal.SIGKILL)
    daemon.process.wait(10)
    (corral_project.agents_dir / "changing.py").write_text(CHANGING.replace('"v1"', '"v2"'))
    (workdir / "wake").touch()
    corral_project.start_daemon()
    run = corral_project.wait_for_run(run_id)
    if policy == "fail":
        assert run["state"] == "failed"
        assert "agent code changed since this run started" in run["error"]["message"]
        assert 'on_code_change = "continue"' in run["error"]["message"]
    else:
        assert run["state"] == "succeeded" and run["result"] == "v2"
        assert "->" in run["code_changed"]
        assert "resumed under changed code" in corral_project.cli("trace", run_id).stdout
    assert (workdir / "log.txt").read_text().count("step one") == 1


def test_unfinished_runs_older_than_max_resume_age_are_abandoned(corral_project: CorralProject) -> None:
    plugin = corral_project.root / "nap.py"
    plugin.write_text(NAP)
    corral_project.corral["plugins"] = [str(plugin)]
    corral_project.corral["max_resume_age"] = "2s"
    corral_project.agent("sleepy", "def run(ctx):\n    return ctx.tool('nap', seconds=30)\n", tools=["nap"])
    workdir = corral_project.home / "agents" / "sleepy"
    daemon = corral_project.start_daemon()
    run_id = corral_project.cli_json("run", "sleepy")["id"]
    _wait_file(workdir / "napping")
    os.kill(daemon.pid, signal.SIGKILL)
    daemon.process.wait(10)
    time.sleep(2.5)
    corral_project.start_daemon()
    run = corral_project.wait_for_run(run_id)
    assert run["state"] == "abandoned"
    assert "max_resume_age" in run["error"]["message"]
    log = (corral_project.home / "logs" / "corral.log").read_text()
    assert "run abandoned" in log
