from langchain.agents import create_agent
from langchain_openai import ChatOpenAI


def add(a: int, b: int) -> int:
    """Add two numbers."""
    return a + b


def run(ctx):
    agent = create_agent(ChatOpenAI(model="default"), tools=[add], system_prompt="Do sums with the add tool.")
    state = agent.invoke({"messages": [{"role": "user", "content": ctx.input}]})
    return state["messages"][-1].content
