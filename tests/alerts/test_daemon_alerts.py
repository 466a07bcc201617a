"""Alerting in a real daemon: the rules, the outbox across kill -9, metrics, the dead-man's switch, the CLI."""

from __future__ import annotations

import json
import textwrap
import time
import urllib.request
from collections.abc import Callable
from typing import Any

import pytest
from prometheus_client.parser import text_string_to_metric_families

from corral.testing import CorralProject, wait_for

from .receivers import HANG, HTTPReceiver, free_port

pytestmark = pytest.mark.slow

FAILING = "def run(ctx):\n    raise RuntimeError('boom')\n"
FINE = "def run(ctx):\n    ctx.state['n'] = ctx.state.get('n', 0) + 1\n    return 'ok'\n"


def _configure(project: CorralProject, extra: str) -> None:
    """Write the project's config plus ``extra`` TOML (tables the fixture does not write itself)."""
    project.write()
    with project.config_path.open("a") as config:
        config.write("\n" + textwrap.dedent(extra))


def _run(project: CorralProject, agent: str) -> dict[str, Any]:
    """``corral run AGENT --wait``, which exits 1 for a failed run; the run record either way."""
    run: dict[str, Any] = json.loads(project.cli("run", agent, "--wait", "--json").stdout)
    return run


def _sent(receiver: HTTPReceiver) -> list[dict[str, Any]]:
    return [json.loads(r.body) for r in receiver.requests]


def test_a_crash_loop_pauses_the_agent_and_alerts_once(
    corral_project: CorralProject, http_receiver: Callable[..., HTTPReceiver]
) -> None:
    chat = http_receiver()
    corral_project.agent("bad", FAILING, max_attempts=1)
    _configure(
        corral_project,
        f"""
        [alerts]
        crash_loop = 3
        route = {{ warning = ["chat"], critical = ["chat"] }}

        [alerts.sinks.chat]
        type = "webhook"
        url = "{chat.url("/hook")}"
        """,
    )
    corral_project.start_daemon(write_config=False)
    runs = [_run(corral_project, "bad") for _ in range(3)]
    assert all(run["state"] == "failed" for run in runs)
    sent = wait_for(lambda: len(chat.requests) >= 2 and _sent(chat), "the crash-loop alert")
    time.sleep(0.5)  # anything else would have arrived by now
    sent = _sent(chat)
    assert [(a["key"], a["severity"]) for a in sent] == [("run-failed:bad", "warning"), ("crash-loop:bad", "critical")]
    assert "paused" in sent[1]["title"] and sent[1]["fields"]["failures"] == 3
    status = wait_for(lambda: corral_project.cli_json("status")["agents"]["bad"].get("pause"), "the pause")
    assert "crash loop" in status["reason"]

    stored = corral_project.cli_json("alerts")
    assert [r["alert"]["key"] for r in stored] == ["run-failed:bad", "crash-loop:bad"]
    assert stored[0]["repeats"] == 0 and all(r["status"] == "delivered" for r in stored)
    tree = corral_project.cli("trace", runs[0]["id"], "--tree", check=True).stdout
    assert "alert warning: run of 'bad' failed (agent)" in tree and "delivered (chat, log)" in tree
    logged = corral_project.cli("logs", "bad", "--run", runs[0]["id"][-8:], "--event", "alert *", "--json").stdout
    assert [json.loads(line)["key"] for line in logged.splitlines()] == ["run-failed:bad"]
    listing = corral_project.cli("alerts", "--since", "1h", check=True).stdout
    assert "failed 3 times in a row" in listing


