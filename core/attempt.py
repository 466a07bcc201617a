"""One attempt of a run: spawn the agent's process, answer its requests, end it.

An attempt ends in exactly one of: the agent finished (succeeded or failed), it was
killed for a limit, it broke the protocol, it crashed, the daemon is stopping, or the
journal needs a human. Whatever happens, the whole process tree is killed before the
attempt returns, and the daemon carries on.
"""

from __future__ import annotations

import asyncio
import signal
import time
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import jsonschema_rs

from corral import wire
from corral.errors import ProtocolError, StoreError
from corral.journal import Decision, Journal
from corral.output import RateLimit, pump
from corral.states import RunState

if TYPE_CHECKING:
    from corral.config import AgentConfig
    from corral.engine import Engine
    from corral.sandbox.processes import Child

HELLO_TIMEOUT = 30.0
FRAME_DEADLINE = 10.0
REPLY_TIMEOUT = 10.0
WATCH_INTERVAL = 0.25
RESERVED_LOG_FIELDS = frozenset({"event", "level", "timestamp", "source", "agent", "run_id", "trace_id", "seq"})
"""Fields corral sets on every line; an agent's field of the same name is kept as ``agent_<name>``."""
LIMIT_SIGNALS = {
    signal.SIGXCPU: "CPU time limit exceeded (limits.cpu_seconds)",
    signal.SIGXFSZ: "file size limit exceeded (limits.file_size_mb)",
}


@dataclass
class Outcome:
    """How an attempt ended; ``retry`` means the engine may start another attempt."""

    state: RunState
    error: dict[str, Any] | None = None
    result: Any = None
    retry: bool = False
    hold_reason: str | None = None


def failure(kind: str, message: str) -> dict[str, Any]:
    return {"kind": kind, "message": message}


class _Stop(Exception):
    """Internal: the conversation is over with this outcome."""

    def __init__(self, outcome: Outcome) -> None:
        self.outcome = outcome


