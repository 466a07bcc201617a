"""A plugin tool with a retry policy against a real failing HTTP server on 127.0.0.1,
called by real agents through corral (a foreground ``corral run``): retried when safe,
every try in the journal, one result for the agent."""

from __future__ import annotations

import json
from typing import Any

import pytest

from corral.testing import CorralProject
from tests.projects import CALLER
from tests.resilience.faults import Faults
from tests.resilience.plugin import install


def _project(project: CorralProject, faults: Faults, **tools: dict[str, Any]) -> None:
    for name, table in tools.items():
        project.tables[f"tools.{name}"] = table
    install(project, faults, "client", tools=["get", "post"])


def _run(project: CorralProject, calls: list[tuple[str, str]]) -> tuple[list[dict[str, Any]], dict[str, Any]]:
    payload = {str(n): {"tool": tool, "args": {"url": url}} for n, (tool, url) in enumerate(calls)}
    result = project.cli("run", "client", "--input", json.dumps(payload), "--wait", "--json")
    assert result.returncode == 0, result.stdout + result.stderr
    run = json.loads(result.stdout)
    assert run["state"] == "succeeded", run
    trace = project.cli_json("trace", run["id"])
    return [run["result"][str(n)] for n in range(len(calls))], trace


def test_bursts_of_503_are_retried_and_every_try_is_in_the_trace(corral_project: CorralProject, faults: Faults) -> None:
    _project(corral_project, faults)
    url = f"{faults.url}/burst/a/2"
    results, trace = _run(corral_project, [("get", url)])
    assert results == [{"ok": "ok a"}]
    assert faults.hits["/burst/a/2"] == 3
    [step] = trace["steps"]
    assert step["status"] == "done" and step["ok"] and step["executions"] == 3
    tries = step["tries"]
    assert [t["number"] for t in tries] == [1, 2]
    assert all("HTTP 503" in t["error"]["message"] and 0 <= t["wait"] <= 0.4 for t in tries)
    shown = corral_project.cli("trace", trace["run"]["id"], "--step", "1", check=True).stdout
    assert "try 1: failed" in shown and "try 2: failed" in shown, shown


@pytest.mark.slow
def test_503_forever_gives_up_after_the_policy_with_one_error(corral_project: CorralProject, faults: Faults) -> None:
    _project(corral_project, faults)
    results, trace = _run(corral_project, [("get", f"{faults.url}/down/b")])
    [outcome] = results
    assert outcome["error"] == "failed"
    assert "HTTP 503" in outcome["message"] and "the last of 4 tries" in outcome["message"]
    assert faults.hits["/down/b"] == 4
    assert trace["steps"][0]["executions"] == 4 and len(trace["steps"][0]["tries"]) == 3


@pytest.mark.slow
def test_429_waits_for_retry_after(corral_project: CorralProject, faults: Faults) -> None:
    _project(corral_project, faults)
    results, trace = _run(corral_project, [("get", f"{faults.url}/limited/c/1")])
    assert results == [{"ok": "ok c"}]
    [first] = trace["steps"][0]["tries"]
    assert first["retry_after"] == 1 and first["wait"] == 1


@pytest.mark.slow
def test_401_is_not_retried_and_says_how_to_fix_it(corral_project: CorralProject, faults: Faults) -> None:
    _project(corral_project, faults)
    results, trace = _run(corral_project, [("get", f"{faults.url}/auth/d")])
    [outcome] = results
    assert "HTTP 401" in outcome["message"] and "corral secrets set API_TOKEN" in outcome["message"]
    assert faults.hits["/auth/d"] == 1 and "tries" not in trace["steps"][0]


@pytest.mark.slow
def test_a_non_idempotent_tool_is_retried_only_when_the_error_says_nothing_happened(
    corral_project: CorralProject, faults: Faults
) -> None:
    _project(corral_project, faults)
    results, trace = _run(corral_project, [("post", f"{faults.url}/burst/e/1"), ("post", f"{faults.url}/slam/f")])
    assert results[0] == {"ok": "ok e"}  # 503 is ToolError(retryable=True): it did nothing
    assert faults.hits["/burst/e/1"] == 2
    assert "not retried: the tool is not idempotent" in results[1]["message"]  # a dropped connection: ambiguous
    assert faults.hits["/slam/f"] == 1 and "tries" not in trace["steps"][1]


@pytest.mark.slow
def test_config_overrides_the_decorators_policy(corral_project: CorralProject, faults: Faults) -> None:
    _project(corral_project, faults, get={"retries": 1, "backoff": "50ms..50ms"})
    results, _ = _run(corral_project, [("get", f"{faults.url}/down/g")])
    assert "the last of 2 tries" in results[0]["message"]
    assert faults.hits["/down/g"] == 2


@pytest.mark.slow
def test_fetch_url_retries_a_busy_host_and_returns_other_statuses(
    corral_project: CorralProject, faults: Faults
) -> None:
    project = corral_project
    port = faults.url.rsplit(":", 1)[1]
    project.tables["tools.fetch_url"] = {"backoff": "50ms..100ms"}
    project.agent(
        "reader",
        CALLER,
        tools=["fetch_url"],
        tool_settings={"fetch_url": {"allow_hosts": ["127.0.0.1"]}},
        sandbox={"network": [f"127.0.0.1:{port}"], "degraded_ok": True},
    )
    paths = {"burst": "/burst/h/2", "limited": "/limited/i/1", "down": "/down/j", "auth": "/auth/k"}
    payload = {label: {"tool": "fetch_url", "args": {"url": faults.url + path}} for label, path in paths.items()}
    result = project.cli("run", "reader", "--input", json.dumps(payload), "--wait", "--json")
    assert result.returncode == 0, result.stdout + result.stderr
    got = json.loads(result.stdout)["result"]
    assert got["burst"]["ok"]["text"] == "ok h" and faults.hits[paths["burst"]] == 3
    assert got["limited"]["ok"]["text"] == "ok i" and faults.hits[paths["limited"]] == 2
    assert "answered HTTP 503 (Service Unavailable)" in got["down"]["message"]
    assert "the last of 4 tries" in got["down"]["message"] and faults.hits[paths["down"]] == 4
    assert got["auth"]["ok"]["status"] == 401 and faults.hits[paths["auth"]] == 1, "a 401 is returned, not retried"
