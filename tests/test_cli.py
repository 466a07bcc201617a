"""The command line as a user meets it: option placement, messages and exit codes."""

from __future__ import annotations

import json

from corral.testing import CorralProject

AGENT = "def run(ctx):\n    return {'echo': ctx.input, 'run': ctx.run_id}\n"


def test_config_is_accepted_before_and_after_the_command(corral_project: CorralProject) -> None:
    corral_project.agent("echo", AGENT)
    path = str(corral_project.config_path)
    before = corral_project.cli("--config", path, "check")
    after = corral_project.cli("check", "--config", path)
    assert before.returncode == after.returncode == 0, before.stderr + after.stderr


def test_foreground_run_with_input_json_and_exit_codes(corral_project: CorralProject) -> None:
    corral_project.agent("echo", AGENT)
    done = corral_project.cli("run", "echo", "--wait", "--json", "--input", '{"k": [1, 2]}')
    assert done.returncode == 0, done.stderr
    run = json.loads(done.stdout)
    assert run["state"] == "succeeded" and run["result"]["echo"] == {"k": [1, 2]}
    assert run["result"]["run"] == run["id"]

    bad_json = corral_project.cli("run", "echo", "--input", "{nope")
    assert bad_json.returncode == 2 and "--input is not valid JSON" in bad_json.stderr
    unknown = corral_project.cli("run", "nobody")
    assert unknown.returncode == 5 and "no agent named 'nobody'" in unknown.stderr and "echo" in unknown.stderr
    missing_run = corral_project.cli("trace", "ffffffff")
    assert missing_run.returncode == 5 and "corral runs" in missing_run.stderr


def test_read_only_commands_work_without_a_daemon_and_say_when_there_is_no_store(
    corral_project: CorralProject,
) -> None:
    corral_project.agent("echo", AGENT)
    no_store = corral_project.cli("status")
    assert no_store.returncode == 4 and "corral up" in no_store.stderr
    corral_project.cli("run", "echo", "--wait", check=True)
    status = corral_project.cli_json("status")
    assert status["daemon"]["running"] is False and status["agents"]["echo"]["last_run"]["state"] == "succeeded"
    assert status["store"]["file_bytes"] > 0
    [run] = corral_project.cli_json("runs", "echo")
    trace = corral_project.cli("trace", run["id"][-8:])
    assert trace.returncode == 0 and "result" in trace.stdout, "a run is found by the end of its id"
    logs = corral_project.cli("logs", "echo", "--json")
    events = [json.loads(line) for line in logs.stdout.splitlines()]
    assert {"run started", "run ended"} <= {e["event"] for e in events}
    assert all({"timestamp", "level", "agent", "run_id", "trace_id"} <= set(e) for e in events if "run_id" in e)


def test_a_failed_run_exits_1_with_its_error(corral_project: CorralProject) -> None:
    corral_project.agent("broken", "def run(ctx):\n    raise RuntimeError('no luck today')\n")
    failed = corral_project.cli("run", "broken", "--wait")
    assert failed.returncode == 1 and "no luck today" in failed.stderr


def test_agent_log_events_carry_run_trace_and_the_current_step(corral_project: CorralProject) -> None:
    corral_project.agent(
        "chatty",
        "def run(ctx):\n    ctx.log.info('before')\n    ctx.state['x'] = 1\n"
        "    ctx.log.warning('after', detail='d', seq='mine', odd={1: 2})\n    print('plain output')\n    return 1\n",
    )
    corral_project.cli("run", "chatty", "--wait", check=True)
    events = [json.loads(line) for line in corral_project.cli("logs", "chatty", "--json").stdout.splitlines()]
    by_name = {e["event"]: e for e in events}
    assert "seq" not in by_name["before"] and by_name["after"]["seq"] == 1
    assert by_name["after"]["agent_seq"] == "mine", "an agent's field never overwrites corral's"
    assert by_name["after"]["level"] == "warning" and by_name["after"]["detail"] == "d"
    assert by_name["after"]["odd"] == "{1: 2}", "a field the wire cannot carry is logged as its repr"
    assert by_name["stdout"]["line"] == "plain output"
    assert all(e["run_id"] == by_name["before"]["run_id"] and e.get("trace_id") for e in events if e.get("run_id"))


REFUSALS = """
import corral

def run(ctx):
    seen = {}
    for label, name, args in [
        ("unknown", "launch_rockets", {}),
        ("wrong_type", "append_line", {"path": 3, "line": "x"}),
        ("missing_and_extra", "append_line", {"path": "a.txt", "lines": "x"}),
    ]:
        try:
            ctx.tool(name, **args)
        except corral.ToolCallError as exc:
            seen[label] = [exc.kind, str(exc)]
    return seen
"""


