"""The tool door: every run's granted tools as an MCP server at ``/mcp`` on the run's door,
spoken to by the ``mcp`` SDK's own Streamable HTTP client inside real agents under
``corral run --wait``."""

from __future__ import annotations

import json
from typing import Any

from corral.testing import CorralProject

ENVIRONMENT = """
import os

def run(ctx):
    names = ("CORRAL_MCP_URL", "CORRAL_DOOR_TOKEN", "OPENAI_BASE_URL", "OPENAI_API_KEY", "ANTHROPIC_API_KEY")
    return {name: os.environ.get(name) for name in names}
"""


def _run(project: CorralProject, agent: str, *args: str) -> dict[str, Any]:
    result = project.cli("run", agent, *args, "--wait", "--json")
    assert result.returncode in (0, 1), result.stderr
    run = json.loads(result.stdout)
    assert run["state"] == "succeeded", run.get("error")
    return run


def test_every_run_has_a_door_and_an_agent_without_models_keeps_its_own_sdk_variables(
    corral_project: CorralProject,
) -> None:
    corral_project.agent("plain", ENVIRONMENT, env={"OPENAI_API_KEY": "its-own"})
    seen = _run(corral_project, "plain")["result"]
    assert seen["CORRAL_MCP_URL"].startswith("http://127.0.0.1:") and seen["CORRAL_MCP_URL"].endswith("/mcp")
    assert seen["CORRAL_DOOR_TOKEN"].startswith("corral-")
    assert seen["OPENAI_API_KEY"] == "its-own", "no models granted: the agent's env entry stands"
    assert seen["OPENAI_BASE_URL"] is None and seen["ANTHROPIC_API_KEY"] is None
