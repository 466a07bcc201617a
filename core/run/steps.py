"""The step path of one attempt: journal each request and answer it, on the writer thread.

:class:`Steps` serves the ``step``, ``done`` and ``reconciled`` frames of one child as the
store writer's thread reads them (see :mod:`corral.run.childwire`). A step becomes one writer
job that first records the outcomes the child reported since the last one (``done``),
then decides the step (:mod:`corral.run.journal`); its callback runs once that is durable and
sends the answer straight into the pipe. A ``done`` usually arrives just ahead of the
next step (the agent's code runs between them); one that is still alone after
:data:`DONE_LINGER` is journaled on its own, so a finished tool never waits long for the
agent's thinking to become durable, and a busy agent's done and next step share a commit.
When the journal ends the run (hold, non-determinism, a store failure), the attempt's
event-loop side learns it in order through the wire, as a :class:`corral.run.outcome.RunEnded`.
"""

from __future__ import annotations

import difflib
import functools
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import jsonschema_rs

from corral.errors import ProtocolError, StoreError
from corral.guardrails import Action
from corral.packing import pack
from corral.run.childwire import ChildWire, StepPath
from corral.run.journal import Answer, Journal
from corral.run.mcptools import McpCall, McpTools
from corral.run.modelcalls import ModelCall
from corral.run.outcome import Outcome, RunEnded, failure
from corral.run.quota import QuotaExceeded
from corral.states import RunState

if TYPE_CHECKING:
    from corral.guardrails.guards import Guards
    from corral.run.approvals import Approvals
    from corral.run.toolretries import ToolCalls
    from corral.store.writer import Callback, Job
    from corral.tools import ToolSpec


@dataclass(frozen=True)
class Guarding:
    """What the step path needs to apply guardrails: the run's guards, where approval
    requests go, the run they belong to, and how long one waits before it expires."""

    guards: Guards
    approvals: Approvals
    run: dict[str, Any]
    timeout: float


DONE_LINGER = 0.002
"""Seconds a reported tool outcome may wait for the agent's next step to share its commit."""


