"""The alert rules and checks on their own, with a recording service and a controllable clock;
the config of ``[alerts]``; a sink type from a third-party plugin, checked by ``corral check``."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from corral.alerts import Alert, Secret
from corral.alerts.monitor import judge
from corral.alerts.rules import NoticeRules, RunRules, StuckRule
from corral.config import parse_config
from corral.config.alerts import Expectation, read_alerts
from corral.config.metrics import read_metrics
from corral.config.problems import Problems
from corral.errors import ConfigError
from corral.observe.events import Event
from corral.states import EventKind, RunState
from corral.testing import CorralProject

from .receivers import HTTPReceiver


class Recorder:
    """The alerting service as the rules see it, keeping what they asked for."""

    def __init__(self) -> None:
        self.alerts: list[Alert] = []
        self.pauses: list[tuple[str, str, float | None]] = []

    def raise_alert(self, alert: Alert) -> None:
        self.alerts.append(alert)

    def pause(self, agent: str, reason: str, until: float | None) -> None:
        self.pauses.append((agent, reason, until))

    def failures_before(self, agent: str, run_id: str) -> int:
        return 0  # a fresh store; tests/alerts/test_daemon_alerts.py counts across processes

    def crash_loop_at(self, run_id: str) -> None:
        pass

    def raised(self) -> list[tuple[str, bool]]:
        return [(a.key, a.resolved) for a in self.alerts]


def _changed(run: dict[str, Any]) -> Event:
    """The event of ``run`` entering its state."""
    return Event(EventKind.RUN_CHANGED, run, old=RunState.QUEUED if run["state"] == "running" else RunState.RUNNING)


def _run(state: str, n: int = 1, agent: str = "a", **error: Any) -> dict[str, Any]:
    run: dict[str, Any] = {"id": f"run{n}", "agent": agent, "state": state, "attempt": 1}
    if error:
        run["error"] = error
    return run


def test_a_crash_loop_alerts_and_pauses_once_and_a_success_clears_it() -> None:
    service = Recorder()
    rules = RunRules(service, crash_loop=3, crash_loop_pause=None)
    for n in range(1, 6):
        rules(_changed(_run("failed", n, kind="agent", message="boom")))
    assert [key for key, _ in service.raised() if key.startswith("crash-loop")] == ["crash-loop:a"]
    assert service.pauses == [("a", "crash loop: 3 runs failed in a row (last: agent)", None)]
    service.alerts.clear()
    rules(_changed(_run("succeeded", 6)))
    assert ("crash-loop:a", True) in service.raised() and ("run-failed:a", True) in service.raised()


def test_one_run_retried_by_hand_that_fails_again_is_one_failure_not_a_crash_loop() -> None:
    service = Recorder()
    rules = RunRules(service, crash_loop=3, crash_loop_pause=None)
    for attempt in (1, 2, 3):
        rules(_changed({**_run("failed", 1, kind="model", message="down", resumable=True), "attempt": attempt}))
    assert service.pauses == [] and not [k for k, _ in service.raised() if k.startswith("crash-loop")]
    rules(_changed(_run("failed", 2, kind="agent")))
    rules(_changed(_run("failed", 3, kind="agent")))
    assert [agent for agent, _, _ in service.pauses] == ["a"], "three different runs in a row are a loop"


def test_failures_in_a_row_are_counted_per_agent_and_reset_by_a_success() -> None:
    service = Recorder()
    rules = RunRules(service, crash_loop=2, crash_loop_pause=60.0)
    rules(_changed(_run("failed", 1, agent="a", kind="agent")))
    rules(_changed(_run("failed", 2, agent="b", kind="agent")))
    rules(_changed(_run("succeeded", 3, agent="a")))
    rules(_changed(_run("failed", 4, agent="a", kind="agent")))
    assert service.pauses == []
    rules(_changed(_run("failed", 5, agent="b", kind="limit")))
    ((agent, _, until),) = service.pauses
    assert agent == "b" and until is not None


def test_retries_exhausted_and_on_hold_have_their_own_keys() -> None:
    service = Recorder()
    rules = RunRules(service, crash_loop=0, crash_loop_pause=None)
    rules(_changed(_run("failed", 1, kind="model", message="503 forever", resumable=True)))
    rules(_changed(_run("failed", 2, kind="crash", message="died")))
    rules(_changed({**_run("on_hold", 3), "hold_reason": "step 1: outcome unknown"}))
    rules(_changed(_run("succeeded", 3)))  # released and finished: the hold is over
    raised = [(a.key, a.title) for a in service.alerts if not a.resolved]
    assert [key for key, _ in raised] == ["retries-exhausted:a", "retries-exhausted:a", "on-hold:run3"]
    assert raised[0][1] == "run of 'a' failed after its retries (model); `corral retry run1` resumes it"
    assert ("on-hold:run3", True) in service.raised() and service.pauses == []


def test_a_model_not_configured_asks_the_operator_and_clears_on_success() -> None:
    service = Recorder()
    rules = RunRules(service, crash_loop=0, crash_loop_pause=None)
    rules(_changed(_run("failed", 1, kind="not_configured", message="set FAKE_KEY", resumable=True)))
    ((alert,),) = [[a for a in service.alerts if not a.resolved]]
    assert alert.key == "not-configured:a" and alert.severity.value == "critical"
    assert "not configured" in alert.title and "corral retry run1" in alert.title
    rules(_changed(_run("succeeded", 1)))
    assert ("not-configured:a", True) in [(a.key, a.resolved) for a in service.alerts]


def test_a_silent_run_is_stuck_once_and_clears_when_it_moves() -> None:
    now = [1000.0]
    service = Recorder()
    rule = StuckRule(service, stuck_after=60.0, clock=lambda: now[0])
    rule(_changed(_run("running", 1)))
    rule(_changed(_run("running", 2)))
    now[0] += 50
    rule(Event(EventKind.STEP_DONE, _run("running", 2), step={"seq": 1}))
    now[0] += 20
    rule.check()
    rule.check()
    assert service.raised() == [("stuck:run1", False)]
    rule(Event(EventKind.STEP_DONE, _run("running", 1), step={"seq": 1}))
    rule(_changed(_run("succeeded", 2)))
    assert service.raised() == [("stuck:run1", False), ("stuck:run1", True)]


def test_approvals_breakers_and_budgets_each_raise_their_alert() -> None:
    service = Recorder()
    rules = NoticeRules(service)
    run = _run("running", 1)
    record = {"id": "ab12", "agent": "a", "tool": "pay", "reason": "high stakes", "state": "pending"}
    rules(Event(EventKind.APPROVAL_REQUESTED, run, data=record))
    rules(Event(EventKind.APPROVAL_DECIDED, run, data={**record, "state": "expired", "decision_reason": "late"}))
    change = {"model": "m", "old": "closed", "reason": "5 failures", "retry_in": 30.0}
    for new in ("open", "half_open", "closed"):
        rules(Event(EventKind.BREAKER_CHANGED, {}, data={**change, "new": new}))
    rules(Event(EventKind.BUDGET_CROSSED, run, data={"budget": "run", "agent": "a", "message": "3 of 3 calls"}))
    day = {"budget": "day", "agent": "a", "scope": "", "day": "2026-12-06"}
    soft = {"measure": "cost_usd", "fraction": 0.5, "used": "1.00", "cap": "2.00"}
    rules(Event(EventKind.BUDGET_CROSSED, run, data={**day, **soft}))
    rules(Event(EventKind.BUDGET_CROSSED, run, data={**day, "fraction": 1.0, "message": "spent", "until": 1.0}))
    rules(Event(EventKind.RUN_CHANGED, run, old=RunState.QUEUED))  # not theirs
    assert [(a.key, a.severity.value, a.resolved, a.title) for a in service.alerts] == [
        ("approval:ab12", "warning", False, "agent 'a' waits for approval ab12"),
        ("approval:ab12", "warning", True, "approval ab12 for 'pay' expired"),
        ("breaker:m", "warning", False, "model 'm': circuit breaker opened"),
        ("breaker:m", "info", True, "model 'm': circuit breaker closed again"),
        ("budget:run:run1", "warning", False, "a run reached its model budget"),
        (
            "budget:day:all:2026-12-06:cost_usd:0.5",
            "warning",
            False,
            "all agents together used 50% of the daily cost usd budget",
        ),
        ("budget:day:all:2026-12-06:limit", "critical", False, "daily model budget spent"),
    ]
    assert "corral approve ab12" in service.alerts[0].body and service.alerts[0].run_id == "run1"


DAY = 86400.0


def _success(ended: float, steps: int = 3, result: Any = "done", n: int = 1) -> dict[str, Any]:
    return {"id": f"r{n}", "state": "succeeded", "created": ended - 5, "ended": ended, "steps": steps, "result": result}


def test_expected_runs_a_recent_success_that_did_work_is_health() -> None:
    expect = Expectation("a", DAY, min_steps=1, require_result=True)
    now = 10 * DAY
    assert judge(expect, [_success(now - 3600)], now, watched_since=0) is None
    assert judge(expect, [], now, watched_since=now - 60) is None  # not watched for a day yet
    missing = judge(expect, [{"id": "r2", "state": "failed", "created": now - 100}], now, watched_since=0)
    assert missing is not None and missing[0] == "no successful run of 'a' in the last 86400s"


def test_expected_runs_a_silent_success_is_not_mistaken_for_health() -> None:
    expect = Expectation("a", DAY, min_steps=1, require_result=True)
    now = 10 * DAY
    silent = judge(expect, [_success(now - 60, steps=0, result=None, n=2), _success(now - 3 * DAY)], now, 0)
    assert silent is not None
    title, body = silent
    assert "succeeded without doing what is expected" in title
    assert "at least 1 steps (it had 0)" in body and "a result (it returned nothing)" in body
    stale = judge(expect, [_success(now - 2 * DAY)], now, 0)
    assert stale is not None and "its last success was run r1" in stale[1]


def test_alerts_config_reports_every_problem_with_table_key_and_fix() -> None:
    alerts = {
        "route": {"critical": ["pager", "nope"], "urgent": []},
        "agents": {"ghost": {"warning": ["pager"]}},
        "sinks": {
            "pager": {"type": "webhook", "url_env": "PAGER_URL", "escalate_to": "mail"},
            "mail": {"type": "email", "password_env": "no spaces", "escalate_to": "pager"},
            "log": {"type": "webhook"},
            "typeless": {},
        },
        "expect": {"a": {"min_steps": 1}},
        "deadman": {"url": "ftp://x", "every": "soon"},
        "crash_loop": -1,
    }
    p = Problems("corral.toml")
    read_alerts(p, alerts, {"a"}, {}, read_metrics(p, {"host": "0.0.0.0"}))
    problems = p.items
    text = "\n".join(problems)
    for expected in (
        "[alerts.sinks.pager] url_env: PAGER_URL is not set in corral's environment",
        "[alerts.sinks.mail] password_env: 'no spaces' is not an environment variable name",
        "[alerts.sinks.pager] escalate_to: escalation goes round in a circle (pager -> mail -> pager)",
        '[alerts.sinks.log]: "log" is always on',
        "[alerts.sinks.typeless] type: is required",
        "[alerts.route] urgent: unknown key; known keys: critical, info, warning",
        "[alerts.route] critical: 'nope' is not an [alerts.sinks.NAME] table",
        "[alerts.agents.ghost]: there is no [agents.ghost]",
        "[alerts.expect.a] succeeded_within: is required",
        "[alerts.deadman] url: must be an http:// or https:// URL",
        "[alerts.deadman] every: 'soon' is not a duration",
        "[alerts] crash_loop: -1 is not a whole number",
        "[metrics] host: '0.0.0.0' is not a loopback address",
    ):
        assert expected in text, f"missing: {expected}\n{text}"
    assert all(p.startswith("corral.toml: [") for p in problems)


def test_a_secret_from_the_environment_never_shows_in_the_config_or_its_errors(tmp_path: Path) -> None:
    secret = "https://hooks.example.com/T0/s3cr3t"
    data = {"alerts": {"sinks": {"hook": {"type": "webhook", "url_env": "HOOK_URL"}}}}
    config = parse_config(data, tmp_path / "corral.toml", {"HOOK_URL": secret})
    url = config.alerts.sinks["hook"].settings["url"]
    assert isinstance(url, Secret) and url.reveal() == secret and "s3cr3t" not in repr(config)
    with pytest.raises(ConfigError) as caught:
        parse_config(
            {**data, "alerts": {**data["alerts"], "repeat_after": "x"}}, tmp_path / "c.toml", {"HOOK_URL": secret}
        )
    assert "s3cr3t" not in str(caught.value)


SINK_PLUGIN = '''
import corral
from corral.alerts import Settings, Sink

class FileSink(Sink):
    """Appends each alert's title to a file: a third-party sink type."""

    kind = "file"

    def _configure(self, settings: Settings) -> None:
        self.path = settings.required_text("path", '"/tmp/alerts.txt"')

    def target(self) -> str:
        return self.path

    async def _send(self, alert) -> None:
        with open(self.path, "a") as out:
            out.write(alert.title + "\\n")

