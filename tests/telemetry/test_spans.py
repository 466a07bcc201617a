"""What a run exports: the span tree, its names and GenAI attributes, the metrics, and the
``traceparent`` its model requests carry. A foreground ``corral run`` (the real CLI, a real
sandboxed agent), a model server and an OTLP/HTTP receiver, all on 127.0.0.1."""

from __future__ import annotations

import json

from corral.testing import CorralProject
from tests.models.fake_servers import FakeServer, Reply, openai_body
from tests.telemetry.agents import SECRET, SECRET_NAME
from tests.telemetry.receiver import Receiver, Span


def by_name(spans: list[Span]) -> dict[str, list[Span]]:
    found: dict[str, list[Span]] = {}
    for span in sorted(spans, key=lambda s: s.start):
        found.setdefault(span.name, []).append(span)
    return found


def test_a_run_exports_one_trace_named_as_the_genai_conventions_say(
    traced: CorralProject, server: FakeServer, receiver: Receiver
) -> None:
    server.enqueue(
        Reply(200, openai_body("three", usage=(30, 7), cached=10, model="fake-gpt-0613")),
        Reply(200, openai_body("again", finish="length")),
    )
    done = traced.cli("run", "mixed", "--wait", "--json", "--input", json.dumps({"note": "x"}))
    assert done.returncode == 0, done.stderr
    run = json.loads(done.stdout)
    assert run["state"] == "succeeded"
    trace_id = traced.run_record(run["id"])["trace_id"]
    receiver.wait_for(lambda r: len(r.trace(trace_id)) == 5)  # the foreground run flushes before it exits
    spans = receiver.trace(trace_id)
    names = by_name(spans)
    assert sorted(names) == ["chat fake-gpt", "execute_tool word_count", "invoke_agent mixed", "state set"]
    [root] = names["invoke_agent mixed"]
    assert root.parent == "" and root.kind == "internal"
    assert root.attributes["gen_ai.operation.name"] == "invoke_agent"
    assert root.attributes["gen_ai.agent.name"] == "mixed"
    assert root.attributes["corral.run.id"] == run["id"] and root.attributes["corral.run.state"] == "succeeded"
    assert root.resource["service.name"] == "corral" and root.scope == "corral"
    assert all(span.parent == root.span_id for span in spans if span is not root), "every step hangs off the run"
    assert len({span.span_id for span in spans}) == 5

    [state] = names["state set"]
    assert state.attributes["corral.state.key"] == "seen" and "corral.state.value" not in state.attributes
    first, second = names["chat fake-gpt"]
    assert first.kind == "client"
    assert first.attributes["gen_ai.operation.name"] == "chat"
    assert first.attributes["gen_ai.provider.name"] == "openai"
    assert first.attributes["gen_ai.request.model"] == "fake-gpt"
    assert first.attributes["gen_ai.response.model"] == "fake-gpt-0613"
    assert first.attributes["gen_ai.response.finish_reasons"] == ["stop"]
    assert second.attributes["gen_ai.response.finish_reasons"] == ["length"]
    assert first.attributes["gen_ai.usage.input_tokens"] == 30
    assert first.attributes["gen_ai.usage.output_tokens"] == 7
    assert first.attributes["gen_ai.usage.cache_read.input_tokens"] == 10
    assert first.attributes["gen_ai.request.max_tokens"] == 20
    assert abs(first.attributes["corral.cost_usd"] - (30 * 2.0 + 7 * 8.0) / 1e6) < 1e-12
    assert first.attributes["corral.step.seq"] == 2 and first.attributes["corral.attempt"] == 1
    assert "gen_ai.input.messages" not in first.attributes, "content is exported only with capture_content"
    [tool] = names["execute_tool word_count"]
    assert tool.attributes["gen_ai.operation.name"] == "execute_tool"
    assert tool.attributes["gen_ai.tool.name"] == "word_count"
    assert len(tool.attributes["gen_ai.tool.call.id"]) > 8
    assert "gen_ai.tool.call.arguments" not in tool.attributes
    assert root.start <= state.start <= first.start <= first.end <= tool.start <= second.start <= root.end

    # the model requests carried the W3C context of the chat spans they became
    sent = [request.headers["traceparent"] for request in server.requests]
    assert sent == [f"00-{trace_id}-{first.span_id}-01", f"00-{trace_id}-{second.span_id}-01"]


