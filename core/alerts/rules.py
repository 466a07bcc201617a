"""The alert rules that follow the event stream: a run failed, exhausted its retries, is on
hold, is in a crash loop or is stuck; an approval waits or was settled; a model's circuit
breaker opened or closed; a budget crossed a threshold.

The alerting service subscribes them to the events (:mod:`corral.observe.events`), so
they run on the background thread, in order, once per event, and raise alerts through the
service. Each condition has one alert key, and the event that clears it sends the all-clear.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from typing import Any, Protocol

from corral.alerts import Alert, Severity
from corral.breaker import describe, downstream_label
from corral.observe.events import Event
from corral.observe.failures import headline, where
from corral.states import EventKind, RunState

_GAVE_UP_KINDS = ("crash", "spawn", "store", "gave_up")


class RulesService(Protocol):
    """What the rules need of the alerting service."""

    def raise_alert(self, alert: Alert) -> None: ...

    def pause(self, agent: str, reason: str, until: float | None) -> None: ...

    def failures_before(self, agent: str, run_id: str) -> int:
        """Failures in a row the store remembers before ``run_id`` (since the last crash loop)."""

    def crash_loop_at(self, run_id: str) -> None:
        """Remember durably that ``run_id`` set off a crash loop."""


def _told(error: dict[str, Any]) -> str:
    """A failure as an alert's body says it: ``TYPE: message``, and where in the agent's code."""
    if not error:
        return ""
    at = where(error)
    return headline(error) + (f" (at {at})" if at else "")


def _retries_exhausted(error: dict[str, Any]) -> bool:
    return bool(error.get("resumable")) or error.get("kind") in _GAVE_UP_KINDS


class RunRules:
    """Run failed, retries exhausted, run on hold, crash loop: decided when a run ends."""

    def __init__(self, service: RulesService, crash_loop: int, crash_loop_pause: float | None) -> None:
        self._service = service
        self.crash_loop = crash_loop
        self.pause_for = crash_loop_pause
        self._failures: dict[str, int] = {}
        self._counted: dict[str, set[str]] = {}
        """Per agent, the runs counted in its current streak: a run retried by hand that fails
        again is still one run that failed, not another."""

    def __call__(self, event: Event) -> None:
        if event.ended:
            self._ended(event.run)

    def _ended(self, run: dict[str, Any]) -> None:
        state, agent, run_id = run["state"], run["agent"], run["id"]
        error = run.get("error") or {}
        if state == "succeeded":
            self._failures.pop(agent, None)
            self._counted.pop(agent, None)
            for key in (
                f"run-failed:{agent}",
                f"retries-exhausted:{agent}",
                f"not-configured:{agent}",
                f"crash-loop:{agent}",
            ):
                self._resolve(key, agent, run_id, f"agent {agent!r} succeeded again")
        if state != "on_hold":
            self._resolve(f"on-hold:{run_id}", agent, run_id, f"run {run_id} is no longer on hold")
        if state == "on_hold":
            self._raise(
                f"on-hold:{run_id}",
                Severity.CRITICAL,
                f"run of {agent!r} is on hold and needs a human",
                run.get("hold_reason") or error.get("message", ""),
                agent,
                run_id,
            )
        elif state in ("failed", "abandoned"):
            self._failed(run, error)

    def _failed(self, run: dict[str, Any], error: dict[str, Any]) -> None:
        agent, run_id = run["agent"], run["id"]
        kind = error.get("kind", "unknown")
        if kind == "not_configured":
            key, severity, title = (
                f"not-configured:{agent}",
                Severity.CRITICAL,
                f"run of {agent!r} failed: its model is not configured; once it is, `corral retry {run_id}` resumes it",
            )
        elif _retries_exhausted(error):
            key, severity, title = (
                f"retries-exhausted:{agent}",
                Severity.CRITICAL,
                f"run of {agent!r} failed after its retries ({kind})",
            )
            if error.get("resumable"):
                title += f"; `corral retry {run_id}` resumes it"
        else:
            key, severity, title = f"run-failed:{agent}", Severity.WARNING, f"run of {agent!r} {run['state']} ({kind})"
        self._raise(key, severity, title, _told(error), agent, run_id, attempt=run.get("attempt"))
        if not self.crash_loop:
            return
        counted = self._counted.setdefault(agent, set())
        if run_id in counted:
            return
        counted.add(run_id)
        if agent not in self._failures:  # first failure seen by this process: count what the store remembers
            self._failures[agent] = self._service.failures_before(agent, run_id)
        count = self._failures[agent] + 1
        self._failures[agent] = count
        if count < self.crash_loop:
            return
        self._failures[agent] = 0
        counted.clear()
        self._service.crash_loop_at(run_id)
        until = time.time() + self.pause_for if self.pause_for else None
        reason = f"crash loop: {count} runs failed in a row (last: {kind})"
        how = "until `corral resume " + agent + "`" if until is None else f"for {self.pause_for:g}s"
        self._raise(
            f"crash-loop:{agent}",
            Severity.CRITICAL,
            f"agent {agent!r} failed {count} times in a row and is paused {how}",
            _told(error),
            agent,
            run_id,
            failures=count,
        )
        self._service.pause(agent, reason, until)

    def _raise(
        self, key: str, severity: Severity, title: str, body: str, agent: str, run_id: str, **fields: Any
    ) -> None:
        self._service.raise_alert(
            Alert(key=key, severity=severity, title=title, body=body, agent=agent, run_id=run_id, fields=fields)
        )

    def _resolve(self, key: str, agent: str, run_id: str, title: str) -> None:
        self._service.raise_alert(
            Alert(key=key, severity=Severity.INFO, title=title, agent=agent, run_id=run_id, resolved=True)
        )


class StuckRule:
    """Run stuck: no step for ``stuck_after`` seconds while its process runs."""

    def __init__(self, service: RulesService, stuck_after: float, clock: Callable[[], float] = time.time) -> None:
        self._service = service
        self.after = stuck_after
        self._clock = clock
        self._lock = threading.Lock()
        self._active: dict[str, tuple[str, float]] = {}  # run id -> (agent, last sign of life)
        self._flagged: set[str] = set()

    def __call__(self, event: Event) -> None:
        run = event.run
        if event.ended:
            self._ended(run)
        elif event.kind is EventKind.STEP_DONE or (
            event.kind is EventKind.RUN_CHANGED and run["state"] == RunState.RUNNING.value
        ):
            self._seen(run["id"], run["agent"])

    def _ended(self, run: dict[str, Any]) -> None:
        with self._lock:
            self._active.pop(run["id"], None)
            flagged = run["id"] in self._flagged
            self._flagged.discard(run["id"])
        if flagged:
            self._clear(run["id"], run["agent"], f"run {run['id']} ended ({run['state']})")

    def _seen(self, run_id: str, agent: str) -> None:
        with self._lock:
            self._active[run_id] = (agent, self._clock())
            flagged = run_id in self._flagged
            self._flagged.discard(run_id)
        if flagged:
            self._clear(run_id, agent, f"run {run_id} of {agent!r} is making progress again")

    def check(self) -> None:
        """Alert once for each run silent for longer than ``stuck_after``; called on a timer."""
        now = self._clock()
        with self._lock:
            stuck = [
                (run_id, agent, now - last)
                for run_id, (agent, last) in self._active.items()
                if now - last > self.after and run_id not in self._flagged
            ]
            self._flagged.update(run_id for run_id, _, _ in stuck)
        for run_id, agent, silent in stuck:
            self._service.raise_alert(
                Alert(
                    key=f"stuck:{run_id}",
                    severity=Severity.WARNING,
                    title=f"run of {agent!r} made no step for {silent:.0f}s",
                    body=f"run {run_id} is running but has journaled nothing for {silent:.0f}s "
                    f"(stuck_after = {self.after:g}s)",
                    agent=agent,
                    run_id=run_id,
                    fields={"silent_s": round(silent)},
                )
            )

    def _clear(self, run_id: str, agent: str, title: str) -> None:
        self._service.raise_alert(
            Alert(key=f"stuck:{run_id}", severity=Severity.INFO, title=title, agent=agent, run_id=run_id, resolved=True)
        )


class NoticeRules:
    """Approvals, breakers, failovers and budgets: each event of these kinds is one alert."""

    def __init__(self, service: RulesService) -> None:
        self._service = service

    def __call__(self, event: Event) -> None:
        alert = {
            EventKind.APPROVAL_REQUESTED: _approval_waits,
            EventKind.APPROVAL_DECIDED: _approval_settled,
            EventKind.BREAKER_CHANGED: _breaker,
            EventKind.BUDGET_CROSSED: _budget,
            EventKind.MODEL_FAILOVER: _failover,
        }.get(event.kind)
        raised = alert(event.data, event.run.get("id")) if alert is not None else None
        if raised is not None:
            self._service.raise_alert(raised)


def _approval_waits(record: dict[str, Any], run_id: str | None) -> Alert:
    approval = record["id"]
    return Alert(
        key=f"approval:{approval}",
        severity=Severity.WARNING,
        title=f"agent {record['agent']!r} waits for approval {approval}",
        body=f"tool {record['tool']!r} needs a human's approval ({record['reason']}); "
        f"`corral approve {approval}` or `corral deny {approval} --reason ...`",
        agent=record["agent"],
        run_id=run_id,
        fields={"approval": approval},
    )


def _approval_settled(record: dict[str, Any], run_id: str | None) -> Alert:
    state = record["state"]
    return Alert(
        key=f"approval:{record['id']}",
        severity=Severity.WARNING if state == "expired" else Severity.INFO,
        title=f"approval {record['id']} for {record['tool']!r} {state}"
        + (f" by {record['decided_by']}" if record.get("decided_by") and state != "expired" else ""),
        body=record.get("decision_reason") or "",
        agent=record["agent"],
        run_id=run_id,
        resolved=True,
    )


def _breaker(change: dict[str, Any], run_id: str | None) -> Alert | None:
    """Opened: an alert; closed again: its all-clear; half-open (a trial call): nothing yet."""
    downstream = change.get("downstream") or change["model"]
    key, who = f"breaker:{downstream}", downstream_label(downstream)
    if change["new"] == "closed":
        title = f"{who}: circuit breaker closed again"
        return Alert(key=key, severity=Severity.INFO, title=title, body=change["reason"], resolved=True)
    if change["new"] != "open":
        return None
    kind, name = describe(downstream)
    title = f"{who}: circuit breaker opened"
    return Alert(key=key, severity=Severity.WARNING, title=title, body=change["reason"], fields={kind: name})


def _failover(change: dict[str, Any], run_id: str | None) -> Alert:
    """A model failing over: one alert per episode; its all-clear when it answers again."""
    model = change["model"]
    key = f"failover:{model}"
    if change["to"] is None:
        return Alert(key=key, severity=Severity.INFO, title=f"model {model!r} answers again", resolved=True)
    return Alert(
        key=key,
        severity=Severity.WARNING,
        title=f"model {model!r} failing over to {change['to']!r}",
        body=change["reason"],
        agent=change["agent"],
        run_id=run_id,
        fields={"model": model},
    )


def _budget(crossed: dict[str, Any], run_id: str | None) -> Alert:
    agent = crossed["agent"]
    if crossed["budget"] == "run":
        key, severity, title, body = (
            f"budget:run:{run_id}",
            Severity.WARNING,
            "a run reached its model budget",
            crossed["message"],
        )
    else:
        scope = crossed["scope"] or "all"
        if crossed["fraction"] >= 1.0:
            key, severity = f"budget:day:{scope}:{crossed['day']}:limit", Severity.CRITICAL
            title, body = "daily model budget spent", crossed["message"]
        else:
            who = f"agent {crossed['scope']!r}" if crossed["scope"] else "all agents together"
            measure = crossed["measure"]
            key = f"budget:day:{scope}:{crossed['day']}:{measure}:{crossed['fraction']:g}"
            severity = Severity.WARNING
            title = f"{who} used {crossed['fraction']:.0%} of the daily {measure.replace('_', ' ')} budget"
            body = f"{crossed['used']} of {crossed['cap']} on {crossed['day']}"
    return Alert(key=key, severity=severity, title=title, body=body, agent=agent, run_id=run_id)
