"""``corral up``: the long-lived daemon around the engine.

It resumes what a crash interrupted, runs the scheduler and the run queue
(:mod:`corral.schedule`), serves the control socket, reloads its config on SIGHUP or
``corral reload``, and stops gracefully on SIGTERM: no new runs, in-flight requests
finish and are journaled within the grace period, then any child still alive is killed
and the daemon exits 0. Foreground only: supervisord (or launchd) keeps it alive.
"""

from __future__ import annotations

import asyncio
import os
import signal
import time
from collections.abc import Awaitable, Callable, Coroutine
from functools import partial
from typing import TYPE_CHECKING, Any

from corral.alerts import Alert, Severity
from corral.config import load_config
from corral.config.check import check_config
from corral.daemon import control
from corral.daemon.host import Host
from corral.daemon.lifecycle import STOPPED, Lifecycle
from corral.daemon.loopfaults import AcceptFaults
from corral.daemon.power import KeepAwake
from corral.errors import ConfigError
from corral.observe.metrics import Metrics
from corral.pluginmanager import BUILTINS
from corral.run import upkeep
from corral.run.engine import ORIGINAL
from corral.schedule.clock import Clock
from corral.schedule.queue import RunQueue
from corral.schedule.scheduler import Scheduler, build_all
from corral.schedule.timeline import Timeline
from corral.states import FINISHED, RunState

if TYPE_CHECKING:
    from corral.console import Console

HOUSEKEEPING_INTERVAL = 1.0
PRUNE_INTERVAL = 3600.0
Reply = Callable[[dict[str, Any]], Awaitable[None]]