class Steps(StepPath):
    """Journal rules applied to one child's step-path frames, in the order they arrive."""

    HANDLES = frozenset({"step", "done", "reconciled"})

    def __init__(
        self,
        *,
        wire: ChildWire,
        journal: Journal,
        agent: str,
        granted: dict[str, ToolSpec | None],
        validator: Callable[[ToolSpec], jsonschema_rs.Draft202012Validator],
        draining: Callable[[], bool],
        log: Any,
        model_refusal: Callable[[str, dict[str, Any]], str | None] = lambda name, args: "no models are configured",
        max_args_bytes: int = 256 * 2**10,
        guarding: Guarding | None = None,
        redact: Callable[[Any], Any] = lambda value: value,
        mcp: McpTools | None = None,
        calls: ToolCalls | None = None,
    ) -> None:
        self.wire = wire
        self.journal = journal
        self.agent = agent
        self.granted = granted
        self.validator = validator
        self.draining = draining
        self.log = log
        self.model_refusal = model_refusal
        self.max_args_bytes = max_args_bytes  # [corral] max_tool_args_bytes
        self.guarding = guarding
        self.redact = redact
        """Hides granted secrets' values in what is journaled (arguments, outcomes)."""
        self.mcp = mcp
        """The agent's MCP servers: their lists add tools to ``granted`` as the run reads them."""
        self._listings: dict[int, tuple[str, list[dict[str, Any]] | None]] = {}
        """Steps whose stdio tool list the child was told to read: server, and the journal's list on a re-read."""
        self.open = False  # set by the attempt once the hello is checked, before the welcome
        self.next_seq = 1
        self.executing: int | None = None  # the step told to run (exec) whose done is awaited
        self._executing_name = ""  # the tool it runs
        self.calls = calls
        """The tools' retry policies and breakers (None: no retries, no breakers)."""
        self._retries: dict[int, float] = {}  # a tool step between tries -> when its next try is due (monotonic)
        self._dones: list[tuple[int, bool, Any, dict[str, Any] | None]] = []
        self._dones_since: float | None = None
        self.unjournaled: list[tuple[int, bool, Any, dict[str, Any] | None]] = []  # for the attempt's end
        self._over = False

    def take(self, message: dict[str, Any]) -> list[tuple[Job, Callback]]:
        if self._over:
            return []
        if not self.open:
            raise ProtocolError(f"{message['t']!r} before the welcome")
        kind = message["t"]
        if kind == "done":
            seq = message["seq"]
            if seq != self.executing:
                raise ProtocolError(f"done for step {seq}, but no tool was told to run it (exec'd: {self.executing})")
            self.executing = None
            spec = self.granted.get(self._executing_name)
            redact = self.redact
            ok, value, error = message["ok"], redact(message.get("value")), redact(message.get("error"))
            calls = self.calls
            if calls is not None:
                calls.settle(seq, ok, error)
            if seq in self._listings:
                return self._listed(seq, ok, value, error)
            if not ok and isinstance(error, dict) and error.get("kind") == "outcome_unknown" and spec and spec.server:
                why = str(error.get("message", "the call's outcome is unknown"))
                journal = self.journal
                return [self._job(seq, lambda txn: journal.unknown(txn, seq, why))]
            if not ok and message.get("waits") and calls is not None:  # the child waits for the daemon's word
                name, failed = self._executing_name, error or {}
                journal = self.journal
                plan = lambda number: calls.next_try(name, number, failed)  # noqa: E731
                return [self._job(seq, lambda txn: journal.failed_try(txn, seq, failed, plan))]
            self._dones.append((seq, ok, value, error))
            self._dones_since = self._dones_since or time.monotonic()
            return []
        if kind == "reconciled":
            seq, journal = message["seq"], self.journal
            decide = lambda txn: journal.reconciled(txn, seq, message["outcome"], message.get("value"))  # noqa: E731
            return [self._job(seq, self._admitted(seq, decide))]
        return self._step(message)

    def last_seq(self) -> int:
        return self.next_seq - 1

    def flush(self, *, now: float | None = None) -> list[tuple[Job, Callback]]:
        if self._over:
            return []
        jobs = self._next_tries(now) if now is not None else []  # without ``now``: the stream may be ending
        if not self._dones:
            return jobs
        if now is not None and self._dones_since is not None and self._dones_since + DONE_LINGER > now:
            return jobs  # the next step may still come and share the commit
        return [self._job(None, None), *jobs]

    def deadline(self) -> float | None:
        if self._over:
            return None
        due = [self._dones_since + DONE_LINGER] if self._dones_since is not None else []
        return min([*due, *self._retries.values()], default=None)

    def _next_tries(self, now: float) -> list[tuple[Job, Callback]]:
        """Jobs starting the next try of each tool step whose wait is over."""
        due = [seq for seq, at in self._retries.items() if at <= now]
        jobs: list[tuple[Job, Callback]] = []
        journal = self.journal
        for seq in due:
            del self._retries[seq]
            if self.draining():
                self.wire.send({"t": "abort", "reason": "the daemon is stopping; this run resumes when it is back"})
                self._end(
                    Outcome(
                        RunState.INTERRUPTED,
                        failure("stopped", "corral is stopping; the run resumes at its next start"),
                    )
                )
                return jobs
            jobs.append(self._job(seq, self._admitted(seq, functools.partial(_next_try, journal, seq))))
        return jobs

    def _step(self, message: dict[str, Any]) -> list[tuple[Job, Callback]]:
        seq, kind, name, args = message["seq"], message["kind"], message["name"], self.redact(message["args"])
        if seq != self.next_seq:
            raise ProtocolError(f"step {seq} out of order; expected step {self.next_seq}")
        self.next_seq += 1
        journal = self.journal
        if self.draining():
            jobs = self.flush()
            self.wire.send({"t": "abort", "reason": "the daemon is stopping; this run resumes when it is back"})
            self._end(
                Outcome(
                    RunState.INTERRUPTED, failure("stopped", "corral is stopping; the run resumes at its next start")
                )
            )
            return jobs
        if kind == "state":
            if name not in ("set", "delete") or not isinstance(args.get("key"), str):
                raise ProtocolError(f"state step must be set/delete with a string key, got {name!r}")
            return [self._job(seq, lambda txn: journal.state(txn, seq, name, args))]
        if kind == "model":
            refused = self.model_refusal(name, args)
            if refused:
                return [self._job(seq, lambda txn: journal.refuse(txn, seq, "model", name, args, refused))]
            decide = self._guarded(seq, kind, name, args, False, lambda txn: journal.model(txn, seq, name, args))
            return [self._job(seq, self._called_early(seq, decide))]
        if kind == "mcp":
            why = self.mcp.listing_refusal(name) if self.mcp is not None else "no MCP servers are configured"
            if why is not None:
                unlisted: str = why
                return [self._job(seq, lambda txn: journal.refuse(txn, seq, "mcp", name, args, unlisted))]
            return [self._job(seq, lambda txn: journal.listing(txn, seq, name, args))]
        if kind != "tool":
            raise ProtocolError(f"unknown step kind {kind!r}")
        refusal = self._refusal(name, args)
        if refusal:
            return [self._job(seq, lambda txn: journal.refuse(txn, seq, "tool", name, args, refusal))]
        spec = self.granted[name]
        assert spec is not None
        idempotent, can_reconcile = spec.idempotent, spec.reconcile is not None
        start = lambda txn: journal.tool(txn, seq, name, args, idempotent, can_reconcile)  # noqa: E731
        return [self._job(seq, self._admitted(seq, self._guarded(seq, kind, name, args, spec.high_stakes, start)))]

    def _called_early(self, seq: int, decide: Callable[[Any], Answer]) -> Callable[[Any], Answer]:
        """``decide``; a model call it decides to make leaves for the event loop at once, while
        its "started" entry commits, instead of after that commit.

        A model call has no side effect to double (an interrupted one is made again anyway),
        and its answer is journaled by a later writer round, so nothing the model says reaches
        the agent before both entries are durable. What it saves is a commit's wait, two
        syncs, on every model step: the door's latency (docs/benchmarks.md). The call goes
        early only when nothing else waits for the loop ahead of it (``ChildWire.deliver_early``)."""

        def early(txn: Any) -> Answer:
            decision = decide(txn)
            if decision.action != "call":
                return decision
            entry = decision.entry
            if not self.wire.deliver_early(ModelCall(seq, entry["name"], entry["args"], entry["executions"])):
                return decision
            return Answer("called", entry, decision.message)

        return early

    def _admitted(self, seq: int, decide: Callable[[Any], Answer | None]) -> Callable[[Any], Answer | None]:
        """``decide``, then, if it says run the tool, the leave of its downstream's breaker:
        while the breaker is open the step ends with an error the model reads, unsent."""
        calls, journal = self.calls, self.journal
        if calls is None:
            return decide

        def admitted(txn: Any) -> Answer | None:
            decision = decide(txn)
            if decision is None or decision.action != "exec":
                return decision
            entry = decision.entry
            refusal = calls.admit(seq, entry["name"], entry["args"])
            if refusal is None:
                return decision
            return journal.not_sent(txn, seq, {"kind": "breaker_open", "message": refusal, "type": "ToolCallError"})

        return admitted

    def _guarded(
        self,
        seq: int,
        kind: str,
        name: str,
        args: dict[str, Any],
        high_stakes: bool,
        decide: Callable[[Any], Answer],
    ) -> Callable[[Any], Answer]:
        """``decide``, unless a guardrail has something to say about this call first."""
        guarding = self.guarding
        if guarding is None:
            return decide
        action = Action(seq, kind, name, args, time.time(), high_stakes)
        verdict = guarding.guards.before(action)
        if verdict is None:
            return decide
        journal = self.journal
        return lambda txn: journal.guarded(
            txn, seq, kind, name, args, verdict, decide, guarding.approvals, guarding.run, guarding.timeout
        )

    def _refusal(self, name: str, args: dict[str, Any]) -> str | None:
        if name not in self.granted and self.mcp is not None and (why := self.mcp.tool_refusal(name)):
            return why
        if name not in self.granted:
            granted = ", ".join(sorted(self.granted)) or "none"
            near = difflib.get_close_matches(name, list(self.granted), n=1)
            hint = f"did you mean {near[0]!r}? " if near else ""
            return f"tool {name!r} is not granted to agent {self.agent!r}; {hint}granted tools: {granted}"
        if self.wire.max_bytes > self.max_args_bytes and (size := len(pack(args))) > self.max_args_bytes:
            return (
                f"arguments of tool {name!r} are {size} bytes, over the {self.max_args_bytes}-byte limit "
                "([corral] max_tool_args_bytes); pass less data, e.g. a file path instead of its content"
            )
        spec = self.granted[name]
        if spec is None:
            return (
                f"tool {name!r} is granted but no loaded plugin provides it; "
                "run `corral check` to see which plugin failed"
            )
        validator = self.mcp.validator(spec) if spec.server and self.mcp is not None else self.validator(spec)
        if validator.is_valid(args):
            return None
        problems = sorted(validator.iter_errors(args), key=lambda e: [str(p) for p in e.instance_path])
        if problems:
            details = "; ".join(_explain(e) for e in problems[:5])
            return f"invalid arguments for tool {name!r}: {details}"
        return None

    def _job(self, seq: int | None, decide: Callable[[Any], Answer | None] | None) -> tuple[Job, Callback]:
        """One writer job: the outcomes reported since the last job, then the decision."""
        journal, dones = self.journal, self._dones
        self._dones, self._dones_since = [], None

        def job(txn: Any) -> tuple[list[dict[str, Any] | None], Answer | None]:
            finished = [journal.done(txn, done_seq, ok, value, error) for done_seq, ok, value, error in dones]
            return finished, decide(txn) if decide is not None else None

        def callback(ok: bool, value: Any) -> None:
            if not ok:
                self.unjournaled += dones
                if seq is not None and self.calls is not None:
                    self.calls.release(seq)  # the try it admitted is never sent
                self._failed(value, seq)
                return
            finished, decision = value
            reports = [(entry, False) for entry in finished if entry is not None]
            if decision is not None and seq is not None:
                self._answer(seq, decision)
                if decision.action in ("replay", "result", "stop", "approval"):
                    reports.append((decision.entry, decision.action == "replay"))
            if reports:
                self._after(reports)

        return job, callback

    def after_step(self, entry: dict[str, Any]) -> Outcome | None:
        """A step finished off this path (a model call, made by the daemon) is durable: the
        guards see it as they see every other step. Returns how the run ends if one stops it."""
        return self._stopped_by([(entry, False)])

    def _after(self, reports: list[tuple[dict[str, Any], bool]]) -> None:
        """Show the guards each durable step; one may stop the run on what it sees."""
        outcome = self._stopped_by(reports)
        if outcome is not None:
            self._end(outcome)

    def _stopped_by(self, reports: list[tuple[dict[str, Any], bool]]) -> Outcome | None:
        if self.guarding is None or self._over:
            return None
        for entry, _ in reports:
            stop = self.guarding.guards.after(entry)
            if stop is not None:
                message = f"guardrail {stop.guardrail!r} stopped the run: {stop.reason}"
                self.log.warning("guardrail stopped the run", seq=entry.get("seq"), guardrail=stop.guardrail)
                self._over = True
                return Outcome(RunState.FAILED, {**failure("guardrail", message), "guardrail": stop.to_dict()})
        return None

    def _answer(self, seq: int, decision: Answer) -> None:
        if self._remote(seq, decision):
            return
        message = answer(seq, decision)
        if message is not None:
            self.wire.send(message)
        action = decision.action
        if action == "exec":
            self.executing, self._executing_name = seq, decision.entry.get("name", "")
        elif action == "retry":
            self._retries[seq] = time.monotonic() + (decision.entry["tries"][-1]["wait"] or 0.0)
        elif action in ("call", "called"):
            entry = decision.entry
            if entry.get("diverged"):
                self.log.warning(
                    "model request differs from the journal; calling the model from here on (on_divergence = live)",
                    seq=seq,
                    changed=entry["diverged"],
                )
            if action == "call":
                self.wire.deliver(ModelCall(seq, entry["name"], entry["args"], entry["executions"]))
        elif action == "protocol":
            self._over = True
            self.wire.forward(ProtocolError(decision.message))
        elif action == "hold":
            self.log.warning("run on hold", seq=seq, reason=decision.message)
            self._end(
                Outcome(RunState.ON_HOLD, failure("outcome_unknown", decision.message), hold_reason=decision.message)
            )
        elif action == "mismatch":
            self._end(Outcome(RunState.FAILED, failure("nondeterminism", decision.message)))
        elif action == "stop":
            guardrail = decision.entry.get("guardrail") or {}
            why = f"guardrail {guardrail.get('guardrail')!r} stopped the run: {decision.message}"
            self.log.warning("guardrail stopped the run", seq=seq, guardrail=guardrail.get("guardrail"))
            self._end(Outcome(RunState.FAILED, {**failure("guardrail", why), "guardrail": guardrail}))
        elif action == "approval":
            self.log.warning("run waits for approval", seq=seq, approval=decision.entry["approval"])
            error = {**failure("approval", decision.message), "approval": decision.entry["approval"]}
            self._end(Outcome(RunState.ON_HOLD, error, hold_reason=decision.message))

    def _remote(self, seq: int, decision: Answer) -> bool:
        """Answer a step that reads or calls an MCP server: an HTTP server is the daemon's to
        call (on the event loop); a stdio server's list is read by the child, as a tool runs.
        False for every other step."""
        entry, action = decision.entry, decision.action
        if action not in ("exec", "relist") or self.mcp is None:
            return False
        if entry.get("kind") == "mcp":
            server = entry["name"]
            journaled = entry.get("value") if action == "relist" else None
            if self.mcp.servers[server].transport == "http":
                self.wire.deliver(McpCall(seq, server, journaled=journaled))
                return True
            self._listings[seq] = (server, journaled)
            self.executing = seq
            self.wire.send({"t": "exec", "seq": seq, "key": entry.get("key", "")})
            return True
        spec = self.granted.get(entry.get("name", ""))
        if spec is None or spec.server is None or self.mcp.servers[spec.server].transport != "http":
            return False
        tool = entry["name"].split(".", 1)[1]
        self.wire.deliver(McpCall(seq, spec.server, tool, entry["args"], entry.get("key", "")))
        return True

    def _listed(self, seq: int, ok: bool, value: Any, error: Any) -> list[tuple[Job, Callback]]:
        """A stdio server's list, read by the child: journaled the first time; compared with the
        journal's on a later attempt (where a change ends the run)."""
        assert self.mcp is not None
        server, journaled = self._listings.pop(seq)
        if journaled is not None:
            ended = self.mcp.relisted(server, journaled, value if ok else None)
            if ended is not None:
                self._end(ended)
            return []
        if ok:
            value, why = self.mcp.accept(server, value)
            if why is not None:
                ok, value, error = False, None, {"kind": "failed", "type": "ToolCallError", "message": why}
        self._dones.append((seq, ok, value, error))
        self._dones_since = self._dones_since or time.monotonic()
        return []

    def _failed(self, exc: BaseException, seq: int | None) -> None:
        if isinstance(exc, StoreError):
            self._end(Outcome(RunState.INTERRUPTED, failure("store", str(exc)), retry=True))
            return
        if isinstance(exc, QuotaExceeded):  # the step's job was undone: the journal ends before it
            self.log.warning("run over its store quota", seq=seq, reason=str(exc))
            self._end(Outcome(RunState.FAILED, failure("limit", str(exc))))
            return
        reason = f"({type(exc).__name__}: {exc})"  # e.g. a value too deep to pack, a key LMDB cannot hold
        if seq is not None:
            message = f"step {seq} cannot be journaled {reason}; nothing was executed"
        else:
            message = f"a finished tool's outcome cannot be journaled {reason}"
        self._end(Outcome(RunState.FAILED, failure("journal", message)))

    def settle(self, txn: Any) -> None:
        """A writer job for the attempt's end: the outcomes a failed write left behind, so
        that a store error that has passed does not make a retry run a tool twice."""
        dones, self.unjournaled = self.unjournaled, []
        for done_seq, ok, value, error in dones:
            self.journal.done(txn, done_seq, ok, value, error)
        if self.calls is not None:
            self.calls.release_all()

    def _end(self, outcome: Outcome) -> None:
        self._over = True
        self.wire.forward(RunEnded(outcome))


def _next_try(journal: Journal, seq: int, txn: Any) -> Answer | None:
    return journal.next_try(txn, seq)


def answer(seq: int, decision: Answer) -> dict[str, Any] | None:
    """The message that answers step ``seq`` once ``decision`` is durable (None: no answer,
    the child broke the protocol)."""
    entry = decision.entry
    if decision.action in ("replay", "result"):
        replayed = decision.action == "replay"
        message: dict[str, Any] = {"t": "result", "seq": seq, "ok": entry["ok"], "replayed": replayed}
        if entry["ok"]:
            message["value"] = entry.get("value")
        else:
            message["error"] = entry.get("error") or {}
        return message
    if decision.action in ("exec", "reconcile"):
        return {"t": decision.action, "seq": seq, "key": entry["key"]}
    if decision.action in ("hold", "mismatch", "stop", "approval"):
        return {"t": "abort", "reason": decision.message}
    return None


def _explain(error: jsonschema_rs.ValidationError) -> str:
    where = "/".join(str(p) for p in error.instance_path) or "arguments"
    return f"{where}: {error.message}"
