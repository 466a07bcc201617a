"""One attempt of a run: spawn the agent's process, answer its requests, end it.

An attempt ends in exactly one of: the agent finished (succeeded or failed), it was
killed for a limit, it broke the protocol, it crashed, the daemon is stopping, or the
journal needs a human. Whatever happens, the whole process tree is killed before the
attempt returns, and the daemon carries on. The step path itself (journal, answer) runs
on the store writer's thread (:mod:`corral.run.steps`); this side handles everything else.
"""

from __future__ import annotations

import asyncio
import secrets
import signal
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from corral import wire
from corral.config.mcp import plugin_grants
from corral.errors import ProtocolError, StoreError
from corral.guardrails.guards import Guards
from corral.run import modelcalls, quota
from corral.run.budget import Tally
from corral.run.journal import Journal
from corral.run.mcptools import McpCall, McpTools
from corral.run.outcome import Outcome, RunEnded, failure, resumable
from corral.run.output import (
    DOOR_TOKEN_PLACEHOLDER,
    LINE_OVERHEAD,
    RateLimit,
    bounded_fields,
    hide,
    json_size,
    pump,
)
from corral.run.replay import ReplayPath, ReplayReport
from corral.run.steps import Guarding, Steps
from corral.run.toolretries import ToolCalls
from corral.sandbox import command
from corral.sandbox.policy import tmpdir
from corral.states import RunState

if TYPE_CHECKING:
    from corral.breaker import Breakers
    from corral.config import AgentConfig
    from corral.config.mcp import McpServer
    from corral.config.tools import ToolConfig
    from corral.run.approvals import Approvals
    from corral.run.modelaccess import ModelAccess
    from corral.sandbox.processes import Child, ProcessControl
    from corral.store import Records, Writer
    from corral.tools import ToolSpec

HELLO_TIMEOUT = 30.0
SETTLE_TIMEOUT = 2.0
WATCH_INTERVAL = 0.25
RESERVED_LOG_FIELDS = frozenset({"event", "level", "timestamp", "source", "agent", "run_id", "trace_id", "seq", "self"})
"""Fields corral sets on every line, and the logger's own parameter (``self``); an agent's
field of the same name is kept as ``agent_<name>``."""
KERNEL_PROCESS_CAPS = frozenset({"pids.max", "rlimit:processes"})
"""What, in a run's ``applied`` list, means the kernel itself caps its processes (else the watchdog counts)."""
LIMIT_SIGNALS = {
    signal.SIGXCPU: "CPU time limit exceeded (limits.cpu_seconds)",
    signal.SIGXFSZ: "file size limit exceeded (limits.file_size_mb)",
}


@dataclass(frozen=True)
class Shared:
    """What an attempt uses of the daemon, handed to it by the engine (and nothing more)."""

    writer: Writer
    records: Records
    processes: ProcessControl
    approvals: Approvals
    models: ModelAccess
    tools: Mapping[str, ToolSpec]
    guardrails: Any
    """The guardrail plugins (:class:`corral.guardrails.guards.Guards` starts a run's set from them)."""
    validator: Callable[[ToolSpec], Any]
    redact: Callable[[Any], Any]
    draining: Callable[[], bool]
    """True once the daemon is stopping."""
    cancelling: Callable[[str], bool]
    """Whether a run is being cancelled."""
    pause: modelcalls.Pause
    max_tool_args_bytes: int
    breakers: Breakers
    """The daemon's circuit breakers (a tool downstream's or an HTTP MCP server's is shared by every agent)."""
    tool_config: Mapping[str, ToolConfig]
    """``[tools.NAME]``: the tools' retries and breaker settings."""
    mcp: Mapping[str, McpServer] = field(default_factory=dict)
    """``[mcp.NAME]``: the MCP servers agents may be granted tools of."""


