"""Telemetry from a real daemon: a run killed with the daemon (kill -9) and resumed by the
next one is one trace, its replayed steps marked, its id the one ``corral trace`` shows;
a collector that is down costs one warning and nothing else; a collector's token goes
only where it belongs. Model server and OTLP/HTTP receiver on 127.0.0.1."""

from __future__ import annotations

import json
import time

import pytest

from corral.testing import CorralProject
from tests.models.fake_servers import FakeServer, Reply, closed_port_url, openai_body
from tests.projects import KEY
from tests.telemetry.agents import SECRET
from tests.telemetry.receiver import Receiver

TOKEN = "Bearer otlp-7c1d0e5b9a2f4386"


def logs(project: CorralProject) -> str:
    return "".join(path.read_text() for path in sorted((project.home / "logs").glob("*.log*"))) + (
        project.daemon_stderr()
    )


def telemetry_lines(project: CorralProject, level: str) -> list[str]:
    path = project.home / "logs" / "corral.log"
    lines = [json.loads(line) for line in path.read_text().splitlines()] if path.exists() else []
    return [line["event"] for line in lines if line["level"] == level and line["event"].startswith("telemetry")]


def test_a_run_killed_with_the_daemon_and_resumed_is_one_trace_with_its_replays_marked(
    traced: CorralProject, server: FakeServer, receiver: Receiver, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("OTLP_AUTH", TOKEN)
    traced.tables["telemetry"]["headers_env"] = {"Authorization": "OTLP_AUTH"}
    gate = traced.home / "agents" / "mixed" / "go"  # in the agent's workdir: the only place its sandbox sees
    server.enqueue(Reply(200, openai_body("three")), Reply(200, openai_body("again")))
    daemon = traced.start_daemon()
    run_id = traced.cli_json("run", "mixed", "--input", json.dumps({"wait_for": "go"}))["id"]
    trace_id = traced.run_record(run_id)["trace_id"]
    receiver.wait_for(lambda r: {s.attributes.get("corral.step.seq") for s in r.trace(trace_id)} >= {1, 2, 3})
    daemon.kill()  # SIGKILL while the agent waits for the gate after its third step
    gate.touch()
    traced.start_daemon()
    run = traced.wait_for_run(run_id, states=("succeeded", "failed"))
    assert run["state"] == "succeeded" and run["attempt"] == 2, run
    receiver.wait_for(lambda r: any(s.name == "invoke_agent mixed" for s in r.trace(trace_id)))

    assert f"trace {trace_id}" in traced.cli("trace", run_id, check=True).stdout
    assert {span.trace_id for span in receiver.spans} == {trace_id}, "both daemons exported into the run's trace"
    # an event the killed daemon delivered but had not yet recorded as delivered is delivered
    # again by the next one (at least once): its span comes twice, with the same id
    spans = list({span.span_id: span for span in receiver.trace(trace_id)}.values())
    assert len(spans) == 1 + 3 + 3 + 1
    [root] = [span for span in spans if span.name == "invoke_agent mixed"]
    assert root.parent == "" and root.attributes["corral.run.attempts"] == 2
    assert all(span.parent == root.span_id for span in spans if span is not root)

    def steps(replayed: bool) -> list[tuple[int, int, str]]:
        found = [s for s in spans if s is not root and bool(s.attributes.get("corral.step.replayed")) is replayed]
        return sorted((s.attributes["corral.step.seq"], s.attributes["corral.attempt"], s.name) for s in found)

    assert steps(replayed=False) == [
        (1, 1, "state set"),
        (2, 1, "chat fake-gpt"),
        (3, 1, "execute_tool word_count"),
        (4, 2, "chat fake-gpt"),
    ]
    assert steps(replayed=True) == [(1, 2, "state set"), (2, 2, "chat fake-gpt"), (3, 2, "execute_tool word_count")]
    [replayed_chat] = [s for s in spans if s.name == "chat fake-gpt" and s.attributes.get("corral.step.replayed")]
    assert "gen_ai.usage.input_tokens" not in replayed_chat.attributes, "a replay used no tokens"
    assert replayed_chat.start == replayed_chat.end >= root.start
    chats = {s.attributes["corral.step.seq"]: s for s in spans if s.name == "chat fake-gpt" and s is not replayed_chat}
    assert [request.headers["traceparent"] for request in server.requests] == [
        f"00-{trace_id}-{chats[2].span_id}-01",
        f"00-{trace_id}-{chats[4].span_id}-01",
    ], "the replay made no request; each request named the span it became"

    assert {request.headers.get("authorization") for request in receiver.requests} == {TOKEN}
    for secret in (TOKEN.split()[1], KEY, SECRET):
        assert secret.encode() not in b"".join(r.body for r in receiver.requests), "no secret in what was exported"
        assert secret not in logs(traced), "no secret in a log"
    assert telemetry_lines(traced, "warning") == []


def test_a_collector_that_is_down_costs_one_warning_and_the_run_goes_on(
    traced: CorralProject, server: FakeServer
) -> None:
    traced.tables["telemetry"] = {"otlp_endpoint": closed_port_url(), "export_interval": "0.2s", "timeout": "1s"}
    server.enqueue(*[Reply(200, openai_body("ok")) for _ in range(8)])
    traced.start_daemon()
    for _ in range(3):
        run = traced.cli_json("run", "mixed", "--wait")
        assert run["state"] == "succeeded", run
    deadline = time.monotonic() + 30
    while not telemetry_lines(traced, "warning") and time.monotonic() < deadline:
        time.sleep(0.1)
    [warning] = telemetry_lines(traced, "warning")
    assert "did not take" in warning and "connection refused" in warning and "Runs are not affected" in warning
    run = traced.cli_json("run", "mixed", "--wait")
    assert run["state"] == "succeeded"
    time.sleep(1.5)  # several more export intervals, every one of them failing
    assert len(telemetry_lines(traced, "warning")) == 1, "one warning for the whole outage"
