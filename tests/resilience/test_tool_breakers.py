"""A tool downstream's circuit breaker in a real daemon: two agents share it; it opens after
N failures in a row and refuses fast with an error the model can read, lets one trial
through after its cool-down and closes on its success; each change raises or clears an
alert, and ``corral status`` and the metrics show it."""

from __future__ import annotations

import json
import socket
import time
import urllib.request
from typing import Any

import pytest
from prometheus_client.parser import text_string_to_metric_families

from corral.testing import CorralProject, wait_for
from tests.resilience.faults import Faults
from tests.resilience.plugin import install

pytestmark = pytest.mark.slow


def _free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


def _calls(project: CorralProject, agent: str, *calls: tuple[str, str]) -> list[dict[str, Any]]:
    payload = {str(n): {"tool": tool, "args": {"url": url}} for n, (tool, url) in enumerate(calls)}
    result = project.cli("run", agent, "--input", json.dumps(payload), "--wait", "--json")
    assert result.returncode == 0, result.stdout + result.stderr
    run = json.loads(result.stdout)
    assert run["state"] == "succeeded", run
    return [run["result"][str(n)] for n in range(len(calls))]


def _breaker_gauge(port: int) -> dict[str, float]:
    with urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=5) as response:
        text = response.read().decode()
    return {
        sample.labels["downstream"]: sample.value
        for family in text_string_to_metric_families(text)
        for sample in family.samples
        if sample.name == "corral_tool_breaker_state"
    }


def test_two_agents_share_a_downstreams_breaker(corral_project: CorralProject, faults: Faults) -> None:
    project = corral_project
    host = faults.url.removeprefix("http://")
    metrics = _free_port()
    project.tables["metrics"] = {"port": metrics}
    project.tables["tools.get"] = {"retries": 0, "breaker_failures": 2, "breaker_cool_down": "4s"}
    install(project, faults, "alice", "bob", tools=["get"])
    project.start_daemon()
    downstream = f"tool:{host}"

    failed = _calls(project, "alice", ("get", f"{faults.url}/down/x"), ("get", f"{faults.url}/down/x"))
    opened = time.monotonic()
    assert all("HTTP 503" in answer["message"] for answer in failed)
    [refused] = _calls(project, "bob", ("get", f"{faults.url}/down/x"))
    assert refused["error"] == "breaker_open"
    assert f"tool 'get' was not called: {downstream!r} is failing (2 consecutive failures)" in refused["message"]
    assert "corral will try it again in" in refused["message"]
    assert faults.hits["/down/x"] == 2, "an open breaker sends nothing"

    status = project.cli_json("status")
    assert status["breakers"][downstream]["new"] == "open"
    shown = project.cli("status", check=True).stdout
    assert f"circuit breaker of tool downstream {host!r} open: 2 consecutive failures" in shown
    assert wait_for(lambda: _breaker_gauge(metrics).get(downstream) == 2, "the open breaker in the metrics")

    time.sleep(max(0.0, opened + 4.2 - time.monotonic()))  # the cool-down: the next call is the trial
    assert _calls(project, "bob", ("get", f"{faults.url}/burst/y/0")) == [{"ok": "ok y"}]
    assert wait_for(lambda: _breaker_gauge(metrics).get(downstream) == 0, "the closed breaker in the metrics")
    assert project.cli_json("status")["breakers"] == {}

    def breaker_alerts() -> list[tuple[str, bool]] | None:
        found = [
            (record["alert"]["title"], record["alert"]["resolved"])
            for record in project.cli_json("alerts")
            if record["alert"]["key"] == f"breaker:{downstream}"
        ]
        return found if len(found) == 2 else None

    assert wait_for(breaker_alerts, "the breaker's alert and its all-clear") == [
        (f"tool downstream {host!r}: circuit breaker opened", False),
        (f"tool downstream {host!r}: circuit breaker closed again", True),
    ]
