"""`corral stop/start AGENT` with no daemon: they act on the store, and the daemon that
starts next reads them (tests/e2e/test_lifecycle.py drives a daemon)."""

from __future__ import annotations

from corral.cli.common import EXIT_NOT_FOUND, EXIT_OK, EXIT_UNAVAILABLE, EXIT_USAGE
from corral.testing import CorralProject

AGENT = "def run(ctx):\n    return ctx.input\n"


def test_stop_and_start_an_agent_with_no_daemon(corral_project: CorralProject) -> None:
    corral_project.agent("echo", AGENT, input={"n": 1})
    corral_project.cli("run", "echo", "--wait", check=True)

    stopped = corral_project.cli("stop", "echo")
    assert stopped.returncode == EXIT_OK and "echo stopped" in stopped.stdout, stopped.stderr
    agent = corral_project.cli_json("status")["agents"]["echo"]
    assert agent["state"] == "stopped" and agent["pause"]["stopped"] is True
    assert "echo stopped since" in corral_project.cli("status", check=True).stdout

    restarted = corral_project.cli("restart", "echo", "--json")
    assert restarted.returncode == EXIT_OK, restarted.stderr
    assert '"trigger": "restart"' in restarted.stdout and '"n": 1' in restarted.stdout
    assert corral_project.cli_json("status")["agents"]["echo"]["state"] == "idle", "a restart starts the agent"

    assert corral_project.cli("stop", "echo").returncode == EXIT_OK
    started = corral_project.cli("start", "echo")
    assert started.returncode == EXIT_OK and "it was stopped" in started.stdout
    again = corral_project.cli("start", "echo")
    assert again.returncode == EXIT_OK and "was not stopped" in again.stdout


def test_stop_names_what_is_wrong(corral_project: CorralProject) -> None:
    corral_project.agent("echo", AGENT)
    for args, code, phrase in [
        (("stop",), EXIT_UNAVAILABLE, "no daemon is running"),
        (("stop", "nobody"), EXIT_NOT_FOUND, "no agent named 'nobody'"),
        (("stop", "--reason", "x"), EXIT_USAGE, "--reason goes with an agent"),
        (("start", ""), EXIT_USAGE, "an agent name cannot be empty"),
        (("restart",), EXIT_USAGE, "required"),
    ]:
        result = corral_project.cli(*args)
        assert result.returncode == code and phrase in result.stderr, (args, result.stderr)
        assert len(result.stderr.strip().splitlines()) == 1 and "Traceback" not in result.stderr
