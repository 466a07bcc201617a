"""A TypeScript agent (tests/node/agent.mts) with the npm ``openai`` package, compiled with
``tsc`` (which type-checks it against the package's own types) and run by node as a command
agent under ``corral run --wait``, against the scripted model server on 127.0.0.1
(tests/models/fake_servers.py): its upstream requests, its journal, a budget, and a kill -9 of
the daemon mid-run whose resume pays for no finished call again.

The npm packages are pinned by tests/node/package-lock.json and installed by
``sh tests/node/install.sh`` (the README's test command runs it); without node or them, the
tests skip and say so."""

from __future__ import annotations

import shutil
import subprocess
from pathlib import Path
from typing import Any

import pytest

from corral.testing import CorralProject
from tests.e2e.support import kill_daemon_at, run_waited, steps_of
from tests.models.fake_servers import FakeServer, Reply, openai_body
from tests.projects import KEY, KEY_VAR, fake_model

pytestmark = pytest.mark.framework

NODE = Path(__file__).parents[1] / "node"


@pytest.fixture(scope="session")
def compiled(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The agent compiled by tsc into a folder of its own, beside a link to the installed packages."""
    if shutil.which("node") is None:
        pytest.skip("node is not installed (the TypeScript agent needs node 20 or later)")
    tsc = NODE / "node_modules" / ".bin" / "tsc"
    if not (NODE / "node_modules" / "openai").is_dir() or not tsc.exists():
        pytest.skip("the npm packages are not installed: run sh tests/node/install.sh")
    out = tmp_path_factory.mktemp("typescript")
    built = subprocess.run([str(tsc), "-p", str(NODE), "--outDir", str(out)], capture_output=True, text=True)
    assert built.returncode == 0, built.stdout + built.stderr
    (out / "node_modules").symlink_to(NODE / "node_modules")
    return out


@pytest.fixture
def typescript(
    corral_project: CorralProject, server: FakeServer, compiled: Path, monkeypatch: pytest.MonkeyPatch
) -> CorralProject:
    """Model ``fake`` on ``server`` (one try), and a writer of ``[agents.ts]`` for a mode."""
    monkeypatch.setenv(KEY_VAR, KEY)
    corral_project.models["fake"] = fake_model(server.url, retry_attempts=1)
    return corral_project


def _agent(project: CorralProject, compiled: Path, mode: str, **table: Any) -> None:
    """``[agents.ts]``: node runs the compiled agent, without the address space its WebAssembly
    would reserve (docs/agents.md); the packages it imports are granted read-only (the link in
    its code folder leads out of it)."""
    project.agents["ts"] = {
        "code": str(compiled),
        "command": ["node", "--disable-wasm-trap-handler", "agent.mjs"],
        "models": ["fake"],
        "input": {"mode": mode},
        "sandbox": {"read_only": [str((NODE / "node_modules").resolve())]},
        **table,
    }
    project.write()


def _run(project: CorralProject) -> dict[str, Any]:
    run = run_waited(project, "ts")
    assert run["state"] == "succeeded", run.get("error")
    return run


def test_a_typescript_agent_with_the_openai_package_calls_models_through_the_door(
    typescript: CorralProject, server: FakeServer, compiled: Path
) -> None:
    _agent(typescript, compiled, "calls")
    server.enqueue(
        Reply(body=openai_body("hello", usage=(30, 4))),
        Reply(body=openai_body("streamed text", usage=(9, 7))),
        Reply(body=openai_body(None, [("call_1", "add", '{"a": 2, "b": 3}')], finish="tool_calls")),
    )
    run = _run(typescript)
    assert run["result"] == {
        "first": "hello",
        "streamed": "streamed text",
        "tokens": 7,
        "tool": ["add", {"a": 2, "b": 3}],
        "stored": 200,
        "models": ["fake", "fake-gpt"],
    }
    assert len(server.requests) == 3, "one upstream request per SDK call"
    sent = [request.json() for request in server.requests]
    assert sent[0]["messages"] == [{"role": "user", "content": "hello"}]
    assert sent[2]["tools"][0]["function"]["name"] == "add"
    assert all(request.headers["authorization"] == f"Bearer {KEY}" for request in server.requests)
    assert [(step["kind"], step["name"]) for step in steps_of(typescript, run["id"])] == [
        ("model", "fake"),
        ("model", "fake"),
        ("model", "fake"),
        ("state", "set"),
    ]
    assert run["spent"]["calls"] == 3
    assert '"event":"asked"' in (typescript.home / "logs" / "ts.log").read_text()


def test_a_typescript_agent_over_its_budget_gets_the_sdks_rate_limit_error(
    typescript: CorralProject, server: FakeServer, compiled: Path
) -> None:
    _agent(typescript, compiled, "budget", budget={"run_calls": 1})
    server.enqueue(Reply(body=openai_body("one")))
    first, status, message = _run(typescript)["result"]
    assert first == "one" and status == 429 and "run_calls" in message
    assert len(server.requests) == 1, "the SDK's retries of a spent budget never reach the model"


def test_a_typescript_agent_resumed_after_kill_9_pays_for_no_finished_call_again(
    typescript: CorralProject, server: FakeServer, compiled: Path
) -> None:
    _agent(typescript, compiled, "resume")
    daemon = typescript.start_daemon()
    server.enqueue(Reply(body=openai_body("one")), Reply(body=openai_body("two")))
    run_id = typescript.cli_json("run", "ts")["id"]
    kill_daemon_at(daemon, typescript.home / "agents" / "ts" / "asked-two")
    assert len(server.requests) == 2
    server.enqueue(Reply(body=openai_body("three")))
    typescript.start_daemon()
    run = typescript.wait_for_run(run_id)
    assert run["state"] == "succeeded", run.get("error")
    assert run["result"] == ["one", "two", "three"] and run["attempt"] == 2
    assert len(server.requests) == 3, "no finished call is paid for again"
    assert run["spent"]["calls"] == 3
    assert [(step["kind"], step.get("args", {}).get("key")) for step in steps_of(typescript, run_id)] == [
        ("model", None),
        ("state", "answer 0"),
        ("model", None),
        ("state", "answer 1"),
        ("model", None),
        ("state", "answer 2"),
    ]


@pytest.mark.parametrize("address_space", ["default", "none"])
def test_node_without_its_flag_needs_the_address_space_its_webassembly_reserves(
    typescript: CorralProject, server: FakeServer, compiled: Path, address_space: str
) -> None:
    """What docs/agents.md says of node and ``limits.address_space_mb``, measured: Node's fetch
    (undici's HTTP parser is WebAssembly) cannot start under the default 4096 MiB; the failure
    says what to do."""
    limits = {"address_space_mb": "none"} if address_space == "none" else {}
    _agent(typescript, compiled, "budget", limits=limits, budget={"run_calls": 1})
    typescript.agents["ts"]["command"] = ["node", "agent.mjs"]
    typescript.write()
    server.enqueue(Reply(body=openai_body("one")))
    run = run_waited(typescript, "ts")
    if address_space == "none":
        assert run["state"] == "succeeded", run.get("error")
        return
    assert run["state"] == "failed" and len(server.requests) == 0
    assert "Cannot allocate Wasm memory" in run["error"]["message"]
    assert "run node with --disable-wasm-trap-handler, or raise limits.address_space_mb" in run["error"]["message"]
