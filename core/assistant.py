"""The built-in tool-calling agent: an agent written in config only.

```toml
[agents.tidy]
code = "agents"
entry = "corral.assistant:run"
models = ["default"]
tools = ["list_files", "read_file", "write_file"]
input = { goal = "Summarise every .txt file into summary.md", system = "You keep notes tidy." }
```

It is a plain ``run(ctx)`` on the public API, durable like any agent: it asks the model
with the granted tools plus ``finish``, runs the tool calls the model makes (each
validated by the daemon; a refusal goes back to the model as a tool error it can
correct), returns their results, and stops when the model calls ``finish`` (its explicit
done state) or a guardrail stops the run (turns, tool calls, wall time, repeats).
"""

from __future__ import annotations

import json
from typing import Any

from corral.errors import ToolCallError
from corral.models.types import Message

DEFAULT_SYSTEM = (
    "You are an agent run unattended by corral. Work towards the goal with the tools you "
    "have; check your results. When the goal is met, or cannot be met, call `finish` with "
    "the result (or why not). Do not ask the user questions: nobody is watching."
)
FINISH = {
    "name": "finish",
    "description": "End the run: the goal is done, or cannot be done. Call it once, alone.",
    "parameters": {
        "type": "object",
        "properties": {"result": {"type": "string", "description": "The outcome, or why the goal cannot be met."}},
        "required": ["result"],
    },
}
NUDGE = "Call a tool to make progress, or call `finish` with the result."
RESULT_CHARS = 16_000
"""A tool result longer than this is cut before it goes back to the model (its context is finite)."""
MAX_UNUSABLE = 5
"""Tool calls in a row whose arguments could not be used (not JSON, not an object) before the
run stops. Such a call never reaches the daemon, so the refusal and repeat guardrails cannot
see it; without this bound only ``max_model_turns`` and the budgets would end the loop. Same
as the default ``max_refusals``."""


class UnusableToolCalls(RuntimeError):
    """The model kept sending tool calls whose arguments cannot be used."""


def settings(payload: Any) -> tuple[str, str]:
    """(system prompt, goal) from the run's input: a table with ``goal`` and optional
    ``system``, or a plain string that is the goal."""
    if isinstance(payload, str) and payload.strip():
        return DEFAULT_SYSTEM, payload
    if isinstance(payload, dict) and isinstance(payload.get("goal"), str) and payload["goal"].strip():
        system = payload.get("system")
        return (system if isinstance(system, str) and system.strip() else DEFAULT_SYSTEM), payload["goal"]
    raise ValueError(
        'the built-in agent needs a goal: set input = { goal = "..." } in its [agents.NAME] table, '
        'or pass --input \'{"goal": "..."}\''
    )


def run(ctx: Any) -> Any:
    """Ask, act, repeat until the model calls ``finish``."""
    system, goal = settings(ctx.input)
    messages: list[Message] = [Message.system(system), Message.user(goal)]
    tools: list[Any] = [*ctx.tools, FINISH]
    unusable = 0
    while True:
        reply = ctx.model(messages, tools=tools)
        messages.append(reply.message())
        if not reply.tool_calls:
            messages.append(Message.user(NUDGE))
            continue
        for call in reply.tool_calls:
            if call.name == "finish":
                ctx.log.info("finished", turns=sum(m.role == "assistant" for m in messages))
                return (call.arguments or {}).get("result")
            if call.arguments_error:
                unusable += 1
                if unusable >= MAX_UNUSABLE:
                    raise UnusableToolCalls(
                        f"the model sent tool calls with unusable arguments {unusable} times in a row (last, for "
                        f"{call.name!r}: {call.arguments_error}); the run stops rather than pay for more turns. "
                        "Use a model that follows tool schemas, or describe the arguments in the agent's system prompt"
                    )
                messages.append(Message.tool_result(call.id, f"error: {call.arguments_error}", is_error=True))
                continue
            unusable = 0
            messages.append(_act(ctx, call))


def _act(ctx: Any, call: Any) -> Message:
    """Run one tool call the model asked for; the model sees its result or its error."""
    try:
        result = ctx.tool(call.name, **call.arguments)
    except ToolCallError as exc:
        return Message.tool_result(call.id, f"error: {exc}", is_error=True)
    text = result if isinstance(result, str) else json.dumps(result, ensure_ascii=False, default=str)
    if len(text) > RESULT_CHARS:
        text = text[:RESULT_CHARS] + f"\n[... cut: {len(text) - RESULT_CHARS} more characters]"
    return Message.tool_result(call.id, text)
