"""A real engine against a child whose side of the wire is scripted frame by frame.

The engine is the real one (real LMDB store, real writer thread, real ``Attempt``); only
the process it spawns is replaced, by a Python child that plays a script of frames, so
the timing that matters (``done`` alone, ``done`` glued to the next frame, EOF right
after ``done``, no ``hello`` at all) is exact instead of left to the scheduler.
"""

from __future__ import annotations

import asyncio
import contextlib
import gc
import json
import os
import sys
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Any

from corral.config import AgentConfig, CorralConfig, Limits
from corral.daemon.host import Host
from corral.observe.logs import LogFiles
from corral.pluginmanager import load_plugins
from corral.run.childwire import ChildWire
from corral.run.engine import Engine
from corral.sandbox.processes import Child, ProcessControl
from corral.store import Store

# The child: plays its script (a JSON list of [op, *args]) over the two pipes it is given.
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

# Frames the scripts send; START is an attempt up to the daemon's "exec" of step 1.
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
    """An engine with one agent ``a`` (tool ``word_count``) whose attempts play ``scripts`` in turn."""
    code = tmp_path / "agents"
    code.mkdir(exist_ok=True)
    (code / "a.py").write_text("def run(ctx):\n    return None\n")
    agent = AgentConfig(
        name="a", code=code, entry="a:run", tools=("word_count",), limits=Limits(memory_mb=None, wall_seconds=60)
    )
    with engine_of(CorralConfig(path=None, home=tmp_path / "home", agents={"a": agent}), scripts) as engine:
        yield engine


@contextlib.contextmanager
def engine_of(config: CorralConfig, scripts: list[list[Any]]) -> Iterator[Engine]:
    """The engine ``corral up`` composes for ``config``, its attempts playing ``scripts`` in turn."""
    logs = LogFiles(config.log_dir)
    store = Store.open(config.home / "store")
    composed = Host.compose(config, store, load_plugins(), logs, processes=ScriptedProcesses(scripts))
    try:
        yield composed.engine
    finally:
        composed.close()
        store.close()
        logs.close()


def steps_of(engine: Engine, run_id: str) -> dict[int, dict[str, Any]]:
    """The run's journal, by ``seq``."""
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
