"""Runs from creation to an end state: attempts, resume, code changes, retention.

The engine is the run machinery the daemon and a foreground ``corral run`` share. It owns
no schedule, no socket and no observer: what happens to runs reaches logs, alerts, metrics
and plugins as events (:mod:`corral.observe.events`), which the composition root
(:mod:`corral.daemon.host`) subscribes them to.
"""

from __future__ import annotations

import asyncio
import dataclasses
import hashlib
import os
import secrets
import sys
import time
from collections.abc import Callable, Iterator, Mapping
from pathlib import Path
from typing import Any, Protocol

import jsonschema_rs

from corral.config import AgentConfig, CorralConfig
from corral.config.mcp import split_grant
from corral.packing import pack
from corral.pluginmanager import Plugins
from corral.run import replay
from corral.run.approvals import Approvals
from corral.run.attempt import Attempt, ReplayAttempt, Shared
from corral.run.budget import Ledger
from corral.run.downstreams import daemon_breakers
from corral.run.modelaccess import ModelAccess
from corral.run.outcome import Outcome, failure
from corral.run.quota import MiB
from corral.run.replay import ReplayReport, verdict
from corral.run.toolretries import tool_policy
from corral.sandbox.command import resolved
from corral.sandbox.manager import Sandbox
from corral.sandbox.policy import agent_env, limits_dict, prepare_workdir
from corral.sandbox.processes import ProcessControl
from corral.schedule.clock import Clock, awake_since, awake_stamp
from corral.schedule.pauses import Pauses
from corral.secrets import Redaction, SecretsError
from corral.states import FINISHED, EventKind, RunState, check_transition
from corral.store import Records, Store, Writer, new_run_id
from corral.tools import ToolSpec, tool_secret_names, welcome_entry

MAX_BACKOFF = 60.0
WELCOME_MARGIN = 4096
"""Bytes the attempt adds to the welcome after it is measured (the door token, MCP servers' names)."""
ORIGINAL: Any = object()
"""``Engine.fork``'s input when none is given: the original run's (a given ``None`` is JSON null)."""


class Logs(Protocol):
    """Where the engine's own log lines go: the daemon's log, and each agent's; ``redaction``
    keeps the secrets an agent is given out of them and out of the store."""

    redaction: Redaction

    def logger(self, agent: str | None = None, **bind: Any) -> Any: ...


def code_hash(agent: AgentConfig) -> str:
    """Hash of the agent's sources and entry (or command): what "the same code" means on resume.

    An entry agent's sources are its ``.py`` files; a command agent's, every file of its code
    folder but those in folders of installed packages or tool state (:data:`NOT_SOURCES`)."""
    digest = hashlib.sha256(agent.entry.encode() if agent.entry else "\0".join(agent.command or ()).encode())
    for path in sorted(_sources(agent.code, ".py" if agent.entry else "")):
        digest.update(str(path.relative_to(agent.code)).encode() + b"\0")
        try:
            digest.update(path.read_bytes())
        except OSError:
            continue
    return digest.hexdigest()[:16]


NOT_SOURCES = frozenset({"__pycache__", "node_modules", ".git", ".venv", "venv", "target", ".tmp"})
"""Folders a code hash leaves out: installed packages, builds and caches, not the agent's own sources."""


def _sources(code: Path, suffix: str) -> Iterator[Path]:
    """Files under ``code`` ending in ``suffix``, not descending into :data:`NOT_SOURCES`."""
    for folder, subfolders, files in os.walk(code):
        subfolders[:] = [name for name in subfolders if name not in NOT_SOURCES]
        yield from (Path(folder, name) for name in files if name.endswith(suffix))


MAX_CHANGES = 64
"""How many of a run's latest state changes its record keeps (``changes``: each ``state``
and when, ``at``), so ``corral trace --tree`` says what ended each attempt and started the next."""


