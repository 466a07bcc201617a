"""Review of the hot-path changes: how a tool's ``done`` becomes durable, and orphan reaping.

The run tests drive the real engine (real LMDB store, real writer thread, real
``Attempt``) against a real child process whose side of the wire is scripted frame by
frame, so the timing that matters (``done`` alone, ``done`` glued to the next frame,
EOF right after ``done``) is exact instead of left to the scheduler. The only thing
injected is a journal write that fails once, standing in for a disk that is full at
that moment; the attempt sees the same exception the writer delivers for a failed
commit.

Tests whose docstring says "Bug at 171d862" failed against that commit (the hot path as
reviewed) and pass since the fixes that followed; the others pin down behaviour the
review checked and found correct.
"""

from __future__ import annotations

import asyncio
import contextlib
import gc
import json
import os
import subprocess
import sys
import textwrap
import time
from collections.abc import Callable, Iterator, Sequence
from pathlib import Path
from typing import Any

import psutil
import pytest

from corral.childwire import ChildWire
from corral.config import AgentConfig, CorralConfig, Limits
from corral.engine import Engine
from corral.errors import StoreError
from corral.journal import Journal
from corral.logs import LogFiles
from corral.pluginmanager import load_plugins
from corral.sandbox.processes import Child, ProcessControl
from corral.store import Store

# --------------------------------------------------------------------------- scripted child

CHILD = r"""
import json, os, sys, time
from pathlib import Path
from corral.wire import BlockingChannel, encode

rfd, wfd = int(sys.argv[1]), int(sys.argv[2])
script = json.loads(sys.argv[3])
channel = BlockingChannel(rfd, wfd)
run = {}
for op, *arg in script:
    if op == "send":
        channel.send(arg[0])
    elif op == "burst":  # several frames in ONE write: the daemon reads them together
        data = b"".join(encode(m) for m in arg[0])
        assert len(data) < 4096  # below PIPE_BUF: one atomic write
        assert os.write(wfd, data) == len(data)
    elif op == "recv":
        message = channel.recv()
        if message["t"] == "welcome":
            run = message["run"]
        if arg and arg[0] and message["t"] != arg[0]:
            sys.exit(f"expected {arg[0]}, got {message}")
    elif op == "probe":  # what the store says about a step, right now (read-only, like the CLI)
        from corral.store import Records, Store
        store_path, seq, out = arg
        store = Store.open(Path(store_path), readonly=True)
        with store.env.begin() as txn:
            entry = Records(store.dbs).get_step(txn, run["run_id"], seq)
        store.env.close()
        Path(out).write_text(entry["status"] if entry else "missing")
    elif op == "sleep":
        time.sleep(arg[0])
    elif op == "exit":
        os._exit(0)
    elif op == "wait_close":
        while os.read(rfd, 4096):
            pass
os._exit(0)
"""

HELLO = {"t": "hello", "v": 1, "pid": 0}
STEP1 = {"t": "step", "seq": 1, "kind": "tool", "name": "word_count", "args": {"text": "a b"}}
DONE1 = {"t": "done", "seq": 1, "ok": True, "value": {"a": 1, "b": 1}}
STEP2 = {"t": "step", "seq": 2, "kind": "state", "name": "set", "args": {"key": "k", "value": 1}}
LOG = {"t": "log", "level": "info", "event": "thinking about the result", "fields": {}}
FINISH = {"t": "finish", "ok": True, "value": "fin"}
START = [["send", HELLO], ["recv", "welcome"], ["send", STEP1], ["recv", "exec"]]