class Daemon:
    """Owns the scheduler, the queue, the control socket and the shutdown sequence."""

    def __init__(self, host: Host, clock: Clock | None = None) -> None:
        self.host = host
        self.engine = engine = host.engine
        self.alerting = host.alerting
        self.config = engine.config
        self.log = engine.log
        self.clock = clock or Clock()
        engine.pauses.clock = self.clock
        self.stopping = asyncio.Event()
        self.signals = 0
        self.awake = KeepAwake(self.config.keep_awake, self.log)
        self.queue = RunQueue(engine, self.config.max_concurrent_runs, self._run_done, self.awake.busy)
        self.timeline = Timeline(self.clock, engine.store, engine.writer, self.log)
        self.scheduler = Scheduler(
            engine,
            engine.store,
            engine.writer,
            engine.records,
            engine.pauses,
            self.queue,
            self.clock,
            self.timeline,
            host.alerting.raise_alert,
        )
        self.metrics: Metrics | None = None
        self.console: Console | None = None
        self._waiters: dict[str, list[asyncio.Future[dict[str, Any]]]] = {}
        self._chores: set[asyncio.Task[Any]] = set()
        self._reloading = asyncio.Lock()

    # ------------------------------------------------------------------ life cycle

    async def serve(self) -> int:
        built = build_all(self.config, self.engine.plugins.manager, self.engine.environ, self.log.warning)
        await self.scheduler.listen(self.config, starting=True)
        loop = asyncio.get_running_loop()
        loop.set_exception_handler(AcceptFaults(self.log))
        for sig in (signal.SIGTERM, signal.SIGINT):
            loop.add_signal_handler(sig, self._on_signal, sig)
        loop.add_signal_handler(signal.SIGHUP, lambda: self._chore(self._reload_logged("SIGHUP")))
        applied = self.engine.processes.prepare(self.config.home / "agents")
        gate = control.Gate(lambda: self.engine.processes.live, self._agent_of, self._intruder)
        server = await control.serve(self.config.socket_path, self._handle, gate, log=self.log)
        self.log.info(  # short: built-in plugins go unnamed, plugin failures were each logged as they happened
            "daemon started",
            pid=os.getpid(),
            home=str(self.config.home),
            agents=sorted(self.config.agents),
            protections=applied,
            plugins=[name for name in self.engine.plugins.names() if name not in BUILTINS],
        )
        failures = self.engine.plugins.failures  # each already logged as the plugins loaded
        for problem in check_config(self.config, self.engine.plugins):
            if not any(failure in problem for failure in failures):
                self.log.warning("config problem", problem=problem)
        await self.alerting.start(daemon=True)
        self._start_metrics()
        await self._start_console(applied)
        downtime = await self.timeline.start()
        engine = self.engine
        for run_id in await upkeep.recover(engine.records, engine.writer, self.config, self.log, downtime.dead_for):
            run = await self.engine.writer.run(partial(self.engine.records.get_run, run_id=run_id))
            if run is not None:
                self.queue.add(run)
        await upkeep.prune(self.engine.records, self.engine.writer, self.config, self.log)
        await self.scheduler.apply(self.config, built)
        background = [asyncio.create_task(self._housekeeping()), asyncio.create_task(self.scheduler.run())]
        await self.stopping.wait()
        self.log.info("daemon stopping", grace=self.config.grace_seconds, running=len(self.queue.tasks()))
        server.close()
        for task in background:
            task.cancel()
        await self.scheduler.close()
        for run in self.queue.drop_waiting():  # they stay queued in the store for the next start
            self._resolve(run["id"], run)
        await self._drain()
        self.awake.close()
        await self.timeline.beat(self.clock.read(), now=True)
        await self.alerting.stop(flush=5.0)
        if self.metrics is not None:
            self.metrics.stop()
        if self.console is not None:
            await self.console.stop()
        await self.engine.models.close()
        self.config.socket_path.unlink(missing_ok=True)
        await self.host.settle()
        self.log.info("daemon stopped")
        return 0

    def _start_metrics(self) -> None:
        """Serve ``/metrics`` when ``[metrics] port`` is set; its counters follow the events.
        Turning it on or off, or moving the port, takes a restart."""
        config = self.config.alerts.metrics
        if config.port is None:
            return
        engine = self.engine
        self.metrics = Metrics(
            config, engine.store, engine.records, engine.config.models, lambda: engine.processes.live, self.log
        )
        self.host.events.subscribe("metrics", self.metrics.observe)
        self.metrics.start()

    async def _start_console(self, protections: list[str]) -> None:
        """Serve the console when ``[console] enabled`` (the default); it follows the events.
        A console that cannot listen is logged and left out: the daemon runs on."""
        config = self.config.console
        if not config.enabled:
            return
        from corral.console import Console
        from corral.console.reads import StoreView

        engine = self.engine
        console = Console(
            config, lambda: StoreView(engine.store, engine.records, self.config), self._handle, protections, self.log
        )
        if await console.start():
            self.console = console
            self.host.events.subscribe("console", console.hub.observe)
            self.alerting.delivery.links = console.alert_links

    def _on_signal(self, sig: int) -> None:
        self.signals += 1
        self.log.info("signal received", signal=signal.Signals(sig).name, count=self.signals)
        self.engine.draining = True
        self.stopping.set()
        if self.signals > 1:
            self._kill_children("second signal")

    async def _drain(self) -> None:
        tasks = self.queue.tasks()
        if tasks:
            _, pending = await asyncio.wait(tasks, timeout=self.config.grace_seconds)
            if pending:
                self._kill_children(f"grace period of {self.config.grace_seconds:g}s over")
                await asyncio.wait(pending, timeout=10)
        if self._chores:
            await asyncio.wait(self._chores, timeout=5)
        self.engine.processes.reap_orphans()

    def _kill_children(self, why: str) -> None:
        self.log.warning("killing agent processes", reason=why)
        self.engine.processes.kill_all()

    async def _housekeeping(self) -> None:
        last_prune = time.monotonic()
        while True:
            await asyncio.sleep(HOUSEKEEPING_INTERVAL)
            for pid in self.engine.processes.reap_orphans():
                self.log.warning("killed a process that outlived its run", pid=pid)
            for run in await self.engine.expire_approvals():
                self.queue.add(run)
            if time.monotonic() - last_prune > PRUNE_INTERVAL:
                last_prune = time.monotonic()
                await upkeep.prune(self.engine.records, self.engine.writer, self.config, self.log)
                await self.engine.writer.run(lambda txn: self.engine.store.env.reader_check())

    def _chore(self, work: Coroutine[Any, Any, Any]) -> None:
        """Run ``work`` beside the event loop's other work; its failure is logged, not lost."""
        task = asyncio.create_task(work)
        self._chores.add(task)

        def done(task: asyncio.Task[Any]) -> None:
            self._chores.discard(task)
            if not task.cancelled() and task.exception() is not None:
                self.log.error("daemon chore failed", error=f"{type(task.exception()).__name__}: {task.exception()}")

        task.add_done_callback(done)

    # ------------------------------------------------------------------ runs

    def _run_done(self, run: dict[str, Any], final: dict[str, Any] | None) -> None:
        self._resolve(run["id"], final or {"id": run["id"], "agent": run["agent"], "state": "interrupted"})
        if final is not None and not self.engine.draining:
            self._chore(self.scheduler.run_done(run, final))

    def _resolve(self, run_id: str, run: dict[str, Any]) -> None:
        for waiter in self._waiters.pop(run_id, []):
            if not waiter.done():
                waiter.set_result(run)

    async def _start(self, run: dict[str, Any], wait: bool, reply: Reply) -> None:
        """Queue a stored run, reply with it, and with its end state too when ``wait``."""
        waiter: asyncio.Future[dict[str, Any]] = asyncio.get_running_loop().create_future()
        if wait:
            self._waiters.setdefault(run["id"], []).append(waiter)
        self.queue.add(run)
        await reply({"ok": True, "run": run})
        if wait:
            final = await waiter
            await reply({"ok": True, "run": final, "final": RunState(final["state"]) in FINISHED})

    # ------------------------------------------------------------------ reload

    async def reload(self) -> dict[str, Any]:
        """Load the config file again; raises ConfigError (the old config stays) if it is invalid.

        New and changed agents and triggers take effect, removed ones stop being scheduled;
        a changed model's next call, from any run, goes to its new endpoint; running runs are
        not otherwise disturbed.
        """
        async with self._reloading:
            path = self.config.path
            if path is None:
                raise ConfigError(["the daemon was started without a config file; there is nothing to reload"])
            loop = asyncio.get_running_loop()
            new = await loop.run_in_executor(None, load_config, path, self.engine.environ)
            if new.home != self.config.home:
                raise ConfigError([f"{path}: [corral] home cannot change on reload; restart the daemon to move it"])
            built = build_all(new, self.engine.plugins.manager, self.engine.environ, self.log.warning)
            await self.scheduler.listen(new)
            models = self.host.reconfigure(new)
            self.config = new
            self.queue.limit = new.max_concurrent_runs
            changes: dict[str, Any] = {**await self.scheduler.apply(new, built), "models": models}
            self.queue.pump()
            self.log.info("config reloaded", path=str(path), agents=sorted(new.agents), **changes)
            self.alerting.raise_alert(
                Alert(key="config-reload", severity=Severity.INFO, title="config reloaded", resolved=True)
            )
            return changes

    async def _reload_logged(self, source: str) -> None:
        try:
            await self.reload()
        except ConfigError as exc:
            self._rejected(exc, source)

    def _rejected(self, exc: ConfigError, source: str) -> None:
        self.log.error("config reload rejected; the old config stays", source=source, problems=exc.problems)
        self.alerting.raise_alert(
            Alert(
                key="config-reload",
                severity=Severity.WARNING,
                title="config reload rejected",
                body="The new config is invalid; the daemon keeps the old one.\n" + "\n".join(exc.problems),
            )
        )

    # ------------------------------------------------------------------ control

    def _agent_of(self, run_id: str) -> str | None:
        return next((agent for agent, runs in self.queue.running.items() if run_id in runs), None)

    def _intruder(self, intrusion: control.Intrusion) -> None:
        """A run's process tried the control socket: the operator hears which agent."""
        if intrusion.run_id is None:
            self.log.warning("control socket refused a process it could not identify", **intrusion.fields())
            return
        self.log.error("control socket refused an agent's process", **intrusion.fields())
        self.alerting.raise_alert(intrusion.alert())

    async def _handle(self, request: dict[str, Any], reply: Reply) -> None:
        """Answer one control request; a malformed one is refused before any handler sees it
        (the CLI resolves ids itself, so an id here is whole)."""
        op = request["op"]
        handler = {
            "ping": self._op_ping,
            "run": self._op_run,
            "retry": self._op_retry,
            "release": self._op_release,
            "approve": self._op_decide,
            "deny": self._op_decide,
            "pause": self._op_pause,
            "state": self._op_state,
            "resume": self._op_agent,
            "cancel": self._op_cancel,
            "reload": self._op_reload,
            "replay": self._op_replay,
            "fork": self._op_fork,
            "console": self._op_console,
            "shutdown": self._op_shutdown,
            "stop": self._op_agent,
            "start": self._op_agent,
            "restart": self._op_agent,
        }
        if op not in handler:
            await reply({"ok": False, "error": f"unknown op {op!r:.80}; ops: {', '.join(handler)}"})
            return
        field = control.ID_FIELDS.get(op)
        value = request.get(field) if field else None
        if field and not (isinstance(value, str) and control.WHOLE_ID.fullmatch(value)):
            await reply({"ok": False, "error": f"bad request: {field} must be a whole id, not {value!r:.80}"})
            return
        await handler[op](request, reply)

    async def _op_ping(self, request: dict[str, Any], reply: Reply) -> None:
        await reply({"ok": True, "pid": os.getpid(), "running": len(self.queue.tasks())})

    def _agent_problem(self, agent: object) -> str | None:
        if isinstance(agent, str) and agent in self.config.agents:
            return None
        known = ", ".join(sorted(self.config.agents)) or "none"
        return f"no agent named {agent!r:.80} in {self.config.path}; agents: {known}"

    def _until_problem(self, until: object) -> str | None:
        """Why a pause's ``until`` (epoch seconds) is not a moment ahead that a date can show."""
        if isinstance(until, bool) or not isinstance(until, int | float):
            return f"until must be seconds since the epoch, not {until!r:.80}"
        try:
            shown = time.strftime("%Y-%m-%d %H:%M:%S %Z", time.localtime(until))
        except (OverflowError, ValueError, OSError):
            return f"until {until!r} is too far ahead to be a date; leave it out to pause until `corral resume`"
        if until <= self.clock.now():
            return f"until {shown} is in the past; give a time after now"
        return None

    async def _op_run(self, request: dict[str, Any], reply: Reply) -> None:
        agent = request.get("agent")
        problem = self._agent_problem(agent)
        if problem is None and self.engine.draining:
            problem = "the daemon is stopping; try again when it is back"
        if problem is None:
            problem = self.engine.held_back(str(agent))
        if problem is not None:
            await reply({"ok": False, "error": problem})
            return
        name = str(agent)
        payload = request.get("input", self.config.agents[name].input)
        run = await self.engine.create_run(name, payload, trigger="cli", by=_who(request))
        await self._start(run, bool(request.get("wait")), reply)

    async def _op_retry(self, request: dict[str, Any], reply: Reply) -> None:
        try:
            run = await self.engine.retry(str(request.get("run")), _who(request))
        except (KeyError, ValueError) as exc:
            await reply({"ok": False, "error": f"no run {exc}" if isinstance(exc, KeyError) else str(exc)})
            return
        await self._start(run, bool(request.get("wait")), reply)

    async def _op_replay(self, request: dict[str, Any], reply: Reply) -> None:
        try:
            report = await self.engine.replay(str(request.get("run")))
        except (KeyError, ValueError) as exc:
            await reply({"ok": False, "error": f"no run {exc}" if isinstance(exc, KeyError) else str(exc)})
            return
        await reply({"ok": True, "report": report.to_dict()})

    async def _op_fork(self, request: dict[str, Any], reply: Reply) -> None:
        start = request.get("from")
        if not isinstance(start, int) or isinstance(start, bool):
            await reply({"ok": False, "error": f"bad request: from must be a step number, not {start!r:.80}"})
            return
        try:
            run = await self.engine.fork(str(request.get("run")), start, request.get("input", ORIGINAL), _who(request))
        except (KeyError, ValueError) as exc:
            await reply({"ok": False, "error": f"no run {exc}" if isinstance(exc, KeyError) else str(exc)})
            return
        self.queue.add(run)
        await reply({"ok": True, "run": run})

    async def _op_release(self, request: dict[str, Any], reply: Reply) -> None:
        try:
            run = await self.engine.release(
                str(request.get("run")), bool(request.get("happened")), request.get("value"), _who(request)
            )
        except (KeyError, ValueError) as exc:
            await reply({"ok": False, "error": str(exc).strip("'")})
            return
        self.queue.add(run)
        await reply({"ok": True, "run": run})

    async def _op_decide(self, request: dict[str, Any], reply: Reply) -> None:
        from corral.run.approvals import ApprovalError

        approve = request["op"] == "approve"
        try:
            record, run = await self.engine.decide_approval(
                str(request.get("id")),
                approve,
                str(request.get("reason") or ""),
                by=_who(request),
                link=request.get("link") is True,
            )
        except ApprovalError as exc:
            await reply({"ok": False, "error": str(exc)})
            return
        if run is not None:
            self.queue.add(run)
        await reply({"ok": True, "approval": record})

    async def _op_pause(self, request: dict[str, Any], reply: Reply) -> None:
        agent, until = request.get("agent"), request.get("until")
        problem = self._agent_problem(agent)
        if problem is None and until is not None:
            problem = self._until_problem(until)
        if problem is not None:
            await reply({"ok": False, "error": problem})
            return
        reason = str(request.get("reason") or "paused with `corral pause`")
        if (by := _who(request)) != "cli":
            reason += f" by {by}"
        try:
            await self.engine.pause_agent(str(agent), reason, until)
        except ValueError as exc:
            await reply({"ok": False, "error": str(exc)})
            return
        await reply({"ok": True, "agent": agent, "pause": self.engine.paused(str(agent))})

    async def _op_state(self, request: dict[str, Any], reply: Reply) -> None:
        """``corral state AGENT --delete KEY``."""
        agent, key = request.get("agent"), request.get("delete")
        problem = self._agent_problem(agent)
        if problem is None and not (isinstance(key, str) and key):
            problem = f"bad request: delete must name a state key, not {key!r:.80}"
        if problem is not None:
            await reply({"ok": False, "error": problem})
            return
        answer = await self.engine.delete_state(str(agent), str(key))
        if not answer["deleted"]:
            await reply({"ok": False, "error": f"agent {agent} has no state key {key!r:.300} (`corral state {agent}`)"})
            return
        await reply({"ok": True, **answer})

    async def _op_cancel(self, request: dict[str, Any], reply: Reply) -> None:
        run_id = str(request.get("run"))
        self.queue.remove(run_id)  # first, so the queue cannot start it while it is cancelled
        try:
            by = _who(request)
            run = await self.engine.cancel(
                run_id, "cancelled by `corral cancel`" if by == "cli" else f"cancelled by {by}", by
            )
        except KeyError:
            await reply({"ok": False, "error": f"no run {run_id}; `corral runs` lists them"})
            return
        except ValueError as exc:
            await reply({"ok": False, "error": str(exc)})
            return
        if RunState(run["state"]) in FINISHED:
            self._resolve(run_id, run)
        await reply({"ok": True, "run": run})

    async def _op_shutdown(self, request: dict[str, Any], reply: Reply) -> None:
        """``corral stop``: as SIGTERM, once the answer has gone out."""
        running = len(self.queue.tasks())
        supervised = bool(os.environ.get("SUPERVISOR_ENABLED"))  # supervisord sets it for its children
        await reply(
            {
                "ok": True,
                "pid": os.getpid(),
                "running": running,
                "grace": self.config.grace_seconds,
                "supervised": supervised,
            }
        )
        self.log.info("stop asked through the control socket", running=running)
        self.engine.draining = True
        self.stopping.set()

    async def _op_agent(self, request: dict[str, Any], reply: Reply) -> None:
        """``corral stop/start/restart/resume AGENT`` (:mod:`corral.daemon.lifecycle`; a resume
        is a start: either lifts a stop, a pause and a slow-down)."""
        op, agent = request["op"], request.get("agent")
        problem = self._agent_problem(agent)
        if problem is None and op == "restart" and self.engine.draining:
            problem = "the daemon is stopping; try again when it is back"
        if problem is not None:
            await reply({"ok": False, "error": problem})
            return
        name = str(agent)
        lifecycle = Lifecycle(self.engine, self.queue.remove, self.scheduler.unslow, _who(request))
        if op == "stop":
            answer = await lifecycle.stop(name, str(request.get("reason") or STOPPED))
        elif op in ("start", "resume"):
            answer = await lifecycle.start(name)
        else:
            answer, payload = await lifecycle.restart(name, self.config.agents[name].input)
        for run in answer.get("cancelled", ()):
            if RunState(run["state"]) in FINISHED:  # a running one is resolved when its attempt ends
                self._resolve(run["id"], run)
        if op != "restart":
            await reply({"ok": True, **answer})
            return
        run = await self.engine.create_run(name, payload, trigger="restart")
        told: list[bool] = []

        async def with_answer(message: dict[str, Any]) -> None:  # the first reply (the queued run) says what was done
            await reply(message if told else {**answer, **message})
            told.append(True)

        await self._start(run, bool(request.get("wait")), with_answer)

    async def _op_console(self, request: dict[str, Any], reply: Reply) -> None:
        if self.console is None:
            why = "is turned off ([console] enabled = false)" if not self.config.console.enabled else "could not listen"
            await reply({"ok": False, "error": f"the console {why}; see corral.log, and docs/console.md"})
            return
        await reply({"ok": True, "url": self.console.public, "login": self.console.login_url()})

    async def _op_reload(self, request: dict[str, Any], reply: Reply) -> None:
        try:
            changes = await self.reload()
        except ConfigError as exc:
            self._rejected(exc, "corral reload")
            await reply({"ok": False, "error": "invalid config; the old one stays in force:\n" + str(exc)})
            return
        await reply({"ok": True, "changes": changes})


WHO = 80
"""Characters of a request's ``by`` kept."""


def _who(request: dict[str, Any]) -> str:
    """Who asked: the console names its session or the approval link in ``by``; a request
    from the control socket (the operator's own uid) without one is the CLI's."""
    by = request.get("by")
    return by[:WHO] if isinstance(by, str) and by.strip() else "cli"