@corral.hookimpl
def corral_register_alert_sinks(register):
    register("file", FileSink)
'''


def test_a_plugin_sink_type_is_configured_checked_and_used_like_a_builtin(
    corral_project: CorralProject, http_receiver: Callable[..., HTTPReceiver], tmp_path: Path
) -> None:
    plugin = tmp_path / "file_sink.py"
    plugin.write_text(SINK_PLUGIN)
    out = tmp_path / "alerts.txt"
    corral_project.corral["plugins"] = [str(plugin)]
    corral_project.agent("bad", "def run(ctx):\n    raise ValueError('no')\n", max_attempts=1)
    base = corral_project.config_path.read_text()
    corral_project.config_path.write_text(
        base + '\n[alerts]\nroute = { warning = ["f"] }\n[alerts.sinks.f]\ntype = "file"\npth = "x"\n'
        '[alerts.sinks.g]\ntype = "pigeon"\n'
    )
    check = corral_project.cli("check")
    assert check.returncode == 1
    assert "[alerts.sinks.f] path: is required" in check.stderr + check.stdout
    assert "[alerts.sinks.f] pth: unknown key; did you mean 'path'?" in check.stderr + check.stdout
    assert "no plugin provides alert sink type 'pigeon'" in check.stderr + check.stdout
    corral_project.config_path.write_text(
        base + f'\n[alerts]\nroute = {{ warning = ["f"] }}\n[alerts.sinks.f]\ntype = "file"\npath = "{out}"\n'
    )
    assert corral_project.cli("check").returncode == 0
    run = corral_project.cli("run", "bad", "--wait")  # in the foreground: its alert goes out before it exits
    assert run.returncode == 1
    assert out.read_text() == "run of 'bad' failed (agent)\n"