class ScriptedProcesses(ProcessControl):
    """Spawns the scripted child instead of the launcher; one script per attempt."""

    def __init__(self, scripts: list[list[Any]]) -> None:
        super().__init__()
        self.scripts = scripts
        self.spawned = 0

    async def _spawn(
        self,
        policy_args: dict[str, object],
        workdir: Path,
        env: dict[str, str],
        cgroup: Path | None,
        wrap: Sequence[str] = (),
        namespaced: bool = False,
        seccomp: bool = False,
    ) -> Child:
        script = self.scripts[min(self.spawned, len(self.scripts) - 1)]
        self.spawned += 1
        child_read, daemon_write = os.pipe()
        daemon_read, child_write = os.pipe()
        try:
            process = await asyncio.create_subprocess_exec(
                sys.executable,
                "-c",
                CHILD,
                str(child_read),
                str(child_write),
                json.dumps(script),
                stdin=asyncio.subprocess.DEVNULL,
                stdout=asyncio.subprocess.PIPE,
                stderr=asyncio.subprocess.PIPE,
                cwd=workdir,
                start_new_session=True,
                close_fds=True,
                pass_fds=(child_read, child_write),
            )
        finally:
            os.close(child_read)
            os.close(child_write)
        return Child(process, ChildWire(daemon_read, daemon_write, max_bytes=2**20), None)


@contextlib.contextmanager
def engine_for(tmp_path: Path, scripts: list[list[Any]]) -> Iterator[Engine]:
    code = tmp_path / "agents"
    code.mkdir(exist_ok=True)
    (code / "a.py").write_text("def run(ctx):\n    return None\n")
    agent = AgentConfig(
        name="a", code=code, entry="a:run", tools=("word_count",), limits=Limits(memory_mb=None, wall_seconds=60)
    )
    config = CorralConfig(path=None, home=tmp_path / "home", agents={"a": agent})
    logs = LogFiles(config.log_dir)
    store = Store.open(config.home / "store")
    engine = Engine(config, store, load_plugins(), logs, processes=ScriptedProcesses(scripts))
    try:
        yield engine
    finally:
        engine.close()
        store.close()
        logs.close()


def steps_of(engine: Engine, run_id: str) -> dict[int, dict[str, Any]]:
    return {s["seq"]: s for s in engine.writer.call(lambda txn: list(engine.records.steps(txn, run_id)))}


def run_once(engine: Engine) -> tuple[dict[str, Any], dict[int, dict[str, Any]], list[str]]:
    """Create and execute one run; its final record, journal, and asyncio's error reports."""
    reports: list[str] = []

    async def main() -> dict[str, Any]:
        loop = asyncio.get_running_loop()
        loop.set_exception_handler(lambda _loop, context: reports.append(context["message"]))
        run = await engine.create_run("a")
        final = await engine.execute(run["id"])
        gc.collect()  # a task nobody awaited reports its exception when it is collected
        await asyncio.sleep(0)
        return final

    final = asyncio.run(main())
    return final, steps_of(engine, final["id"]), reports


@pytest.fixture
def fail_done_once(monkeypatch: pytest.MonkeyPatch) -> Callable[[Exception], list[int]]:
    """Make the next journal write of a tool's outcome fail once with ``error``."""

    def arm(error: Exception) -> list[int]:
        calls: list[int] = []
        real = Journal.done

        def done(self: Journal, txn: Any, seq: int, ok: bool, value: Any, err: Any) -> Any:
            calls.append(seq)
            if len(calls) == 1:
                raise error
            return real(self, txn, seq, ok, value, err)

        monkeypatch.setattr(Journal, "done", done)
        return calls

    return arm


# --------------------------------------------------------------------------- a done that cannot be journaled

DISK_FULL = StoreError("store write failed (mdb_put: No space left on device); simulated")
UNSTORABLE = ValueError("a value the journal cannot hold; simulated")

# done alone, then finish after a pause: the done goes out in the background flush
SEPARATE = [*START, ["send", DONE1], ["sleep", 0.5], ["send", FINISH], ["wait_close"]]
# done and finish read together: the done is left for _settle to write
TOGETHER = [*START, ["burst", [DONE1, FINISH]], ["wait_close"]]


