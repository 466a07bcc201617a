"""kill -9 of the daemon or of a child in the middle of a run: nothing lost or repeated."""

from __future__ import annotations

import os
import signal
import time

import pytest

from corral.testing import CorralProject

from . import recorder


@pytest.mark.slow
def test_kill_9_daemon_mid_run_resumes_without_repeating(corral_project: CorralProject) -> None:
    recorder.install(corral_project, "twenty")
    workdir = corral_project.home / "agents" / "twenty"
    daemon = corral_project.start_daemon()
    run_id = corral_project.cli_json("run", "twenty")["id"]
    recorder.wait_lines(workdir / "executions.txt", 8)
    os.kill(daemon.pid, signal.SIGKILL)
    daemon.process.wait(10)

    deadline = time.monotonic() + 5
    while recorder.launchers_under(workdir) and time.monotonic() < deadline:
        time.sleep(0.05)
    assert not recorder.launchers_under(workdir), "the agent outlived its daemon"
    interrupted_at = len((workdir / "executions.txt").read_text().splitlines())

    corral_project.start_daemon()
    run = corral_project.wait_for_run(run_id)
    assert run["state"] == "succeeded", run
    assert run["result"] == sum(range(20))
    assert run["attempt"] == 2

    for (n, _key), _count in recorder.assert_effects_once(workdir).items():
        assert int(n) == interrupted_at - 1, "the re-run is the interrupted call, with the same key"
    steps = recorder.assert_journal_done(corral_project, run_id)
    replayed = [s for s in steps if s["attempt"] == 1]
    assert len(replayed) >= interrupted_at - 1


@pytest.mark.slow
def test_kill_9_child_resumes_and_daemon_survives(corral_project: CorralProject) -> None:
    recorder.install(corral_project, "twenty")
    workdir = corral_project.home / "agents" / "twenty"
    daemon = corral_project.start_daemon()
    run_id = corral_project.cli_json("run", "twenty")["id"]
    recorder.wait_lines(workdir / "executions.txt", 5)
    [child] = recorder.launchers_under(workdir)
    child.kill()
    run = corral_project.wait_for_run(run_id)
    assert run["state"] == "succeeded" and run["attempt"] == 2
    assert daemon.process.poll() is None
    recorder.assert_effects_once(workdir)
    recorder.assert_journal_done(corral_project, run_id)


@pytest.mark.slow
def test_kill_9_child_fails_when_configured(corral_project: CorralProject) -> None:
    recorder.install(corral_project, "twenty", on_crash="fail")
    workdir = corral_project.home / "agents" / "twenty"
    daemon = corral_project.start_daemon()
    run_id = corral_project.cli_json("run", "twenty")["id"]
    recorder.wait_lines(workdir / "executions.txt", 3)
    [child] = recorder.launchers_under(workdir)
    child.kill()
    run = corral_project.wait_for_run(run_id)
    assert run["state"] == "failed"
    assert "killed by SIGKILL" in run["error"]["message"]
    assert daemon.process.poll() is None
    assert corral_project.cli("run", "twenty", "--wait").returncode == 0, "the daemon still runs agents"
