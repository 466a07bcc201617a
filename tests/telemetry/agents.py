"""The agent the telemetry tests run, and the secret it is granted."""

from __future__ import annotations

MIXED = """
import os
import pathlib
import time

def run(ctx):
    given = ctx.input or {}
    note = given.get("note", "") + os.environ.get(given.get("secret", "-"), "")
    ctx.state["seen"] = given.get("note", "hello")
    first = ctx.model(
        [{"role": "system", "text": "be brief"}, {"role": "user", "text": "count " + note}],
        tools=["word_count"],
        max_tokens=20,
    )
    counted = ctx.tool("word_count", text="one two three")
    wait_for = given.get("wait_for")
    while wait_for and not pathlib.Path(wait_for).exists():
        time.sleep(0.05)
    second = ctx.model([{"role": "user", "text": "again"}], max_tokens=20)
    return [first.text, counted, second.text]
"""
"""State, model, tool, (wait for the file ``input["wait_for"]`` in its workdir), model. The first prompt ends
with ``input["note"]`` and the value of the granted secret ``input["secret"]``, if given."""

SECRET_NAME, SECRET = "PROMPT_TOKEN", "tok-4f1e9a7c2b8d"
"""A secret granted to the agent, which puts it in a prompt."""