@pytest.mark.parametrize(
    ("error", "script"),
    [
        pytest.param(DISK_FULL, SEPARATE, id="store-error-background-flush"),
        pytest.param(UNSTORABLE, SEPARATE, id="journal-error-background-flush"),
        pytest.param(UNSTORABLE, TOGETHER, id="journal-error-written-by-settle"),
        pytest.param(DISK_FULL, TOGETHER, id="store-error-written-by-settle"),
    ],
)
def test_a_run_never_succeeds_while_its_last_done_failed_to_journal(
    tmp_path: Path, fail_done_once: Any, error: Exception, script: list[Any]
) -> None:
    """Bug at 171d862: Attempt._settle awaited the background flush with asyncio.wait (which
    drops its exception) and swallowed _Stop from its own write, so after a failed outcome
    write the run was recorded succeeded with its last tool step still 'started'."""
    calls = fail_done_once(error)
    # a retried attempt (after a store error) finds step 1 'started' and runs it again
    with engine_for(tmp_path, [script]) as engine:
        final, steps, _ = run_once(engine)
    assert calls, "the done reached the journal"
    if final["state"] == "succeeded":
        assert steps[1]["status"] == "done", (
            f"run {final['state']} (attempt {final['attempt']}) but step 1 is {steps[1]['status']!r}: "
            "the tool's outcome was received and then lost"
        )
    else:
        assert final["state"] in ("failed", "interrupted"), final


def test_a_failed_background_flush_is_not_an_unretrieved_task_exception(tmp_path: Path, fail_done_once: Any) -> None:
    """Bug at 171d862: asyncio reported 'Task exception was never retrieved' for the flush."""
    fail_done_once(DISK_FULL)
    with engine_for(tmp_path, [SEPARATE]) as engine:
        _, _, reports = run_once(engine)
    assert not [r for r in reports if "never retrieved" in r], reports


def test_a_failed_background_flush_fails_the_next_step(tmp_path: Path, fail_done_once: Any) -> None:
    """Checked and correct: a step after a failed flush is not answered and the run is
    interrupted; the outcome the agent reported is journaled when the attempt ends (the
    disk had room again), so the retry replays it instead of running the tool twice."""
    fail_done_once(DISK_FULL)
    script = [*START, ["send", DONE1], ["sleep", 0.5], ["send", STEP2], ["recv"], ["send", FINISH], ["wait_close"]]
    replay = [["send", HELLO], ["recv", "welcome"], ["send", STEP1], ["recv", "result"]]
    retry = [*replay, ["send", STEP2], ["recv", "result"], ["send", FINISH], ["wait_close"]]
    with engine_for(tmp_path, [script, retry]) as engine:
        final, steps, _ = run_once(engine)
    assert final["state"] == "succeeded" and final["attempt"] == 2, final
    assert steps[1]["status"] == "done" and steps[1]["executions"] == 1
    assert steps[2]["status"] == "done"