def change_state(
    records: Records,
    txn: Any,
    run: dict[str, Any],
    new: RunState,
    *,
    by: str | None = None,
    did: str | None = None,
    **fields: Any,
) -> dict[str, Any]:
    """The one way a run's state changes: checked, stamped, timed and sized when it ends,
    recorded in the run's ``changes``, and announced (its event is posted in the same
    commit: :mod:`corral.observe.events`).

    ``ran_seconds`` adds up the time the run spent running, across attempts (what
    ``max_run_seconds`` limits): waiting on hold for a human, in the queue or for a retry
    does not count; a daemon that died under the run counts until it is back. Within one
    boot it is measured on the awake clock, so a machine asleep or a clock step does not
    count; across a reboot, on the wall clock. A change made by hand keeps, in ``changes``,
    who made it (``by``: ``cli``, a console session, an approval link) and what they did
    (``did``: ``approved approval 7fk2q9``, ``retried``, ...).
    """
    old = RunState(run["state"])
    check_transition(old, new)
    now = time.time()
    if old is RunState.RUNNING and new is not RunState.RUNNING:
        ran = awake_since(run.get("running_awake"), run.get("running_since", now), now)
        run["ran_seconds"] = run.get("ran_seconds", 0.0) + ran
        run.pop("running_since", None)
        run.pop("running_awake", None)
    if new is RunState.RUNNING:
        run["running_since"] = now
        run["running_awake"] = awake_stamp()
    run.update(fields, state=new.value)
    change: dict[str, Any] = {"state": new.value, "at": now}
    if by is not None:
        change.update(by=by, did=did or new.value)
    run["changes"] = [*run.get("changes", ()), change][-MAX_CHANGES:]
    if new in FINISHED:
        run["ended"] = now
        run["steps"], run["journal_bytes"] = records.journal_size(txn, run["id"])
    records.put_run(txn, run)
    records.post_event(txn, {"kind": EventKind.RUN_CHANGED.value, "run": dict(run), "old": old.value})
    return run


def replaying(agent: AgentConfig) -> AgentConfig:
    """The agent as a replay runs it: its read-write folders only readable, no network, a
    throwaway workdir, so the code's own side effects (a file it appends to, a request it
    makes itself) do not happen again."""
    policy = agent.sandbox
    readable = (*policy.read_only, *policy.read_write)
    sandbox = dataclasses.replace(policy, read_write=(), read_only=readable, network="none", endpoints=())
    return dataclasses.replace(agent, sandbox=sandbox)


def _requeue_held(
    records: Records, txn: Any, run_id: str, by: str | None = None, did: str | None = None
) -> dict[str, Any] | None:
    """Queue a run on hold (for an approval) to resume; None if it is not on hold any more."""
    run = records.get_run(txn, run_id)
    if run is None or run["state"] != RunState.ON_HOLD.value:
        return None
    return change_state(
        records, txn, run, RunState.QUEUED, by=by, did=did, hold_reason=None, attempts_from=run["attempt"]
    )


