"""Agents written against the official openai and anthropic SDKs, with no corral import for
their model calls: what the model door must run unmodified. Each returns what it saw."""

OPENAI = """
import asyncio, json
from openai import AsyncOpenAI, OpenAI

TOOL = {"type": "function", "function": {"name": "add", "description": "Add two numbers",
        "parameters": {"type": "object", "properties": {"a": {"type": "number"}, "b": {"type": "number"}},
                       "required": ["a", "b"]}}}


def run(ctx):
    client = OpenAI(max_retries=0)
    seen = {}
    first = client.chat.completions.create(model="fake", messages=[{"role": "user", "content": "hi"}])
    seen["sync"] = [first.choices[0].message.content, first.usage.prompt_tokens, first.model]

    async def both():
        aclient = AsyncOpenAI(max_retries=0)
        asks = [aclient.chat.completions.create(model="fake-gpt", messages=[{"role": "user", "content": f"q{i}"}])
                for i in range(2)]
        return [r.choices[0].message.content for r in await asyncio.gather(*asks)]

    seen["async"] = sorted(asyncio.run(both()))
    chunks = list(client.chat.completions.create(
        model="default", messages=[{"role": "user", "content": "stream"}], stream=True,
        stream_options={"include_usage": True}))
    seen["stream"] = ["".join(c.choices[0].delta.content or "" for c in chunks if c.choices),
                      chunks[-1].usage.completion_tokens]
    history = [{"role": "system", "content": "be brief"}, {"role": "user", "content": "2+3?"}]
    call = client.chat.completions.create(model="fake", messages=history, tools=[TOOL], tool_choice="auto")
    message = call.choices[0].message
    args = json.loads(message.tool_calls[0].function.arguments)
    history += [message.model_dump(exclude_none=True),
                {"role": "tool", "tool_call_id": message.tool_calls[0].id, "content": str(args["a"] + args["b"])}]
    final = client.chat.completions.create(model="fake", messages=history, tools=[TOOL],
                                           response_format={"type": "json_schema", "json_schema": {
                                               "name": "sum", "schema": {"type": "object"}}})
    seen["tools"] = [call.choices[0].finish_reason, message.tool_calls[0].function.name, args,
                     final.choices[0].message.content]
    seen["models"] = sorted(m.id for m in client.models.list())
    return seen
"""

ANTHROPIC = """
import asyncio
from anthropic import Anthropic, AsyncAnthropic

TOOL = {"name": "add", "description": "Add two numbers",
        "input_schema": {"type": "object", "properties": {"a": {"type": "number"}, "b": {"type": "number"}}}}


def run(ctx):
    client = Anthropic(max_retries=0)
    seen = {}
    first = client.messages.create(model="claude", max_tokens=100, messages=[{"role": "user", "content": "hi"}])
    seen["sync"] = [first.content[0].text, first.usage.input_tokens, first.model, first.stop_reason]

    async def both():
        aclient = AsyncAnthropic(max_retries=0)
        asks = [aclient.messages.create(model="fake-claude", max_tokens=50,
                                        messages=[{"role": "user", "content": f"q{i}"}]) for i in range(2)]
        return [r.content[0].text for r in await asyncio.gather(*asks)]

    seen["async"] = sorted(asyncio.run(both()))
    with client.messages.stream(model="claude", max_tokens=100, system="be brief",
                                messages=[{"role": "user", "content": "stream"}]) as stream:
        texts = list(stream.text_stream)
        final = stream.get_final_message()
    seen["stream"] = ["".join(texts), final.usage.output_tokens]
    history = [{"role": "user", "content": "2+3?"}]
    call = client.messages.create(model="claude", max_tokens=100, messages=history, tools=[TOOL])
    use = [b for b in call.content if b.type == "tool_use"][0]
    history += [{"role": "assistant", "content": [b.model_dump(exclude_none=True) for b in call.content]},
                {"role": "user", "content": [{"type": "tool_result", "tool_use_id": use.id,
                                              "content": str(use.input["a"] + use.input["b"])}]}]
    with client.messages.stream(model="claude", max_tokens=100, messages=history, tools=[TOOL]) as stream:
        answer = stream.get_final_message()
    seen["tools"] = [call.stop_reason, use.name, use.input, answer.content[0].text]
    return seen
"""

CROSS = """
from anthropic import Anthropic
from openai import OpenAI


def run(ctx):
    to_claude = OpenAI(max_retries=0).chat.completions.create(
        model="claude", messages=[{"role": "system", "content": "sys"}, {"role": "user", "content": "hi"}],
        max_tokens=70)
    to_gpt = Anthropic(max_retries=0).messages.create(
        model="fake", max_tokens=80, system="sys", messages=[{"role": "user", "content": "hello"}])
    return [to_claude.choices[0].message.content, to_gpt.content[0].text]
"""

AGENTS_SDK = '''
import asyncio
from agents import Agent, Runner, function_tool, set_tracing_disabled

set_tracing_disabled(True)  # corral traces the run; the SDK's exporter would call api.openai.com


@function_tool
def add(a: int, b: int) -> int:
    """Add two numbers."""
    return a + b


def run(ctx):
    mathematician = Agent(name="Mathematician", instructions="Do sums with add.", tools=[add], model="fake")
    triage = Agent(name="Triage", instructions="Hand sums off.", handoffs=[mathematician], model="fake")

    async def both():  # one event loop: the SDK's client is bound to the loop it first ran on
        plain = await Runner.run(triage, "What is 2 + 3?")
        streamed = Runner.run_streamed(triage, "What is 4 + 5?")
        kinds = [event.type async for event in streamed.stream_events()]
        return [plain.final_output, plain.last_agent.name, streamed.final_output, streamed.last_agent.name,
                "raw_response_event" in kinds]

    return asyncio.run(both())
'''