class Attempt:
    """Drives one child process through the wire protocol."""

    def __init__(
        self,
        shared: Shared,
        run: dict[str, Any],
        agent: AgentConfig,
        log: Any,
        welcome: dict[str, Any],
        workdir: Path,
        mcp_headers: Mapping[str, dict[str, str]] | None = None,
    ) -> None:
        self.shared = shared
        self.run = run
        self.welcome = welcome
        """What the child learns of its run once it has said hello (``Engine.welcome``)."""
        self.workdir = workdir
        self.agent = agent
        self.log = log
        self.journal = Journal(
            shared.records,
            run["id"],
            agent.name,
            run["attempt"],
            journal_mb=agent.limits.journal_mb,
            state_value_kb=agent.limits.state_value_kb,
            state_mb=agent.limits.state_mb,
            on_divergence=agent.on_divergence,
        )
        self.door_token = f"corral-{secrets.token_urlsafe(32)}"
        """The run's door token: made here, not in the child, so that the agent's log never
        shows it (a program that prints its environment, a line that logs it)."""
        self.welcome["door_token"] = self.door_token
        self.kill_reason: str | None = None
        self.disk_checked: asyncio.Future[str | None] = asyncio.get_running_loop().create_future()
        """The first scan of the workdir: why it is over its quota, or None. The agent is not
        welcomed (none of its code runs) before it is known."""
        self.output_limit = RateLimit()
        self.cpu_seen = 0.0
        self.steps: Steps | ReplayPath | None = None
        self.granted = {name: shared.tools.get(name) for name in plugin_grants(agent.tools, shared.mcp)}
        self.models = modelcalls.ModelCaller(
            shared.models,
            shared.writer,
            shared.records,
            agent,
            self.journal,
            log,
            self.granted,
            Tally.from_dict(run.get("spent") or {}),
            pause=shared.pause,
            draining=shared.draining,
            redact=shared.redact,
            stopped=lambda: self.kill_reason is not None or shared.cancelling(run["id"]),
            after=self._model_step_done,
            trace_id=run["trace_id"],
        )
        self.mcp = McpTools(
            shared.mcp,
            agent.tools,
            self.granted,
            log,
            writer=shared.writer,
            journal=self.journal,
            redact=shared.redact,
            after=self._model_step_done,
            breakers=shared.breakers,
            headers=mcp_headers,
        )
        """The agent's MCP servers: the tools their lists offer join ``granted`` as they are read."""
        if self.mcp.servers:
            self.welcome["mcp"] = self.mcp.welcome()

    def _model_step_done(self, entry: dict[str, Any]) -> None:
        """The guards' after-step check for a step the daemon made (a model call, an HTTP MCP call)."""
        outcome = self.steps.after_step(entry) if self.steps is not None else None
        if outcome is not None:
            raise RunEnded(outcome)

    def _step_path(self, child: Child) -> Steps | ReplayPath:
        """What serves the child's steps: the journal's rules (a replay answers from it alone)."""
        shared = self.shared
        return Steps(
            wire=child.wire,
            journal=self.journal,
            agent=self.agent.name,
            granted=self.granted,
            validator=shared.validator,
            draining=shared.draining,
            log=self.log,
            model_refusal=lambda name, args: modelcalls.refusal(self.agent, self.granted, name, args),
            max_args_bytes=shared.max_tool_args_bytes,
            redact=shared.redact,
            mcp=self.mcp,
            calls=ToolCalls(self.granted, shared.tool_config, shared.breakers, self.agent.sandbox.reaches),
            guarding=Guarding(
                Guards.start(shared.guardrails, self.run, self.agent, self.log),
                shared.approvals,
                self.run,
                self.agent.guardrails.approval_timeout,
            ),
        )

    async def execute(self, child: Child) -> Outcome:
        shared = self.shared
        steps = self.steps = self._step_path(child)
        child.wire.serve(steps)
        shared.writer.attach(child.wire)
        stdout, stderr = child.process.stdout, child.process.stderr
        assert stdout is not None and stderr is not None, "agents are spawned with both streams piped"
        pumps = [
            asyncio.create_task(pump(stdout, "stdout", self.log, self.output_limit, self._redact)),
            asyncio.create_task(pump(stderr, "stderr", self.log, self.output_limit, self._redact)),
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
        except RunEnded as ended:
            outcome = ended.outcome
        finally:
            watchdog.cancel()
            shared.processes.kill_tree(child)
            try:
                await asyncio.wait_for(child.wait(), 5)
            except TimeoutError:
                self.log.error("agent process did not exit after SIGKILL", pid=child.pid)
            await asyncio.get_running_loop().run_in_executor(
                None, command.remove_folders, tmpdir(self.workdir), self.run["id"]
            )  # a killed command's input; off the loop, as the agent chose how many files it holds
            await self._settle(child)
            await shared.writer.detach(child.wire)
            child.wire.close()
            if steps.unjournaled:
                try:
                    await shared.writer.run(steps.settle)
                except Exception as exc:  # noqa: BLE001 - the outcome already says the run did not finish
                    self.log.error("tool outcomes could not be journaled", error=f"{type(exc).__name__}: {exc}")
            shared.processes.forget(child)
            await asyncio.wait(pumps, timeout=2)
        return outcome

    def _redact(self, value: Any) -> Any:
        """``value`` with the daemon's secrets and this run's door token hidden."""
        return hide(self.shared.redact(value), self.door_token, DOOR_TOKEN_PLACEHOLDER)

    async def _settle(self, child: Child) -> None:
        """Read the wire to its end: what the child reported before it died still counts (the
        writer thread journals each ``done`` before the stream's end reaches this side)."""
        if child.wire.finished:
            return
        deadline = asyncio.get_running_loop().time() + SETTLE_TIMEOUT
        while (remaining := deadline - asyncio.get_running_loop().time()) > 0:
            try:
                message = await child.wire.next(remaining)
            except (TimeoutError, ProtocolError, RunEnded):
                return
            except Exception:  # noqa: BLE001 - the writer failed on this wire and has logged it: the run ends as it would
                return
            if message is None:
                return
            if message["t"] == "log":
                await self._on_log(child, message)

    async def _watch(self, child: Child) -> None:
        """The run's watchdogs: its processes every 0.25 s, its workdir's disk use less often."""
        async with asyncio.TaskGroup() as watchdogs:
            watchdogs.create_task(self._watch_processes(child))
            watchdogs.create_task(self._watch_disk(child))

    def _over_limit(self, child: Child, reason: str) -> None:
        """End the run for ``reason`` (kind ``limit``): kill its whole tree now."""
        if self.kill_reason is None:
            self.kill_reason = reason
        self.shared.processes.kill_tree(child)

    async def _watch_processes(self, child: Child) -> None:
        """Memory (psutil RSS of the whole tree) and, where the kernel does not cap it, the number
        of processes; note every descendant and the CPU used."""
        limit_mb, most = self.agent.limits.memory_mb, self.agent.limits.processes
        processes = self.shared.processes
        while True:
            await asyncio.sleep(WATCH_INTERVAL)
            tree = processes.run_processes(child, max_age=WATCH_INTERVAL / 2)
            child.known.update(p for p in tree if p.pid != child.pid)
            self.cpu_seen = max(self.cpu_seen, processes.cpu_seconds(child))
            if most is not None and len(tree) > most and not KERNEL_PROCESS_CAPS & set(self.run.get("applied", ())):
                self._over_limit(
                    child,
                    f"process limit exceeded: {len(tree)} processes in the run > {most} (limits.processes); "
                    "no cgroup pids.max or RLIMIT_NPROC applies to this run, so the daemon counts them",
                )
                return
            if limit_mb is None:
                continue
            rss = processes.tree_rss(tree)
            if rss > limit_mb * 2**20:
                self._over_limit(
                    child,
                    f"memory limit exceeded: {rss // 2**20} MiB resident across the run's "
                    f"processes > {limit_mb} MiB (limits.memory_mb)",
                )
                return

    async def _watch_disk(self, child: Child) -> None:
        """Scan the workdir (off the event loop) before the agent starts, then every second or
        so (:func:`corral.run.quota.next_scan`); over ``limits.disk_mb`` or ``disk_files``, kill the tree."""
        disk_mb, disk_files = self.agent.limits.disk_mb, self.agent.limits.disk_files
        if disk_mb is None and disk_files is None:
            self.disk_checked.set_result(None)
            return
        workdir = self.workdir
        try:
            while True:
                holders = [proc.pid for proc in self.shared.processes.run_processes(child, max_age=WATCH_INTERVAL)]
                usage = await asyncio.to_thread(quota.measure, workdir, disk_files, holders)
                starting = not self.disk_checked.done()
                reason = quota.excess(usage, disk_mb, disk_files, starting=starting)
                if starting:
                    self.disk_checked.set_result(reason)
                if reason is not None:
                    self._over_limit(child, reason)
                    return
                await asyncio.sleep(quota.next_scan(usage, disk_mb, disk_files))
        except Exception as exc:  # noqa: BLE001 - a failed scan must not stop the other watchdog
            self.log.error("the workdir's disk use cannot be measured", error=f"{type(exc).__name__}: {exc}")
        finally:
            if not self.disk_checked.done():  # cancelled, or the scan failed: do not hold the run back
                self.disk_checked.set_result(None)

    async def _converse(self, child: Child) -> Outcome:
        try:
            hello = await child.wire.next(HELLO_TIMEOUT)
        except TimeoutError:
            return await self._crashed(child, f"no hello within {HELLO_TIMEOUT:g}s of spawning")
        if hello is None:
            return await self._crashed(child, "exited before saying hello")
        if hello["t"] != "hello" or hello["v"] != wire.VERSION:
            raise ProtocolError(f"expected hello v{wire.VERSION} first, got {hello['t']!r}")
        self.run["applied"] = sorted(set(self.run.get("applied", [])) | set(hello.get("applied", [])))
        over_quota = await self.disk_checked
        if over_quota is not None:
            return Outcome(RunState.FAILED, failure("limit", over_quota))
        assert self.steps is not None
        self.steps.open = True
        child.wire.send({"t": "welcome", "v": wire.VERSION, "run": self.welcome})
        while True:
            message = await child.wire.next()
            if message is None:
                return await self._crashed(child, "exited without finishing")
            if isinstance(message, modelcalls.ModelCall):
                child.wire.send(await self.models.call(message))
                continue
            if isinstance(message, McpCall):
                child.wire.send(await self.mcp.call(message))
                continue
            kind = message["t"]
            if kind == "log":
                await self._on_log(child, message)
            elif kind == "finish":
                return await self._finished(message)
            elif kind == "hello":
                raise ProtocolError("hello sent twice")
            else:
                raise ProtocolError(f"{kind!r} is not a message a child may send now")

    async def _crashed(self, child: Child, what: str) -> Outcome:
        try:
            code = await asyncio.wait_for(child.wait(), 5)
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
        if sig is signal.SIGKILL and self.shared.processes.cgroup_oom_killed(child):
            mb = self.agent.limits.memory_mb
            return f"memory limit exceeded: the kernel killed the run's cgroup at {mb} MiB (limits.memory_mb)"
        return None

    # ------------------------------------------------------------------ messages

    async def _on_log(self, child: Child, message: dict[str, Any]) -> None:
        """Write a ``ctx.log`` line, charged to the attempt's output limit at the bytes it
        writes (its fields too: they are most of a flood)."""
        level = message["level"] if message["level"] in wire.LOG_LEVELS else "info"
        given = bounded_fields(message["fields"])
        fields = {(f"agent_{k}" if k in RESERVED_LOG_FIELDS else k): v for k, v in given.items()}
        event = message["event"][:512]
        event, fields = hide((event, fields), self.door_token, DOOR_TOKEN_PLACEHOLDER)
        if not self.output_limit.allow(len(event) + json_size(fields) + LINE_OVERHEAD):
            return
        if message.get("seq"):  # the step the agent last asked for, noted as the frame was read
            fields["seq"] = message["seq"]
        getattr(self.log, level)(event, source="agent", **fields)

    async def _finished(self, message: dict[str, Any]) -> Outcome:
        """The agent's own verdict. An exception right after a model step that failed for want
        of configuration is that failure, not the agent's: ``corral retry`` asks again once
        the operator has configured the model (the journal's rule, :meth:`Journal.stopped_unconfigured`)."""
        if message["ok"]:
            return Outcome(RunState.SUCCEEDED, result=message.get("value"))
        error = dict(message.get("error") or {})
        error.setdefault("kind", "agent")
        if error.get("type") == "ModelCallError":
            unconfigured = await self.shared.writer.run(self.journal.stopped_unconfigured)
            if unconfigured is not None:
                error = resumable({**error, "kind": "not_configured", "message": unconfigured})
        return Outcome(RunState.FAILED, error)


class ReplayAttempt(Attempt):
    """An attempt whose every request is answered from the run's journal (:mod:`corral.run.replay`)."""

    def __init__(
        self,
        shared: Shared,
        run: dict[str, Any],
        agent: AgentConfig,
        log: Any,
        welcome: dict[str, Any],
        workdir: Path,
        report: ReplayReport,
    ) -> None:
        super().__init__(shared, run, agent, log, welcome, workdir)
        self.report = report

    def _step_path(self, child: Child) -> ReplayPath:
        shared = self.shared
        return ReplayPath(child.wire, shared.records, self.run, self.report, shared.redact)
