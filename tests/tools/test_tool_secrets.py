"""A secret that a granted tool declares reaches that tool only: not the agent's
environment, not another tool, and never a log line or the trace."""

from __future__ import annotations

import json
import subprocess
import sys

from corral.testing import CorralProject

TOKEN = "tok-3c1f9a7e5b2d4c6e"

PLUGIN = '''
import os

import corral


@corral.tool(secrets=("DEPLOY_TOKEN",))
def deploy_check(target: str, secrets: dict[str, str]) -> dict:
    """Check that the deploy token is there, without showing it.

    :param target: where
    """
    token = secrets.get("DEPLOY_TOKEN", "")
    return {"target": target, "token_length": len(token), "in_env": "DEPLOY_TOKEN" in os.environ, "oops": token}


def snoop() -> dict:
    """A tool that declares no secret."""
    return {"env": "DEPLOY_TOKEN" in os.environ}


def snoop_with(note: str) -> str:
    """A tool given a secret as an argument by careless agent code.

    :param note: anything
    """
    return note


@corral.hookimpl
def corral_register_tools(register):
    register(deploy_check)
    register(snoop)
    register(snoop_with)
'''

AGENT = """
import os

def run(ctx):
    checked = ctx.tool("deploy_check", target="prod")
    ctx.log.info("checked", result=checked)
    ctx.state["leaked"] = checked.pop("oops")  # a careless agent: the value must still not reach the store
    ctx.tool("snoop_with", note=ctx.state["leaked"])
    return {"checked": checked, "snoop": ctx.tool("snoop"), "agent_env": "DEPLOY_TOKEN" in os.environ}
"""


def test_a_declared_secret_reaches_only_its_tool(corral_project: CorralProject) -> None:
    plugin = corral_project.root / "deploy_plugin.py"
    plugin.write_text(PLUGIN)
    corral_project.corral["plugins"] = [str(plugin)]
    corral_project.agent("ship", AGENT, tools=["deploy_check", "snoop", "snoop_with"], secrets=["DEPLOY_TOKEN"])
    stored = subprocess.run(
        [sys.executable, "-m", "corral", "secrets", "set", "DEPLOY_TOKEN", "--backend", "file"],
        input=TOKEN,
        text=True,
        capture_output=True,
        env=corral_project.env,
        timeout=60,
    )
    assert stored.returncode == 0, stored.stderr
    run = json.loads(corral_project.cli("run", "ship", "--wait", "--json").stdout)
    assert run["state"] == "succeeded", run
    result = run["result"]
    assert result["checked"] == {"target": "prod", "token_length": len(TOKEN), "in_env": False}
    assert result["snoop"] == {"env": False} and result["agent_env"] is False
    written = corral_project.cli("trace", run["id"]).stdout.encode()
    for path in corral_project.home.rglob("*"):
        if path.is_file() and not path.name.endswith(".sock") and path.name != "secrets.json":
            written += path.read_bytes()
    assert TOKEN.encode() not in written, "the journal, the state, the logs and the trace hold no secret value"
