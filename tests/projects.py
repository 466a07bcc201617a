"""Agents several test modules run: the chat agent that calls a model, the deployer
whose one tool is high-stakes, and the caller that makes the tool calls of its input.
The fixtures that set them up are in tests/conftest.py."""

from __future__ import annotations

import json
from typing import Any

from corral.testing import CorralProject

KEY = "sk-test-e2e-0123456789abcdef"
KEY_VAR = "FAKE_MODEL_KEY"


def fake_model(url: str, **table: Any) -> dict[str, Any]:
    """``[models.fake]`` on the fake model server at ``url``, its key in ``KEY_VAR``, priced;
    ``table`` adds or overrides keys."""
    return {
        "provider": "openai",
        "base_url": f"{url}/v1",
        "model": "fake-gpt",
        "api_key_env": KEY_VAR,
        "prices": {"input": 2.0, "output": 8.0},
        **table,
    }


CHAT = """
import os
import corral

def run(ctx):
    answers = []
    for i in range(ctx.input["calls"]):
        try:
            r = ctx.model([{"role": "user", "text": f"question {i}"}], tools=["word_count"], max_tokens=50)
        except corral.ModelCallError as exc:
            answers.append({"error": exc.kind, "message": str(exc)})
            break
        answers.append({"text": r.text, "calls": [[c.name, c.arguments] for c in r.tool_calls],
                        "tokens": [r.usage.input_tokens, r.usage.output_tokens]})
        if ctx.input.get("wait_for"):
            import time, pathlib
            while i == 1 and not pathlib.Path(ctx.input["wait_for"]).exists():
                time.sleep(0.05)
    return {"answers": answers, "env_has_key": any("sk-test" in v for v in os.environ.values())}
"""
"""The chat agent: makes ``input["calls"]`` model calls and returns what each answered (or
the error that ended them); with ``wait_for``, it waits after the second call until that
file exists."""

DEPLOY_PLUGIN = '''
import pathlib

import corral


@corral.tool(high_stakes=True)
def deploy(target: str) -> str:
    """Deploy to a target (writes a line to deployed.txt in the workdir).

    :param target: where to deploy
    """
    with pathlib.Path("deployed.txt").open("a") as f:
        f.write(target + "\\n")
    return f"deployed to {target}"


@corral.hookimpl
def corral_register_tools(register):
    register(deploy)
'''

DEPLOYER = """
import corral

def run(ctx):
    try:
        return ctx.tool("deploy", target=ctx.input or "prod")
    except corral.ToolCallError as exc:
        return {"refused": exc.kind, "message": str(exc)}
"""


def deployed(project: CorralProject) -> list[str]:
    """The targets the deployer's tool has deployed to, in order."""
    path = project.home / "agents" / "deployer" / "deployed.txt"
    return path.read_text().splitlines() if path.exists() else []


def run_until_held(project: CorralProject, payload: str) -> tuple[str, dict[str, Any]]:
    """Start the deployer on ``payload`` and wait for its deploy to be held for approval:
    the approval request's id and the held run."""
    started = project.cli_json("run", "deployer", "--input", json.dumps(payload))
    run = project.wait_for_run(started["id"], states=("on_hold", "succeeded", "failed"))
    assert run["state"] == "on_hold" and run["error"]["kind"] == "approval", run
    [request] = project.cli_json("approvals")
    assert request["run_id"] == run["id"] and request["tool"] == "deploy" and request["args"] == {"target": payload}
    return request["id"], run


CALLER = """
import corral

def attempt(ctx, name, **args):
    try:
        return {"ok": ctx.tool(name, **args)}
    except corral.ToolCallError as exc:
        return {"error": exc.kind, "message": str(exc)}

def run(ctx):
    return {label: attempt(ctx, call["tool"], **call["args"]) for label, call in ctx.input.items()}
"""
"""An agent whose input maps labels to ``{"tool": NAME, "args": {...}}``; it returns each
call's ``{"ok": value}`` or ``{"error": kind, "message": ...}`` under its label."""

REFUSING = """
import corral

def run(ctx):
    seen = []
    for path in ("../../etc/passwd", 3):
        try:
            ctx.tool("read_file", path=path)
        except corral.ToolCallError as exc:
            seen.append([exc.kind, str(exc)])
    ctx.tool("read_file", path="/etc/passwd")
"""
"""An agent (granted ``read_file``) whose three calls are refused: a path out of its workdir
and arguments against the schema, caught; then an absolute path, which fails the run."""