def test_metrics_carry_tokens_durations_and_run_counters(
    traced: CorralProject, server: FakeServer, receiver: Receiver
) -> None:
    server.enqueue(Reply(200, openai_body("three", usage=(30, 7))), Reply(200, openai_body("again", usage=(4, 2))))
    assert traced.cli("run", "mixed", "--wait").returncode == 0
    receiver.wait_for(lambda r: bool(r.latest("corral.runs")))
    tokens = {p.attributes["gen_ai.token.type"]: p for p in receiver.latest("gen_ai.client.token.usage")}
    assert tokens["input"].value == (2, 34) and tokens["output"].value == (2, 9)  # (count, sum)
    assert tokens["input"].unit == "{token}"
    assert tokens["input"].attributes["gen_ai.provider.name"] == "openai"
    assert tokens["input"].attributes["gen_ai.request.model"] == "fake-gpt"
    [duration] = receiver.latest("gen_ai.client.operation.duration")
    assert duration.unit == "s" and duration.value[0] == 2 and duration.attributes["gen_ai.operation.name"] == "chat"
    [runs] = receiver.latest("corral.runs")
    assert runs.value == 1 and runs.attributes == {"gen_ai.agent.name": "mixed", "corral.run.state": "succeeded"}
    steps = {p.attributes["corral.step.kind"]: p.value for p in receiver.latest("corral.steps")}
    assert steps == {"state": 1, "model": 2, "tool": 1}


def test_content_is_exported_with_capture_content_and_redacted(
    traced: CorralProject, server: FakeServer, receiver: Receiver
) -> None:
    traced.tables["telemetry"]["capture_content"] = True
    traced.write()
    server.enqueue(
        Reply(200, openai_body("call it", [("call_1", "word_count", '{"text": "a b"}')], finish="tool_calls")),
        Reply(200, openai_body("again")),
    )
    given = {"note": "hello ", "secret": SECRET_NAME}
    done = traced.cli("run", "mixed", "--wait", "--json", "--input", json.dumps(given))
    trace_id = traced.run_record(json.loads(done.stdout)["id"])["trace_id"]
    receiver.wait_for(lambda r: len(r.trace(trace_id)) == 5)
    names = by_name(receiver.trace(trace_id))
    first = names["chat fake-gpt"][0].attributes
    assert json.loads(first["gen_ai.system_instructions"]) == [{"type": "text", "content": "be brief"}]
    assert json.loads(first["gen_ai.input.messages"]) == [
        {"role": "user", "parts": [{"type": "text", "content": f"count hello [redacted:{SECRET_NAME}]"}]}
    ]
    assert json.loads(first["gen_ai.output.messages"]) == [
        {
            "role": "assistant",
            "parts": [
                {"type": "text", "content": "call it"},
                {"type": "tool_call", "id": "call_1", "name": "word_count", "arguments": {"text": "a b"}},
            ],
            "finish_reason": "tool_calls",
        }
    ]
    assert json.loads(first["gen_ai.tool.definitions"])[0]["name"] == "word_count"
    tool = names["execute_tool word_count"][0].attributes
    assert json.loads(tool["gen_ai.tool.call.arguments"]) == {"text": "one two three"}
    counted = {"one": 1, "three": 1, "two": 1}
    assert json.loads(tool["gen_ai.tool.call.result"]) == counted
    assert json.loads(names["state set"][0].attributes["corral.state.value"]) == "hello "
    root = names["invoke_agent mixed"][0].attributes
    assert json.loads(root["corral.run.input"]) == given
    assert json.loads(root["corral.run.result"]) == ["call it", counted, "again"]
    assert SECRET.encode() not in receiver.raw(), "the secret went into a prompt, never into an export"
