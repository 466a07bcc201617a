from pydantic_ai import Agent


def add(a: int, b: int) -> int:
    """Add two numbers."""
    return a + b


def run(ctx):
    agent = Agent("openai:default", instructions="Do sums with the add tool.", tools=[add])
    return agent.run_sync(ctx.input).output