class Engine:
    """Creates and executes runs; the single owner of the store's write side."""

    def __init__(
        self,
        config: CorralConfig,
        store: Store,
        records: Records,
        writer: Writer,
        plugins: Plugins,
        logs: Logs,
        processes: ProcessControl | None = None,
        environ: Mapping[str, str] = os.environ,
    ) -> None:
        self.config = config
        self.store = store
        self.records = records
        self.writer = writer
        self.plugins = plugins
        self.logs = logs
        self.log = logs.logger(None)
        self.processes = processes or ProcessControl()
        self.environ = dict(environ)
        self.sandbox = Sandbox(config, plugins.manager, self.environ)
        """Confinement and secrets of agent processes (docs/sandbox.md)."""
        self.draining = False
        self._validators: dict[str, jsonschema_rs.Draft202012Validator] = {}
        self.approvals = Approvals(records)
        self.breakers = daemon_breakers(store, writer, records, self.log)
        """The circuit breakers of models, tools and MCP servers, shared by every run."""
        self.models = ModelAccess(
            config, self.environ, plugins.providers, Ledger(config, store.dbs), self.breakers, self.log
        )
        """Endpoints, providers, one client per model, the daily budgets."""
        self.pauses = Pauses(store, writer, Clock())
        """Paused agents, durable; read through :meth:`paused` (docs/scheduling.md)."""
        self._executing: set[str] = set()
        self._cancelling: dict[str, tuple[str, str | None]] = {}
        """Runs being cancelled while they execute: (the reason, who cancelled)."""
        self._last_run_ms: int | None = None

    # ------------------------------------------------------------------ plumbing

    def validator(self, spec: ToolSpec) -> jsonschema_rs.Draft202012Validator:
        """A compiled validator per tool: every tool call is checked before it runs, so this
        is on the durable step's path (jsonschema-rs: ~1 us a call, against ~45 us)."""
        if spec.name not in self._validators:
            self._validators[spec.name] = jsonschema_rs.Draft202012Validator(spec.parameters)
        return self._validators[spec.name]

    def welcome(
        self, run: dict[str, Any], agent: AgentConfig, state: dict[str, Any], secrets: Mapping[str, str]
    ) -> dict[str, Any]:
        """What the child learns about its run once it has said hello; ``state`` is the
        agent's state as the run first saw it, so a resumed run reads what it read then;
        ``secrets`` are the granted values its tools declare (they reach those tools only)."""
        return {
            "run_id": run["id"],
            "agent": agent.name,
            "trace_id": run["trace_id"],
            "attempt": run["attempt"],
            "entry": agent.entry,
            "command": resolved(agent.command, agent.code) if agent.command else None,
            "code": str(agent.code),
            "input": run.get("input"),
            "state": state,
            "tools": {
                name: welcome_entry(
                    spec, agent.tool_settings, secrets, retries=tool_policy(spec, self.config.tools).retries
                )
                for name in agent.tools
                if (spec := self.plugins.tools.get(name)) is not None
            },
            "plugins": list(self.config.plugins),
            "plugin_dir": str(self.config.home / "plugins"),
            "sys_path": [p for p in sys.path if p],
            "entry_points": self.plugins.entry_points,
            "models": [{"name": name, "model": self._upstream(name)} for name in agent.models],
        }

    def _upstream(self, name: str) -> str:
        """The provider's model id behind alias ``name`` ("" while it is not known: provider auto)."""
        model = self.config.models.get(name)
        return model.endpoint.model if model is not None and model.endpoint is not None else ""

    # ------------------------------------------------------------------ runs

    async def create_run(
        self,
        agent: str,
        input: Any = None,
        trigger: str = "manual",
        *,
        also: Callable[[Any, dict[str, Any]], None] | None = None,
        **fields: Any,
    ) -> dict[str, Any]:
        """A new queued run, durable before this returns. ``fields`` are stored on the run
        (a schedule's id and fire time); ``also(txn, run)`` writes in the same commit (the
        schedule's last fire time, so a crash can neither lose the run nor fire it twice)."""
        run = {
            "id": self._new_run_id(),
            "agent": agent,
            "state": RunState.QUEUED.value,
            "trigger": trigger,
            "input": input,
            "created": time.time(),
            "attempt": 0,
            "trace_id": secrets.token_hex(16),
            **fields,
        }
        records = self.records

        def job(txn: Any) -> None:
            records.put_run(txn, run)
            records.post_event(txn, {"kind": EventKind.RUN_CREATED.value, "run": dict(run)})
            if also is not None:
                also(txn, run)

        await self.writer.run(job)
        self.log.debug("run queued", agent=agent, run_id=run["id"], trigger=trigger)
        return run

    def _new_run_id(self) -> str:
        """A run id whose time part never goes below the newest on record: ids order runs by
        creation (the queue starts the oldest first, ``corral runs`` lists newest first), and
        a wall clock set back must not put new runs before old ones."""
        if self._last_run_ms is None:
            with self.store.read() as txn:
                cursor = txn.cursor(db=self.store.dbs["runs"])
                self._last_run_ms = int(bytes(cursor.key())[:12], 16) if cursor.last() else 0
        run_id = new_run_id(self._last_run_ms + 1)
        self._last_run_ms = int(run_id[:12], 16)
        return run_id

    async def _transition(self, run_id: str, new: RunState, **fields: Any) -> dict[str, Any]:
        records, approvals = self.records, self.approvals

        def job(txn: Any) -> tuple[str, dict[str, Any]]:
            run = records.get_run(txn, run_id)
            if run is None:
                raise KeyError(run_id)
            old = run["state"]
            run = change_state(records, txn, run, new, **fields)
            approval = (fields.get("error") or {}).get("approval") if new is RunState.ON_HOLD else None
            if approval and approvals.decided(txn, approval):  # decided before the hold: no one else queues it
                run = _requeue_held(records, txn, run_id) or run
            return old, run

        _, run = await self.writer.run(job)
        return run

    async def _begin_attempt(
        self, run_id: str, agent: AgentConfig
    ) -> tuple[dict[str, Any], dict[str, Any], dict[str, Any] | None]:
        """Mark the run running for a new attempt: (run, its state snapshot, None), or the
        failure (``gave_up``, ``resume``) in place of None when it must not run."""
        current = await asyncio.get_running_loop().run_in_executor(None, code_hash, agent)
        records = self.records

        def job(txn: Any) -> tuple[dict[str, Any], dict[str, Any], str, dict[str, Any] | None]:
            run = records.get_run(txn, run_id)
            if run is None:
                raise KeyError(run_id)
            old = run["state"]
            if (used := run["attempt"] - run.get("attempts_from", 0)) >= agent.max_attempts:
                refusal = failure("gave_up", f"gave up after {used} attempts (max_attempts = {agent.max_attempts})")
                return run, {}, old, refusal
            if run.get("code_hash") and run["code_hash"] != current:
                if agent.on_code_change == "fail":
                    changed = (
                        f"agent code changed since this run started ({run['code_hash']} -> {current}); "
                        'set on_code_change = "continue" for this agent to resume anyway, or start a new run'
                    )
                    return run, {}, old, failure("resume", changed)
                run["code_changed"] = f"{run['code_hash']} -> {current}"
            if run["attempt"] == 0 and not run.get("parent"):  # a fork keeps its parent's snapshot
                records.put_snapshot(txn, run_id, records.agent_state(txn, agent.name))
            run.setdefault("started", time.time())
            run.pop("error", None)
            change_state(records, txn, run, RunState.RUNNING, attempt=run["attempt"] + 1, code_hash=current)
            return run, records.get_snapshot(txn, run_id), old, None

        run, snapshot, _, refusal = await self.writer.run(job)
        return run, snapshot, refusal

    async def execute(self, run_id: str) -> dict[str, Any]:
        """Attempt the run until it ends, is interrupted by shutdown, is cancelled, or needs a human."""
        self._executing.add(run_id)
        try:
            return await self._execute(run_id)
        except Exception as exc:  # a bug of ours met by this run: end it, never leave it running
            self.log.exception("run crashed in the daemon", run_id=run_id, error=f"{type(exc).__name__}: {exc}")
            return await self._crashed(run_id, exc)
        finally:
            self._executing.discard(run_id)
            self._cancelling.pop(run_id, None)

    async def _execute(self, run_id: str) -> dict[str, Any]:
        while True:
            run = await self.writer.run(lambda txn: self.records.get_run(txn, run_id))
            agent = self.config.agents.get(run["agent"]) if run else None
            if run is None:
                raise KeyError(run_id)
            if run_id in self._cancelling:
                return await self._cancel_now(run_id, *self._cancelling[run_id])
            if agent is None:
                return await self._transition(
                    run_id,
                    RunState.FAILED,
                    error=failure(
                        "config", f"agent {run['agent']!r} is no longer in the config; the run cannot continue"
                    ),
                )
            run, snapshot, refusal = await self._begin_attempt(run_id, agent)
            log = self.logs.logger(agent.name, run_id=run_id, trace_id=run["trace_id"])
            if refusal:
                log.error("run not resumed", kind=refusal["kind"], reason=refusal["message"])
                return await self._transition(run_id, RunState.FAILED, error=refusal)
            if run.get("code_changed"):
                log.warning("resuming under changed code", change=run["code_changed"])
            outcome = await self._attempt(run, agent, log, snapshot)
            by = None
            if run_id in self._cancelling and outcome.state is not RunState.SUCCEEDED:
                reason, by = self._cancelling[run_id]
                outcome = Outcome(RunState.CANCELLED, failure("cancelled", reason))
            applied = run.get("applied", [])
            if (
                outcome.retry
                and not self.draining
                and agent.on_crash == "resume"
                and run["attempt"] - run.get("attempts_from", 0) < agent.max_attempts
            ):
                interrupted = await self._transition(run_id, RunState.INTERRUPTED, error=outcome.error, applied=applied)
                delay = min(MAX_BACKOFF, 2.0 ** (run["attempt"] - 1))
                log.warning("run interrupted; resuming", error=outcome.error, retry_in=delay)
                if await self._stopped_within(delay, run_id):
                    return interrupted
                continue
            state = outcome.state
            if outcome.retry and not self.draining:
                state = RunState.FAILED
            final = await self._transition(
                run_id,
                state,
                error=outcome.error,
                result=outcome.result,
                hold_reason=outcome.hold_reason,
                applied=applied,
                by=by,
            )
            if final["state"] == RunState.QUEUED.value:  # its approval came before the hold: go on at once
                continue
            return final

    async def _crashed(self, run_id: str, exc: Exception) -> dict[str, Any]:
        """End a run the daemon failed on as ``failed`` (kind ``internal``), so no record is
        left ``running`` with nothing behind it and no restart resumes it into the same bug.
        Raises only when even that cannot be written (the store is failing): the run is then
        interrupted in the store, and start-up's recovery counts the attempt."""
        message = (
            f"the daemon failed on this run ({type(exc).__name__}: {str(exc)[:200]}); nothing more of it will run. "
            "The traceback is in the daemon's log, corral.log (`corral logs --level error`); "
            "start a new run once the cause is fixed"
        )
        records = self.records

        def job(txn: Any) -> dict[str, Any]:
            run = records.get_run(txn, run_id)
            if run is None:
                raise KeyError(run_id)
            if RunState(run["state"]) in FINISHED:
                return run
            error = failure("internal", self.logs.redaction.redact(message))
            return change_state(records, txn, run, RunState.FAILED, error=error)

        run: dict[str, Any] = await self.writer.run(job)
        return run

    async def _stopped_within(self, seconds: float, run_id: str) -> bool:
        """Sleep up to ``seconds`` (less if the run is cancelled); True as soon as the daemon starts stopping."""
        deadline = time.monotonic() + seconds
        while not self.draining and time.monotonic() < deadline and run_id not in self._cancelling:
            await asyncio.sleep(min(0.1, max(0.0, deadline - time.monotonic())))
        return self.draining

    async def release(self, run_id: str, happened: bool, value: Any = None, by: str | None = None) -> dict[str, Any]:
        """A human's verdict on a held run's interrupted step; the run is queued again.

        ``happened``: the step is journaled as done with ``value`` and never re-run.
        Otherwise its entry is removed, so the step runs again (with the same key).
        """
        records = self.records

        def job(txn: Any) -> dict[str, Any]:
            run = records.get_run(txn, run_id)
            if run is None:
                raise KeyError(run_id)
            if run["state"] != RunState.ON_HOLD.value:
                raise ValueError(f"run {run_id} is {run['state']}, not on hold; only held runs can be released")
            for entry in records.steps(txn, run_id):
                if entry["status"] != "unknown":
                    continue
                if happened:
                    entry.update(status="done", ok=True, value=value, ended=time.time(), released="happened")
                    records.put_step(txn, run_id, entry)
                else:
                    records.delete_step(txn, run_id, entry["seq"])
            verdict = "happened" if happened else "not happened"
            return change_state(
                records,
                txn,
                run,
                RunState.QUEUED,
                by=by,
                did=f"released ({verdict})",
                hold_reason=None,
                released=verdict,
                attempts_from=run["attempt"],
            )

        run = await self.writer.run(job)
        self.log.info("run released", run_id=run_id, agent=run["agent"], verdict=run["released"])
        return run

    async def decide_approval(
        self, approval_id: str, approve: bool, reason: str = "", *, by: str = "cli", link: bool = False
    ) -> tuple[dict[str, Any], dict[str, Any] | None]:
        """A human's decision on an approval request (``by`` whom; ``link``: through a signed
        approval link, which it spends); its run (on hold for it) is queued to resume, where
        the step finds the decision. Raises ApprovalError saying why not."""
        approvals, records = self.approvals, self.records

        def job(txn: Any) -> tuple[dict[str, Any], dict[str, Any] | None]:
            record = approvals.decide(txn, approval_id, approve, reason, by=by, link=link)
            did = f"{record['state']} approval {approval_id}"
            return record, _requeue_held(records, txn, record["run_id"], by, did)

        record, run = await self.writer.run(job)
        self._approval_settled(record)
        return record, run

    async def expire_approvals(self) -> list[dict[str, Any]]:
        """Deny every request past its timeout and queue its run; returns the runs to dispatch."""
        approvals, records = self.approvals, self.records

        def job(txn: Any) -> list[tuple[dict[str, Any], dict[str, Any] | None]]:
            return [(r, _requeue_held(records, txn, r["run_id"])) for r in approvals.expire(txn)]

        runs = []
        for record, run in await self.writer.run(job):
            self._approval_settled(record)
            if run is not None:
                runs.append(run)
        return runs

    def _approval_settled(self, record: dict[str, Any]) -> None:
        state = record["state"]
        self.log.info("approval " + state, approval=record["id"], run_id=record["run_id"], tool=record["tool"])

    async def retry(self, run_id: str, by: str | None = None) -> dict[str, Any]:
        """Queue a run that failed for a passing reason (a model endpoint down, a budget spent,
        a model not configured) again: its journal replays every finished step, and the step it stopped at runs now."""
        records = self.records

        def job(txn: Any) -> dict[str, Any]:
            run = records.get_run(txn, run_id)
            if run is None:
                raise KeyError(run_id)
            error = run.get("error") or {}
            if run["state"] != RunState.FAILED.value or not error.get("resumable"):
                if run["state"] == RunState.FAILED.value:
                    what = f"run {run_id} failed ({error.get('kind') or 'unknown'}: {error.get('message', '')})"
                else:
                    what = f"run {run_id} is {run['state']}"
                own = (
                    " (an error the agent's code was given and raised, such as the model door's 429 over a "
                    "budget, is its own: fix the cause, e.g. raise the budget, then)"
                    if error.get("kind") == "agent"
                    else ""
                )
                raise ValueError(
                    f"{what}; only runs that failed for a passing reason (model endpoint down, budget spent, "
                    f"model not configured) can be retried;{own} start a new run with `corral run {run['agent']}`"
                )
            held = self.held_back(run["agent"])
            if held is not None:
                raise ValueError(f"run {run_id} would wait: {held}")
            return change_state(
                records,
                txn,
                run,
                RunState.QUEUED,
                by=by,
                did="retried",
                retried=time.time(),
                attempts_from=run["attempt"],
            )

        run = await self.writer.run(job)
        self.log.info("run retried", run_id=run_id, agent=run["agent"])
        return run

    async def replay(self, run_id: str) -> ReplayReport:
        """Run the agent's current code against ``run_id``'s journal (:mod:`corral.run.replay`):
        nothing is executed, journaled or sent; returns whether it took the same path.

        Raises KeyError for an unknown run, ValueError for one that cannot be replayed now.
        """
        records = self.records

        def read(txn: Any) -> tuple[dict[str, Any] | None, dict[str, Any], int]:
            run = records.get_run(txn, run_id)
            if run is None:
                return None, {}, 0
            return run, records.get_snapshot(txn, run_id), sum(1 for _ in records.steps(txn, run_id))

        run, snapshot, journaled = await self.writer.run(read)
        if run is None:
            raise KeyError(run_id)
        if run_id in self._executing or run["state"] == RunState.RUNNING.value:
            raise ValueError(f"run {run_id} is running; replay it once it has ended or stopped")
        agent = self.config.agents.get(run["agent"])
        if agent is None:
            raise ValueError(
                f"agent {run['agent']!r} is no longer in the config; a replay runs the agent's code as configured now"
            )
        report = ReplayReport(run_id, agent.name, 0, journaled)
        agent = replaying(agent)
        log = self.logs.logger(agent.name, run_id=run_id, trace_id=run["trace_id"], replay=True)
        with replay.workdir(self.config.home, run_id) as folder:
            outcome = await self._attempt(dict(run), agent, log, snapshot, replay=report, workdir=folder)
        report = verdict(report, run, outcome)
        log.info("run replayed", same=report.same, steps=report.steps, ended=report.ended)
        return report

    async def fork(self, run_id: str, from_seq: int, input: Any = ORIGINAL, by: str | None = None) -> dict[str, Any]:
        """A new queued run of the same agent whose steps before ``from_seq`` are ``run_id``'s
        (copied from its journal, so they are answered from it, free) and live from there.
        ``input`` defaults to the original's; the new run records ``parent`` and ``forked_at``.

        Raises KeyError for an unknown run, ValueError for a step the original never finished.
        """
        records = self.records

        def read(txn: Any) -> tuple[dict[str, Any] | None, dict[str, Any], list[dict[str, Any]]]:
            run = records.get_run(txn, run_id)
            if run is None:
                return None, {}, []
            kept = [entry for entry in records.steps(txn, run_id) if entry["seq"] < from_seq]
            return run, records.get_snapshot(txn, run_id), kept

        original, snapshot, kept = await self.writer.run(read)
        if original is None:
            raise KeyError(run_id)
        if from_seq < 1:
            raise ValueError(f"--from must be a step number of 1 or more, not {from_seq}")
        unfinished = [entry["seq"] for entry in kept if entry["status"] != "done"]
        if len(kept) < from_seq - 1 or unfinished:
            have = max((e["seq"] for e in kept if e["status"] == "done"), default=0)
            raise ValueError(
                f"run {run_id} has {have} finished steps before step {from_seq}; fork from step {have + 1} or earlier"
            )
        held = self.held_back(original["agent"])
        if held is not None:
            raise ValueError(f"a fork of run {run_id} would wait: {held}")
        forked_input = original.get("input") if input is ORIGINAL else input

        def also(txn: Any, run: dict[str, Any]) -> None:
            records.put_snapshot(txn, run["id"], snapshot)
            for entry in kept:
                records.copy_step(txn, run["id"], {**entry, "attempt": 0, "forked_from": run_id})

        run = await self.create_run(
            original["agent"],
            forked_input,
            trigger="fork",
            also=also,
            parent=run_id,
            forked_at=from_seq,
            **({"by": by} if by else {}),
        )
        self.log.info("run forked", run_id=run["id"], parent=run_id, forked_at=from_seq)
        return run

    # ------------------------------------------------------------------ pausing and cancelling

    async def pause_agent(self, agent: str, reason: str, until: float | None = None) -> None:
        """Pause ``agent`` durably: its triggers are recorded as skipped and its queued runs wait;
        a running run is not disturbed. ``until`` (epoch seconds) lifts it by itself; None waits
        for ``corral resume``. Pausing a paused agent replaces the reason and ``until``."""
        if agent not in self.config.agents:
            raise KeyError(agent)
        await self.pauses.pause(agent, reason, until)
        self.log.warning("agent paused", agent=agent, reason=reason, until=until)

    async def resume_agent(self, agent: str) -> None:
        """Lift ``agent``'s pause (nothing happens if it was not paused)."""
        if await self.pauses.resume(agent) is not None:
            self.log.info("agent resumed", agent=agent)

    async def delete_state(self, agent: str, key: str) -> dict[str, Any]:
        """Delete ``key`` of ``agent``'s state (``corral state AGENT --delete KEY``): what was
        deleted and what the state holds now. Runs of the agent keep the state they first saw."""
        records = self.records

        def job(txn: Any) -> dict[str, Any]:
            deleted = records.delete_state(txn, agent, key)
            return {"agent": agent, "key": key, "deleted": deleted, "bytes": records.state_bytes(txn, agent)}

        answer: dict[str, Any] = await self.writer.run(job)
        if answer["deleted"]:
            self.log.info("state key deleted", agent=agent, key=key, state_bytes=answer["bytes"])
        return answer

    def cancelling(self, run_id: str) -> bool:
        """Whether ``run_id`` is being cancelled: work done for it should stop waiting."""
        return run_id in self._cancelling

    def paused(self, agent: str) -> dict[str, Any] | None:
        """``agent``'s pause (``reason``, ``since``, ``until``), or None; never waits."""
        return self.pauses.get(agent)

    def held_back(self, agent: str) -> str | None:
        """Why a run of ``agent`` queued by hand now would only wait (the agent is paused or
        stopped), with the command that lifts it; None when it would run."""
        pause = self.paused(agent)
        if pause is None:
            return None
        how = "start" if pause.get("stopped") else "resume"
        state = "stopped" if how == "start" else "paused"
        return f"agent {agent} is {state} ({pause['reason']}); `corral {how} {agent}` first"

    async def cancel(
        self, run_id: str, reason: str = "cancelled by `corral cancel`", by: str | None = None
    ) -> dict[str, Any]:
        """End an unfinished run as cancelled, its journal kept. A run this engine is executing
        has its whole process tree killed and ends as its attempt does; any other (queued,
        interrupted, on hold) ends at once. Returns the run as it is now.

        Raises KeyError for an unknown run, ValueError for one that has already ended.
        """
        if run_id in self._executing:
            self._cancelling[run_id] = (reason, by)
            child = self.processes.live.get(run_id)
            if child is not None:
                self.processes.kill_tree(child)
            self.log.info("run cancelling", run_id=run_id, reason=reason)
            run = await self.writer.run(lambda txn: self.records.get_run(txn, run_id))
            if run is None:
                raise KeyError(run_id)
            return run
        return await self._cancel_now(run_id, reason, by)

    async def _cancel_now(self, run_id: str, reason: str, by: str | None = None) -> dict[str, Any]:
        records = self.records

        def job(txn: Any) -> tuple[str, dict[str, Any]]:
            run = records.get_run(txn, run_id)
            if run is None:
                raise KeyError(run_id)
            if RunState(run["state"]) in FINISHED:
                raise ValueError(f"run {run_id} has already ended ({run['state']}); there is nothing to cancel")
            old = run["state"]
            return old, change_state(records, txn, run, RunState.CANCELLED, by=by, error=failure("cancelled", reason))

        _, run = await self.writer.run(job)
        return run

    def reconfigure(self, config: CorralConfig) -> list[str]:
        """Take a reloaded config: runs started from now on see it; running ones keep theirs
        (a model's changed endpoint applies to their next call). Returns the changed models."""
        self.config = config
        self.sandbox.config = config
        return self.models.reconfigure(config)

    async def _attempt(
        self,
        run: dict[str, Any],
        agent: AgentConfig,
        log: Any,
        snapshot: dict[str, Any],
        *,
        replay: ReplayReport | None = None,
        workdir: Path | None = None,
    ) -> Outcome:
        workdir = workdir or self.config.workdir(agent.name)
        prepare_workdir(workdir)
        prepared = await asyncio.get_running_loop().run_in_executor(None, self.sandbox.prepare, agent, workdir)
        if prepared.refusal is not None:
            log.error("run not started", kind=prepared.refusal["kind"], reason=prepared.refusal["message"])
            return Outcome(RunState.FAILED, prepared.refusal)
        self.logs.redaction.add(prepared.env)
        try:
            mcp_headers = await asyncio.get_running_loop().run_in_executor(None, self._mcp_headers, agent)
        except SecretsError as exc:
            log.error("run not started", kind="secrets", reason=str(exc))
            return Outcome(RunState.FAILED, failure("secrets", f"agent {agent.name!r} was not started: {exc}"))
        for_tools = tool_secret_names(self.plugins.tools, agent.tools)
        tool_secrets = {name: value for name, value in prepared.env.items() if name in for_tools}
        welcome = self.welcome(run, agent, snapshot, tool_secrets)
        too_big = self._welcome_too_big(agent, welcome)
        if too_big is not None:
            log.error("run not started", kind="limit", reason=too_big)
            return Outcome(RunState.FAILED, failure("limit", too_big))
        limits = agent.limits
        cgroup, applied = self.processes.run_cgroup(
            run["id"], limits.memory_mb * 2**20 if limits.memory_mb else None, limits.processes
        )
        run["applied"] = applied + prepared.labels()
        policy_args = {
            "run_id": run["id"],
            "workdir": str(workdir),
            "max_frame": self.config.frame_max_bytes,
            "limits": limits_dict(limits),
            "confine_module": prepared.plan.module,
            "confine": prepared.plan.spec,
            "memory_accounted": "memory.max" in applied,
        }
        try:
            secret_env = {name: value for name, value in prepared.env.items() if name not in for_tools}
            env = {**agent_env(agent, workdir, self.environ), **secret_env}
            child = await self.processes.spawn(
                policy_args, workdir, env, cgroup, prepared.plan.wrap, prepared.plan.namespaced, prepared.plan.seccomp
            )
        except OSError as exc:
            return Outcome(
                RunState.INTERRUPTED, failure("spawn", f"could not start the agent's process: {exc}"), retry=True
            )
        if run["id"] in self._cancelling:  # cancelled while it was being spawned
            self.processes.kill_tree(child)
        log.info("run started", attempt=run["attempt"], pid=child.pid, trigger=run.get("trigger"))
        if replay is None:
            attempt = Attempt(self._shared(), run, agent, log, welcome, workdir, mcp_headers)
        else:
            attempt = ReplayAttempt(self._shared(), run, agent, log, welcome, workdir, replay)
        outcome = await attempt.execute(child)
        outcome.error, outcome.result = self.logs.redaction.redact((outcome.error, outcome.result))
        return outcome

    def _welcome_too_big(self, agent: AgentConfig, welcome: dict[str, Any]) -> str | None:
        """Why the run cannot start, when its welcome (the agent's state, its input) would not
        fit in one wire frame: the child would refuse it and the run crash on every attempt."""
        limit = self.config.frame_max_bytes
        size = len(pack({"t": "welcome", "v": 1, "run": welcome})) + WELCOME_MARGIN
        if size <= limit:
            return None
        state, given = len(pack(welcome["state"])), len(pack(welcome["input"]))
        return (
            f"the run cannot start: its welcome frame would be {size / MiB:.1f} MiB, over the wire's "
            f"{limit / MiB:.1f} MiB ([corral] frame_max_bytes); it carries the agent's state as the run first saw "
            f"it ({state / MiB:.1f} MiB) and the run's input ({given / MiB:.1f} MiB). See the state with `corral "
            f"state {agent.name}`, delete what it no longer needs with `corral state {agent.name} --delete KEY` "
            "and start a new run (this one keeps the state it first saw), or raise [corral] frame_max_bytes"
        )

    def _mcp_headers(self, agent: AgentConfig) -> dict[str, dict[str, str]]:
        """The headers of the HTTP MCP servers ``agent`` is granted tools of, their secrets
        filled in from the secrets store and added to the redactor; blocking."""
        headers: dict[str, dict[str, str]] = {}
        servers = self.config.mcp
        for name in {parts[0] for grant in agent.tools if (parts := split_grant(grant)) and parts[0] in servers}:
            server = servers[name]
            if server.transport != "http":
                continue
            try:
                values = self.sandbox.secrets.grant(server.secrets)
            except SecretsError as exc:
                raise SecretsError(f"[mcp.{name}] headers: {exc}") from None
            self.logs.redaction.add(values)
            headers[name] = server.filled_headers(values)
        return headers

    def _shared(self) -> Shared:
        """What an attempt uses, as the config is now."""
        return Shared(
            writer=self.writer,
            records=self.records,
            processes=self.processes,
            approvals=self.approvals,
            models=self.models,
            tools=self.plugins.tools,
            guardrails=self.plugins.guardrails,
            validator=self.validator,
            redact=self.logs.redaction.redact,
            draining=lambda: self.draining,
            cancelling=self.cancelling,
            pause=self.pause_agent,
            max_tool_args_bytes=self.config.max_tool_args_bytes,
            breakers=self.breakers,
            mcp=self.config.mcp,
            tool_config=self.config.tools,
        )