class Attempt:
    """Drives one child process through the wire protocol."""

    def __init__(
        self, engine: Engine, run: dict[str, Any], agent: AgentConfig, log: Any, snapshot: dict[str, Any]
    ) -> None:
        self.engine = engine
        self.run = run
        self.snapshot = snapshot
        self.agent = agent
        self.log = log
        self.journal = Journal(engine.records, run["id"], agent.name, run["attempt"])
        self.granted = {name: engine.plugins.tools.get(name) for name in agent.tools}
        self.next_seq = 1
        self.kill_reason: str | None = None
        self.output_limit = RateLimit()
        self.cpu_seen = 0.0
        self.frames: wire.FrameReader | None = None
        self.unsent_done: list[tuple[int, bool, Any, dict[str, Any] | None]] = []
        self.unreported: list[dict[str, Any]] = []
        self.flushing: asyncio.Future[Any] | None = None
        self.executing: int | None = None  # the step told to run (exec) whose done is awaited

    async def execute(self, child: Child) -> Outcome:
        pumps = [
            asyncio.create_task(pump(child.process.stdout, "stdout", self.log, self.output_limit)),
            asyncio.create_task(pump(child.process.stderr, "stderr", self.log, self.output_limit)),
        ]
        watchdog = asyncio.create_task(self._watch(child))
        wall = self.agent.limits.wall_seconds
        try:
            outcome = await asyncio.wait_for(self._converse(child), wall)
        except TimeoutError:
            outcome = Outcome(
                RunState.FAILED, failure("limit", f"wall time limit of {wall:g}s exceeded (limits.wall_seconds)")
            )
        except ProtocolError as exc:
            outcome = Outcome(
                RunState.FAILED, failure("protocol", f"the agent's process broke the wire protocol: {exc}")
            )
        except StoreError as exc:
            outcome = Outcome(RunState.INTERRUPTED, failure("store", str(exc)), retry=True)
        except _Stop as stop:
            outcome = stop.outcome
        finally:
            watchdog.cancel()
            self.engine.processes.kill_tree(child)
            child.wire_writer.close()
            try:
                await asyncio.wait_for(child.process.wait(), 5)
            except TimeoutError:
                self.log.error("agent process did not exit after SIGKILL", pid=child.pid)
            self.engine.processes.forget(child)
            await asyncio.wait(pumps, timeout=2)
        try:
            await self._settle()  # outcomes reported before a crash still count
        except (_Stop, StoreError) as exc:
            self.log.error("tool outcomes could not be journaled", error=str(exc))
        return outcome

    async def _settle(self) -> None:
        """Make every reported outcome durable; a failure to do so is the run's outcome."""
        if self.flushing is not None:
            flushing, self.flushing = self.flushing, None
            await flushing
        if self.unsent_done:
            await self._write(None)
        self._flush_reports()

    async def _watch(self, child: Child) -> None:
        """Memory watchdog (psutil RSS of the whole tree); note every descendant and the CPU used."""
        limit_mb = self.agent.limits.memory_mb
        while True:
            await asyncio.sleep(WATCH_INTERVAL)
            tree = self.engine.processes.run_processes(child, max_age=WATCH_INTERVAL / 2)
            child.known.update(p for p in tree if p.pid != child.pid)
            self.cpu_seen = max(self.cpu_seen, self.engine.processes.cpu_seconds(child.pid))
            if limit_mb is None:
                continue
            rss = self.engine.processes.tree_rss(tree)
            if rss > limit_mb * 2**20:
                self.kill_reason = (
                    f"memory limit exceeded: {rss // 2**20} MiB resident across the run's "
                    f"processes > {limit_mb} MiB (limits.memory_mb)"
                )
                self.engine.processes.kill_tree(child)
                return

    async def _send(self, child: Child, message: dict[str, Any]) -> None:
        child.wire_writer.write(wire.encode(message))
        if child.wire_writer.transport.get_write_buffer_size() == 0:
            return  # written straight into the pipe: nothing to wait for
        try:
            await asyncio.wait_for(child.wire_writer.drain(), REPLY_TIMEOUT)
        except TimeoutError:
            raise ProtocolError(f"the agent stopped reading replies for {REPLY_TIMEOUT:g}s") from None
        except (ConnectionError, BrokenPipeError):
            pass  # the process died; reading its end of the wire reports how

    async def _read(self, child: Child, timeout: float | None = None) -> dict[str, Any] | None:
        if self.frames is None:
            self.frames = wire.FrameReader(
                child.wire_reader, max_bytes=self.engine.config.frame_max_bytes, deadline=FRAME_DEADLINE
            )
        return await self.frames.next(timeout)

    async def _converse(self, child: Child) -> Outcome:
        try:
            hello = await self._read(child, HELLO_TIMEOUT)
        except TimeoutError:
            return await self._crashed(child, f"no hello within {HELLO_TIMEOUT:g}s of spawning")
        if hello is None:
            return await self._crashed(child, "exited before saying hello")
        if hello["t"] != "hello" or hello["v"] != wire.VERSION:
            raise ProtocolError(f"expected hello v{wire.VERSION} first, got {hello['t']!r}")
        self.run["applied"] = sorted(set(self.run.get("applied", [])) | set(hello.get("applied", [])))
        await self._send(
            child, {"t": "welcome", "v": wire.VERSION, "run": self.engine.welcome(self.run, self.agent, self.snapshot)}
        )
        while True:
            message = await self._read(child)
            if message is None:
                return await self._crashed(child, "exited without finishing")
            handler = getattr(self, f"_on_{message['t']}", None)
            if handler is None:
                raise ProtocolError(f"{message['t']!r} is not a message a child may send now")
            outcome = await handler(child, message)
            if outcome is not None:
                return outcome

    async def _crashed(self, child: Child, what: str) -> Outcome:
        try:
            code = await asyncio.wait_for(child.process.wait(), 5)
        except TimeoutError:
            code = None
        if self.kill_reason:
            return Outcome(RunState.FAILED, failure("limit", self.kill_reason))
        limit = self._limit_hit(child, code)
        if limit:
            return Outcome(RunState.FAILED, failure("limit", limit))
        if code is not None and code < 0:
            sig = signal.Signals(-code)
            detail = f"killed by {sig.name}"
        else:
            detail = f"exit status {code}"
        message = f"the agent's process {what} ({detail})"
        return Outcome(RunState.INTERRUPTED, failure("crash", message), retry=True)

    def _limit_hit(self, child: Child, code: int | None) -> str | None:
        """Which limit, if any, explains how the process died."""
        if code is None or code >= 0:
            return None
        sig = signal.Signals(-code)
        if sig in LIMIT_SIGNALS:
            return LIMIT_SIGNALS[sig]
        cpu = self.agent.limits.cpu_seconds
        if sig is signal.SIGKILL and cpu and self.cpu_seen >= cpu * 0.9:
            return f"CPU time limit of {cpu}s exceeded (limits.cpu_seconds); the agent ignored SIGXCPU"
        if sig is signal.SIGKILL and self.engine.processes.cgroup_oom_killed(child):
            mb = self.agent.limits.memory_mb
            return f"memory limit exceeded: the kernel killed the run's cgroup at {mb} MiB (limits.memory_mb)"
        return None

    # ------------------------------------------------------------------ messages

    async def _on_log(self, child: Child, message: dict[str, Any]) -> None:
        level = message["level"] if message["level"] in wire.LOG_LEVELS else "info"
        if self.output_limit.allow(len(message["event"])):
            fields = {(f"agent_{k}" if k in RESERVED_LOG_FIELDS else k): v for k, v in message["fields"].items()}
            if self.next_seq > 1:  # the step the agent last asked for: frames arrive in order
                fields["seq"] = self.next_seq - 1
            getattr(self.log, level)(message["event"][:512], source="agent", **fields)

    async def _on_done(self, child: Child, message: dict[str, Any]) -> None:
        """Journal a tool's outcome: with the next step when that is already here (one
        commit for both), else right away, so it never waits on the agent's thinking."""
        seq = message["seq"]
        if seq != self.executing:
            raise ProtocolError(f"done for step {seq}, but no tool was told to run it (exec'd: {self.executing})")
        self.executing = None
        self.unsent_done.append((seq, message["ok"], message.get("value"), message.get("error")))
        following = self.frames.peek() if self.frames is not None else None
        if following is None or following["t"] not in ("step", "finish"):
            self.flushing = asyncio.ensure_future(self._write(None))

    async def _on_step(self, child: Child, message: dict[str, Any]) -> Outcome | None:
        seq, kind, name, args = message["seq"], message["kind"], message["name"], message["args"]
        if seq != self.next_seq:
            raise ProtocolError(f"step {seq} out of order; expected step {self.next_seq}")
        self.next_seq += 1
        if self.engine.draining:
            await self._send(
                child, {"t": "abort", "reason": "the daemon is stopping; this run resumes when it is back"}
            )
            return Outcome(RunState.INTERRUPTED, failure("stopped", "the daemon stopped; the run will resume"))
        journal = self.journal
        if kind == "state":
            if name not in ("set", "delete") or not isinstance(args.get("key"), str):
                raise ProtocolError(f"state step must be set/delete with a string key, got {name!r}")
            decision = await self._write(lambda txn: journal.state(txn, seq, name, args))
        elif kind == "tool":
            refusal = self._refusal(name, args)
            if refusal:
                decision = await self._write(lambda txn: journal.refuse(txn, seq, "tool", name, args, refusal))
            else:
                spec = self.granted[name]
                assert spec is not None
                decision = await self._write(
                    lambda txn: journal.tool(txn, seq, name, args, spec.idempotent, spec.reconcile is not None)
                )
        else:
            raise ProtocolError(f"unknown step kind {kind!r}")
        return await self._answer(child, seq, decision)

    async def _on_reconciled(self, child: Child, message: dict[str, Any]) -> Outcome | None:
        seq, journal = message["seq"], self.journal
        decision = await self._write(lambda txn: journal.reconciled(txn, seq, message["outcome"], message.get("value")))
        return await self._answer(child, seq, decision)

    async def _on_finish(self, child: Child, message: dict[str, Any]) -> Outcome:
        await self._settle()
        if message["ok"]:
            return Outcome(RunState.SUCCEEDED, result=message.get("value"))
        error = dict(message.get("error") or {})
        error.setdefault("kind", "agent")
        return Outcome(RunState.FAILED, error)

    async def _on_hello(self, child: Child, message: dict[str, Any]) -> None:
        raise ProtocolError("hello sent twice")

    # ------------------------------------------------------------------ helpers

    async def _write(self, job: Any) -> Decision:
        """One writer job: the outcomes reported since the last write, then ``job``."""
        if job is not None and self.flushing is not None:
            flushing, self.flushing = self.flushing, None
            await flushing  # a failed outcome write fails this step too, in order
        journal, dones = self.journal, self.unsent_done
        self.unsent_done = []  # no await between taking them and queueing the job

        def combined(txn: Any) -> tuple[list[dict[str, Any] | None], Decision]:
            finished = [journal.done(txn, seq, ok, value, error) for seq, ok, value, error in dones]
            return finished, job(txn) if job is not None else None

        try:
            finished, decision = await self.engine.writer.run(combined)
        except StoreError:
            self.unsent_done = dones + self.unsent_done  # left for the attempt's last settle
            raise
        except Exception as exc:  # e.g. a value too deep to pack, a key LMDB cannot hold
            self.unsent_done = dones + self.unsent_done
            reason = f"({type(exc).__name__}: {exc})"
            if job is not None:
                message = f"step {self.next_seq - 1} cannot be journaled {reason}; nothing was executed"
            else:
                message = f"a finished tool's outcome cannot be journaled {reason}"
            raise _Stop(Outcome(RunState.FAILED, failure("journal", message))) from None
        self.unreported += [entry for entry in finished if entry is not None]
        return decision

    def _flush_reports(self) -> None:
        """Log and announce durable steps; done after the reply, off the step's latency."""
        reports, self.unreported = self.unreported, []
        for entry in reports:
            self._report_step(entry, replayed=False)

    def _refusal(self, name: str, args: dict[str, Any]) -> str | None:
        if name not in self.granted:
            granted = ", ".join(sorted(self.granted)) or "none"
            return f"tool {name!r} is not granted to agent {self.agent.name!r}; granted tools: {granted}"
        spec = self.granted[name]
        if spec is None:
            return (
                f"tool {name!r} is granted but no loaded plugin provides it; "
                "run `corral check` to see which plugin failed"
            )
        validator = self.engine.validator(spec)
        if validator.is_valid(args):
            return None
        problems = sorted(validator.iter_errors(args), key=lambda e: [str(p) for p in e.instance_path])
        if problems:
            details = "; ".join(_explain(e) for e in problems[:5])
            return f"invalid arguments for tool {name!r}: {details}"
        return None

    async def _answer(self, child: Child, seq: int, decision: Decision) -> Outcome | None:
        entry = decision.entry
        if decision.action in ("replay", "result"):
            reply: dict[str, Any] = {
                "t": "result",
                "seq": seq,
                "ok": entry["ok"],
                "replayed": decision.action == "replay",
            }
            if entry["ok"]:
                reply["value"] = entry.get("value")
            else:
                reply["error"] = entry.get("error") or {}
            await self._send(child, reply)
            self._flush_reports()
            self._report_step(entry, replayed=decision.action == "replay")
            return None
        if decision.action in ("exec", "reconcile"):
            if decision.action == "exec":
                self.executing = seq
            await self._send(child, {"t": decision.action, "seq": seq, "key": entry["key"]})
            self._flush_reports()
            return None
        if decision.action == "protocol":
            raise ProtocolError(decision.message)
        await self._send(child, {"t": "abort", "reason": decision.message})
        if decision.action == "hold":
            self.log.warning("run on hold", seq=seq, reason=decision.message)
            return Outcome(RunState.ON_HOLD, failure("outcome_unknown", decision.message), hold_reason=decision.message)
        return Outcome(RunState.FAILED, failure("nondeterminism", decision.message))

    def _report_step(self, entry: dict[str, Any], *, replayed: bool) -> None:
        duration = (entry.get("ended") or time.time()) - entry.get("started", time.time())
        self.log.info(
            "step",
            seq=entry["seq"],
            kind=entry["kind"],
            name=entry["name"],
            ok=entry.get("ok"),
            replayed=replayed,
            duration_ms=round(duration * 1000, 3),
            **({"error": entry["error"].get("message")} if not entry.get("ok") and entry.get("error") else {}),
        )
        self.engine.notify("corral_step_done", run=dict(self.run), step={**entry, "replayed": replayed})


def _explain(error: jsonschema_rs.ValidationError) -> str:
    where = "/".join(str(p) for p in error.instance_path) or "arguments"
    return f"{where}: {error.message}"