def test_bad_tool_calls_are_refused_before_running_with_errors_the_agent_can_read(
    corral_project: CorralProject,
) -> None:
    corral_project.agent("careless", REFUSALS, tools=["append_line"])
    done = corral_project.cli("run", "careless", "--wait", "--json")
    assert done.returncode == 0, done.stderr
    run = json.loads(done.stdout)
    seen = run["result"]
    assert seen["unknown"][0] == "refused" and "'launch_rockets' is not granted" in seen["unknown"][1]
    assert "granted tools: append_line" in seen["unknown"][1]
    assert seen["wrong_type"][0] == "refused" and "path: 3 is not of type" in seen["wrong_type"][1]
    assert '"line" is a required property' in seen["missing_and_extra"][1]
    assert "'lines' was unexpected" in seen["missing_and_extra"][1]
    steps = corral_project.cli_json("trace", run["id"])["steps"]
    assert [s["refused"] for s in steps] == [True, True, True] and all(s["executions"] == 0 for s in steps)
    assert not (corral_project.home / "agents" / "careless" / "a.txt").exists(), "nothing ran"


def test_run_wait_shows_an_agents_error_and_result_with_controls_escaped(corral_project: CorralProject) -> None:
    """An agent chooses its error's text: terminal escapes and bidi overrides are printed as
    escapes, never obeyed, and a line break goes on indented under the error's first line,
    so it cannot forge a line of corral's own."""
    corral_project.agent("loud", 'def run(ctx):\n    raise RuntimeError("boom \\x1b[2J\\u202e\\r\\nfake: line")\n')
    failed = corral_project.cli("run", "loud", "--wait")
    assert "\x1b" not in failed.stderr and "\u202e" not in failed.stderr and "\r" not in failed.stderr
    assert "RuntimeError: boom \\x1b[2J\\u202e\n    fake: line\n" in failed.stderr, failed.stderr
    corral_project.agent("quiet", 'def run(ctx):\n    return "ok \\u202e"\n')
    ok = corral_project.cli("run", "quiet", "--wait")
    assert "\u202e" not in ok.stdout and "\\u202e" in ok.stdout, ok.stdout


def test_a_duration_across_a_clock_set_back_is_not_shown_negative() -> None:
    from corral.cli.views import took

    assert took(1000.0, 1001.5) == "1.5s"
    assert took(1000.0, 1000.0 - 86400) == "? (clock set back)"


def test_retry_of_a_run_that_cannot_be_retried_says_how_it_failed(corral_project: CorralProject) -> None:
    corral_project.agent("broken", "def run(ctx):\n    return 1 / 0\n")
    run = json.loads(corral_project.cli("run", "broken", "--json").stdout)
    refused = corral_project.cli("retry", run["id"])
    assert refused.returncode == 5 and "Traceback" not in refused.stderr
    assert f"run {run['id']} failed (agent: division by zero); only runs that failed for a passing reason" in (
        refused.stderr
    )
    assert (
        "is its own: fix the cause" in refused.stderr and "start a new run with `corral run broken`" in refused.stderr
    )


def test_a_failed_run_shows_the_exception_type_and_the_agents_own_frames(corral_project: CorralProject) -> None:
    corral_project.agent("broken", "def helper():\n    return 1 / 0\n\n\ndef run(ctx):\n    return helper()\n")
    failed = corral_project.cli("run", "broken", "--wait")
    assert failed.returncode == 1
    assert "error (agent): ZeroDivisionError: division by zero" in failed.stderr
    where = str(corral_project.root / "agents" / "broken.py")
    assert f'File "{where}", line 6, in run' in failed.stderr and f'File "{where}", line 2, in helper' in failed.stderr
    assert "runtime.py" not in failed.stderr, "corral's own frames are left out"
    run_id = json.loads(corral_project.cli("runs", "broken", "--json").stdout)[0]["id"]
    assert "ZeroDivisionError: division by zero" in corral_project.cli("trace", run_id).stdout


def test_follow_in_the_foreground_prints_the_runs_lines_then_its_result(corral_project: CorralProject) -> None:
    corral_project.agent("chatty", "def run(ctx):\n    ctx.log.info('hello there')\n    return 7\n")
    followed = corral_project.cli("run", "chatty", "--follow")
    assert followed.returncode == 0, followed.stderr
    lines = followed.stdout.splitlines()
    assert "run started" in lines[0] and "hello there" in lines[1] and "run ended" in lines[2], lines
    assert lines[-2].endswith("succeeded") and lines[-1] == "7"
    both = corral_project.cli("run", "chatty", "--follow", "--wait")
    assert both.returncode == 2 and "not allowed with" in both.stderr


def test_an_agents_log_fields_named_like_corrals_own_are_kept_under_agent_names(corral_project: CorralProject) -> None:
    """``self`` and ``event`` are the logger's own parameters: a field named ``self`` made the
    run's attempt raise (an internal error of a foreground run; in a daemon, "run crashed in
    the daemon"), and one named ``event`` failed the agent's own ``ctx.log`` call."""
    corral_project.agent(
        "naming",
        "def run(ctx):\n    ctx.log.info('named', self=1, event='mine', run_id='forged', level='loud')\n    return 1\n",
    )
    ran = corral_project.cli("run", "naming", "--wait", "--json")
    assert ran.returncode == 0, ran.stderr
    lines = [json.loads(line) for line in (corral_project.home / "logs" / "naming.log").read_text().splitlines()]
    named = next(line for line in lines if line["event"] == "named")
    assert named["agent_self"] == 1 and named["agent_event"] == "mine" and named["agent_run_id"] == "forged"
    assert named["run_id"] == json.loads(ran.stdout)["id"] and named["level"] == "info"
