"""The agent's own process holds the door's token and its tools' secrets; its children cannot read them.

The runtime (the agent's process) starts the agent's subprocesses, a command agent's
program and the stdio MCP servers as its children, with the same uid. A hostile child
reads ``/proc/<ppid>/maps`` and ``/proc/<ppid>/mem`` looking for ``corral-`` tokens and
for the value of a secret that only a tool declares (it is not in the agent's
environment, only in the runtime's memory). The runtime makes itself non-dumpable before
the welcome arrives, so both files are refused and nothing is found. A real daemon runs
the agent in the real sandbox; the scanner is a real subprocess.
"""

from __future__ import annotations

import json
import re
import secrets
import subprocess
import sys
from collections.abc import Iterator
from typing import Any

import pytest

from tests.e2e.support import Project

pytestmark = pytest.mark.hostile

TOOL_ONLY = f"ghp_{secrets.token_hex(16)}"
"""The value of GH_TOKEN: declared by the tool, granted to the agent, never in its environment."""

PLUGIN = '''
import corral


@corral.tool(secrets=("GH_TOKEN",))
def whoami(secrets: dict[str, str]) -> str:
    """Says whose token the tool holds, without showing it."""
    return "token of " + str(len(secrets["GH_TOKEN"])) + " characters"


@corral.hookimpl
def corral_register_tools(register):
    register(whoami)
'''

SCANNER = r'''
"""Reads its parent's memory as the attacker did; prints what it found as JSON."""
import json, os, re, sys

wanted = sys.argv[1].encode()
token = re.compile(rb"corral-[A-Za-z0-9_-]{43}")
parent = os.getppid()
out = {"maps": None, "mem": None, "tokens": [], "secret": False}
try:
    with open(f"/proc/{parent}/maps") as f:
        regions = [line.split() for line in f]
    out["maps"] = "read"
except OSError as exc:
    regions = []
    out["maps"] = f"{type(exc).__name__}: {exc.strerror}"
try:
    with open(f"/proc/{parent}/mem", "rb", buffering=0) as mem:
        out["mem"] = "opened"
        for fields in regions:
            if len(fields) < 2 or not fields[1].startswith("rw"):
                continue
            start, end = (int(x, 16) for x in fields[0].split("-"))
            if end - start > 256 * 2**20:
                continue
            try:
                mem.seek(start)
                data = mem.read(end - start)
            except OSError:
                continue
            out["tokens"] += sorted({m.group().decode() for m in token.finditer(data)})
            out["secret"] = out["secret"] or wanted in data
except OSError as exc:
    out["mem"] = f"{type(exc).__name__}: {exc.strerror}"
print(json.dumps(out))
'''

AGENT = """
import os, re, subprocess, sys

def run(ctx):
    print("CORRAL_DOOR_TOKEN=" + os.environ["CORRAL_DOOR_TOKEN"], flush=True)  # as `env` in a command would
    said = ctx.tool("whoami")  # the tool has run: its secrets are in this process, in use
    scan = subprocess.run([sys.executable, "scanner.py", ctx.input["secret"]], capture_output=True, text=True,
                          timeout=120, cwd=os.path.dirname(__file__))
    return {"tool": said, "scan": scan.stdout, "stderr": scan.stderr[-2000:],
            "own_token": bool(re.fullmatch(r"corral-[A-Za-z0-9_-]{43}", os.environ["CORRAL_DOOR_TOKEN"])),
            "in_env": "GH_TOKEN" in os.environ}
"""


@pytest.fixture(scope="module")
def project(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Project]:
    root = tmp_path_factory.mktemp("memory")
    built = Project(root)
    plugin = root / "whoami_tool.py"
    plugin.write_text(PLUGIN)
    built.corral["plugins"] = [str(plugin)]
    (built.agents_dir / "scanner.py").write_text(SCANNER)
    built.agent("reader", AGENT, tools=["whoami"], secrets=["GH_TOKEN"], max_attempts=1)
    stored = subprocess.run(
        [sys.executable, "-m", "corral", "secrets", "set", "GH_TOKEN", "--backend", "file"],
        input=TOOL_ONLY,
        env=built.env,
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert stored.returncode == 0, stored.stderr
    try:
        yield built
    finally:
        built.close()


@pytest.fixture(scope="module")
def scanned(project: Project) -> dict[str, Any]:
    """The run, once per module (per xdist worker): its record, with the scanner's findings."""
    project.start_daemon()
    ran = project.cli("run", "reader", "--wait", "--json", "--input", json.dumps({"secret": TOOL_ONLY}), timeout=180)
    assert ran.returncode == 0, ran.stderr
    run: dict[str, Any] = json.loads(ran.stdout)
    assert run["state"] == "succeeded", run
    result = run["result"]
    assert result["tool"] == f"token of {len(TOOL_ONLY)} characters", result
    assert result["in_env"] is False, "the tool-only secret must not be in the agent's environment"
    return run


LINUX_ONLY = pytest.mark.skipif(not sys.platform.startswith("linux"), reason="/proc and PR_SET_DUMPABLE are Linux's")


@LINUX_ONLY
def test_a_child_of_the_agents_process_reads_neither_the_door_token_nor_a_tool_secret(
    scanned: dict[str, Any],
) -> None:
    result = scanned["result"]
    found = json.loads(result["scan"] or "null")
    assert found is not None, result["stderr"]
    assert found["tokens"] == [] and found["secret"] is False, found
    assert found["mem"].startswith("PermissionError"), found
    assert found["maps"].startswith("PermissionError"), found
    assert result["own_token"] is True, "the agent itself still has its token, in its environment"


@LINUX_ONLY
def test_the_run_records_that_its_process_memory_is_private(project: Project, scanned: dict[str, Any]) -> None:
    trace = project.cli_json("trace", scanned["id"], "--json")
    assert "private-memory" in trace["run"]["applied"], trace["run"]["applied"]


@LINUX_ONLY
def test_a_printed_door_token_is_redacted_in_the_agents_log(project: Project, scanned: dict[str, Any]) -> None:
    """A program that prints its environment puts the run's token on its stdout; the daemon made
    the token, so it hides it."""
    log = (project.home / "logs" / "reader.log").read_bytes()
    assert b"CORRAL_DOOR_TOKEN=[redacted:CORRAL_DOOR_TOKEN]" in log
    assert re.search(rb"corral-[A-Za-z0-9_-]{43}", log) is None
