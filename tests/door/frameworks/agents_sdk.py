import asyncio

from agents import Agent, Runner, function_tool, set_tracing_disabled

set_tracing_disabled(True)  # corral traces the run; the SDK's exporter would call api.openai.com


@function_tool
def add(a: int, b: int) -> int:
    """Add two numbers."""
    return a + b


def run(ctx):
    maths = Agent(name="Maths", instructions="Do sums with add.", tools=[add], model="default")
    triage = Agent(name="Triage", instructions="Hand sums off.", handoffs=[maths], model="default")
    return asyncio.run(Runner.run(triage, ctx.input)).final_output