def test_a_done_still_lingering_when_the_stream_ends_is_journaled(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Bug at f62b1dd: a done held for the next step (DONE_LINGER) was dropped when the child's
    stream ended before the linger passed: step 1 stayed 'started' and the retry ran it again."""
    monkeypatch.setattr("corral.steps.DONE_LINGER", 0.5)
    second = [["send", HELLO], ["recv", "welcome"], ["send", STEP1], ["recv", "result"], ["send", FINISH]]
    with engine_for(tmp_path, [[*START, ["send", DONE1], ["exit"]], [*second, ["wait_close"]]]) as engine:
        final, steps, _ = run_once(engine)
    assert final["state"] == "succeeded" and final["attempt"] == 2, final
    assert steps[1]["status"] == "done" and steps[1]["executions"] == 1


# --------------------------------------------------------------------------- when a done becomes durable


def _status_while_agent_thinks(tmp_path: Path, after_done: list[dict[str, Any]]) -> str:
    """Step 1's status 1.5 s after its done arrived, while the agent computes for 4 s."""
    script = [*START, ["burst", [DONE1, *after_done]], ["sleep", 4], ["send", FINISH], ["wait_close"]]
    with engine_for(tmp_path, [script]) as engine:

        async def main() -> str:
            run = await engine.create_run("a")
            task = asyncio.create_task(engine.execute(run["id"]))
            records = engine.records
            while (await engine.writer.run(lambda txn: records.get_step(txn, run["id"], 1))) is None:
                await asyncio.sleep(0.02)  # exec is sent right after 'started' commits; done follows at once
            await asyncio.sleep(1.5)
            status = (await engine.writer.run(lambda txn: records.get_step(txn, run["id"], 1)))["status"]
            final = await task
            assert final["state"] == "succeeded", final
            return str(status)

        return asyncio.run(main())


def test_a_done_alone_is_durable_while_the_agent_thinks(tmp_path: Path) -> None:
    """Checked and correct: nothing buffered behind the done, so it is flushed at once."""
    assert _status_while_agent_thinks(tmp_path, []) == "done"


def test_a_done_followed_by_a_log_is_durable_while_the_agent_thinks(tmp_path: Path) -> None:
    """Bug at 171d862: _on_done skipped the flush whenever FrameReader.has_frame() was true, but
    a buffered 'log' is followed by no write: the done waited, not durable, for as long as the
    agent thought (a kill -9 of the daemon in that window lost it)."""
    assert _status_while_agent_thinks(tmp_path, [LOG]) == "done"


@pytest.mark.parametrize("together", [False, True], ids=["done-then-step", "done-and-step-in-one-read"])
def test_done_is_durable_before_the_next_step_is_answered(tmp_path: Path, together: bool) -> None:
    """Checked and correct: the child itself reads the store when step 2's result arrives."""
    probe = tmp_path / "probe.txt"
    store = str(tmp_path / "home" / "store")
    send = [["burst", [DONE1, STEP2]]] if together else [["send", DONE1], ["sleep", 0.3], ["send", STEP2]]
    script = [*START, *send, ["recv", "result"], ["probe", store, 1, str(probe)], ["send", FINISH], ["wait_close"]]
    with engine_for(tmp_path, [script]) as engine:
        final, steps, reports = run_once(engine)
    assert final["state"] == "succeeded", final
    assert probe.read_text() == "done"
    assert steps[1]["status"] == "done" and steps[2]["status"] == "done" and not reports


@pytest.mark.parametrize("together", [False, True], ids=["done-then-finish", "done-and-finish-in-one-read"])
def test_the_last_done_is_durable_before_the_run_succeeds(tmp_path: Path, together: bool) -> None:
    send = [["burst", [DONE1, FINISH]]] if together else [["send", DONE1], ["sleep", 0.3], ["send", FINISH]]
    with engine_for(tmp_path, [[*START, *send, ["wait_close"]]]) as engine:
        final, steps, reports = run_once(engine)
    assert final["state"] == "succeeded" and final["steps"] == 1
    assert steps[1]["status"] == "done" and steps[1]["value"] == {"a": 1, "b": 1} and not reports


@pytest.mark.parametrize("together", [False, True], ids=["done-then-exit", "done-and-eof-together"])
def test_a_child_dying_right_after_done_keeps_the_done(tmp_path: Path, together: bool) -> None:
    """Checked and correct: EOF after done is a crash, the done is settled before the run is
    interrupted, and the resumed attempt gets the result from the journal (tool not re-run)."""
    first = [*START, ["send", DONE1], *([] if together else [["sleep", 0.2]]), ["exit"]]
    second = [
        ["send", HELLO],
        ["recv", "welcome"],
        ["send", STEP1],
        ["recv", "result"],
        ["send", FINISH],
        ["wait_close"],
    ]
    with engine_for(tmp_path, [first, second]) as engine:
        final, steps, reports = run_once(engine)
    assert final["state"] == "succeeded" and final["attempt"] == 2, final
    assert steps[1]["status"] == "done" and steps[1]["executions"] == 1 and steps[1]["attempt"] == 1
    assert not reports


def test_no_hello_in_time_is_a_crash_that_resumes(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """Bug at 171d862: the run failed (protocol) instead of being resumed as a crash."""
    monkeypatch.setattr("corral.attempt.HELLO_TIMEOUT", 0.3)
    silent = [["sleep", 3], ["exit"]]
    prompt = [["send", HELLO], ["recv", "welcome"], ["send", FINISH], ["wait_close"]]
    with engine_for(tmp_path, [silent, prompt]) as engine:
        final, _, _ = run_once(engine)
    assert final["state"] == "succeeded" and final["attempt"] == 2, final


# --------------------------------------------------------------------------- processes


def test_kill_tree_does_not_trust_the_watchdogs_shared_scan(tmp_path: Path) -> None:
    """Checked and correct: a descendant born after the watchdog's (cached) scan, in a session of
    its own (out of killpg's reach), is still killed: kill_tree scans afresh."""
    pidfile = tmp_path / "grandchild.pid"

    async def main() -> int:
        control = ProcessControl()
        script = f"sleep 0.3; setsid sleep 60 & echo $! > {pidfile}; sleep 60"
        process = await asyncio.create_subprocess_exec("sh", "-c", script, start_new_session=True)
        child = Child(process, wire=None, cgroup=None)  # type: ignore[arg-type]  # only its processes matter here
        control.run_processes(child, max_age=60.0)  # the watchdog's scan, cached for a long time
        while not pidfile.exists() or not pidfile.read_text().strip():
            await asyncio.sleep(0.02)
        grandchild = int(pidfile.read_text())
        control.kill_tree(child)
        await process.wait()
        return grandchild

    grandchild = asyncio.run(main())
    deadline = time.monotonic() + 2
    while time.monotonic() < deadline:
        try:
            if psutil.Process(grandchild).status() == psutil.STATUS_ZOMBIE:
                break
        except psutil.NoSuchProcess:
            break
        time.sleep(0.02)
    else:
        psutil.Process(grandchild).kill()
        pytest.fail("a descendant born after the cached scan outlived kill_tree")


REAP = textwrap.dedent(
    """
    import json, subprocess, time
    import psutil
    from corral.sandbox.processes import ProcessControl

    control = ProcessControl()
    applied = control.prepare()  # what `corral up` does first
    # What a plugin does in the daemon, e.g. an alert sink on corral_run_finished:
    running = subprocess.Popen(["sleep", "30"])
    finished = subprocess.Popen(["sh", "-c", "exit 3"])
    while psutil.Process(finished.pid).status() != psutil.STATUS_ZOMBIE:
        time.sleep(0.01)
    killed = control.reap_orphans()  # the daemon's housekeeping, every second
    time.sleep(0.3)
    result = {
        "applied": applied,
        "killed": killed,
        "running_alive": running.poll() is None,
        "finished_status": finished.wait(),
    }
    running.kill()
    control.close()
    print(json.dumps(result))
    """
)


@pytest.fixture(scope="module")
def reaped() -> dict[str, Any]:
    # In a process of its own: prepare() makes the caller a subreaper for good.
    out = subprocess.run([sys.executable, "-c", REAP], capture_output=True, text=True, timeout=60, check=True)
    result: dict[str, Any] = json.loads(out.stdout)
    if "subreaper" not in result["applied"]:
        pytest.skip("not a subreaper here: reap_orphans does nothing")
    return result


def test_reap_orphans_leaves_the_daemons_other_children_alone(reaped: dict[str, Any]) -> None:
    assert reaped["running_alive"], f"reap_orphans killed {reaped['killed']}"


def test_reap_orphans_does_not_steal_another_waiters_exit_status(reaped: dict[str, Any]) -> None:
    assert reaped["finished_status"] == 3