def test_a_hanging_sink_delays_no_run_and_its_alert_survives_kill_9(
    corral_project: CorralProject, http_receiver: Callable[..., HTTPReceiver]
) -> None:
    chat = http_receiver([HANG])
    corral_project.agent("bad", FAILING, max_attempts=1)
    corral_project.agent("fine", FINE)
    _configure(
        corral_project,
        f"""
        [alerts]
        route = {{ warning = ["chat"], critical = ["chat"] }}

        [alerts.sinks.chat]
        type = "webhook"
        url = "{chat.url("/hook")}"
        timeout = "60s"
        """,
    )
    daemon = corral_project.start_daemon(write_config=False)
    failed = _run(corral_project, "bad")
    wait_for(lambda: chat.requests, "the alert to reach the hanging receiver")
    assert _run(corral_project, "fine")["state"] == "succeeded"
    (pending,) = corral_project.cli_json("alerts")
    assert pending["status"] == "pending" and pending["alert"]["run_id"] == failed["id"]

    daemon.kill()
    chat.script()  # from now on the receiver answers 200
    corral_project.start_daemon(write_config=False)
    wait_for(lambda: len(chat.requests) >= 3, "redelivery and the crash alert")
    sent = _sent(chat)
    # the same alert, id and all, sent again after the restart; the crash alert may go first
    assert sent[0] in sent[1:] and sent[0]["key"] == "run-failed:bad"
    assert {a["key"] for a in sent[1:]} == {"run-failed:bad", "daemon:crashed"}
    stored = {r["alert"]["key"]: r for r in corral_project.cli_json("alerts")}
    wait_for(
        lambda: all(r["status"] == "delivered" for r in corral_project.cli_json("alerts")), "the records to settle"
    )
    assert stored["daemon:crashed"]["alert"]["severity"] == "critical"


def test_metrics_and_the_dead_mans_switch(
    corral_project: CorralProject, http_receiver: Callable[..., HTTPReceiver]
) -> None:
    ping = http_receiver()
    port = free_port()
    corral_project.agent("fine", FINE)
    corral_project.agent("sleeper", "import time\n\ndef run(ctx):\n    time.sleep(20)\n")
    _configure(
        corral_project,
        f"""
        [metrics]
        port = {port}

        [alerts.deadman]
        url = "{ping.url("/ping/check-uuid")}"
        every = "0.2s"
        """,
    )
    corral_project.start_daemon(write_config=False)
    assert _run(corral_project, "fine")["state"] == "succeeded"
    corral_project.cli("run", "sleeper", check=True)

    def scrape() -> dict[tuple[str, tuple[tuple[str, str], ...]], float]:
        with urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=5) as response:
            text = response.read().decode()
        return {
            (sample.name, tuple(sorted(sample.labels.items()))): sample.value
            for family in text_string_to_metric_families(text)
            for sample in family.samples
        }

    def ready() -> dict[tuple[str, tuple[tuple[str, str], ...]], float] | None:
        samples = scrape()
        return samples if samples.get(("corral_agent_rss_bytes", (("agent", "sleeper"),)), 0) > 0 else None

    samples = wait_for(ready, "the sleeper's memory in the metrics")
    assert samples[("corral_runs_total", (("agent", "fine"), ("outcome", "succeeded")))] == 1
    assert samples[("corral_step_seconds_count", (("agent", "fine"), ("kind", "state")))] == 1
    assert samples[("corral_runs_active", (("state", "running"),))] == 1
    assert ("corral_agent_cpu_seconds", (("agent", "sleeper"),)) in samples
    wait_for(lambda: len(ping.requests) >= 2, "two dead-man's switch pings")
    assert {(r.method, r.path) for r in ping.requests} == {("GET", "/ping/check-uuid")}


def test_failures_in_a_row_are_counted_across_processes_and_a_crash_loop_starts_the_count_afresh(
    corral_project: CorralProject,
) -> None:
    """With the daemon down every `corral run` is a process of its own (and a restarted daemon
    is too): the count comes from the store, not from one process's memory."""
    corral_project.agent("bad", FAILING, max_attempts=1)
    _configure(corral_project, "[alerts]\ncrash_loop = 3\n")
    runs = [_run(corral_project, "bad") for _ in range(3)]
    assert [run["state"] for run in runs] == ["failed"] * 3
    pause = wait_for(lambda: corral_project.cli_json("status")["agents"]["bad"].get("pause"), "the pause")
    assert pause["reason"].startswith("crash loop: 3 runs failed in a row")
    corral_project.cli("resume", "bad", check=True)
    assert _run(corral_project, "bad")["state"] == "failed"
    time.sleep(0.5)
    assert corral_project.cli_json("status")["agents"]["bad"].get("pause") is None, "the count started afresh"
