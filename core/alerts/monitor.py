"""The daemon's timed alert checks: started after a crash, stuck runs, expected runs, retention.

Runs on the event loop, started and stopped by the alerting service. Everything it
reads comes from the store (a read transaction) or from the rules' own state, so it
never waits for a run.
"""

from __future__ import annotations

import asyncio
import os
import time
from collections.abc import Callable
from typing import TYPE_CHECKING, Any, Protocol

from corral.alerts.alert import Alert, Severity
from corral.alerts.deadman import DeadmanSwitch
from corral.alerts.outbox import Outbox
from corral.config.alerts import AlertsConfig, Expectation

if TYPE_CHECKING:
    from corral.alerts.rules import StuckRule
    from corral.store import Records, Store, Writer


class ChecksService(Protocol):
    """What the checks need of the alerting service."""

    outbox: Outbox
    config: AlertsConfig

    def raise_alert(self, alert: Alert) -> None: ...


RETENTION_DAYS = 30.0
"""Delivered alerts older than this are removed from the store."""
PRUNE_INTERVAL = 3600.0
_RUNS_LOOKED_AT = 500  # per expectation check: enough for a day of runs every few minutes


class Monitor:
    """Owned by the alerting service in the daemon."""

    def __init__(
        self,
        alerting: ChecksService,
        store: Store,
        records: Records,
        writer: Writer,
        log: Any,
        stuck: StuckRule | None,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self._alerting = alerting
        self._store, self._records, self._writer, self._log = store, records, writer, log
        self._stuck = stuck
        self._clock = clock
        self._tasks: list[asyncio.Task[None]] = []
        self.started = clock()
        self._deadman = DeadmanSwitch(alerting.config.deadman, log) if alerting.config.deadman else None

    async def start(self) -> None:
        outbox, pid, now = self._alerting.outbox, os.getpid(), self._clock()
        previous = await self._writer.run(lambda txn: outbox.daemon_started(txn, pid, now))
        if previous is not None and previous.get("running"):
            self._alerting.raise_alert(
                Alert(
                    key="daemon:crashed",
                    severity=Severity.CRITICAL,
                    title="corral daemon started after a crash",
                    body=f"the previous daemon (pid {previous.get('pid')}) did not stop cleanly; "
                    "unfinished runs are being resumed",
                    fields={"previous_pid": previous.get("pid"), "previous_started": previous.get("started")},
                )
            )
        self._tasks.append(asyncio.create_task(self._checks(), name="corral-alert-checks"))
        if self._deadman is not None:
            self._tasks.append(asyncio.create_task(self._deadman.serve(), name="corral-deadman"))

    async def stop(self) -> None:
        for task in self._tasks:
            task.cancel()
        await asyncio.gather(*self._tasks, return_exceptions=True)
        outbox, now = self._alerting.outbox, self._clock()
        await self._writer.run(lambda txn: outbox.daemon_stopped(txn, now))

    async def _checks(self) -> None:
        last_prune = 0.0
        while True:
            await asyncio.sleep(self._alerting.config.check_interval)
            try:
                if self._stuck is not None:
                    self._stuck.check()
                self.check_expectations()
                if time.monotonic() - last_prune > PRUNE_INTERVAL:
                    last_prune = time.monotonic()
                    await self.prune()
            except Exception as exc:  # a check's bug must not end the checks
                self._log.error("alert checks failed", error=f"{type(exc).__name__}: {exc}")

    async def prune(self) -> int:
        outbox, before = self._alerting.outbox, self._clock() - RETENTION_DAYS * 86400
        removed: int = await self._writer.run(lambda txn: outbox.prune(txn, before))
        return removed

    def check_expectations(self) -> None:
        """Alert for each agent without a qualifying success in its window; all-clear when one comes."""
        now = self._clock()
        records = self._records
        with self._store.read() as txn:
            found = {
                agent: records.list_runs(txn, agent, limit=_RUNS_LOOKED_AT) for agent in self._alerting.config.expect
            }
        for agent, runs in found.items():
            expectation = self._alerting.config.expect[agent]
            problem = judge(expectation, runs, now, self.started)
            key = f"expected:{agent}"
            if problem is None:
                self._alerting.raise_alert(
                    Alert(
                        key=key,
                        severity=Severity.INFO,
                        title=f"{agent!r} ran as expected again",
                        agent=agent,
                        resolved=True,
                    )
                )
            else:
                title, body = problem
                self._alerting.raise_alert(
                    Alert(key=key, severity=Severity.WARNING, title=title, body=body, agent=agent)
                )


def judge(expect: Expectation, runs: list[dict[str, Any]], now: float, watched_since: float) -> tuple[str, str] | None:
    """None when ``runs`` (newest first) meet ``expect`` at ``now``, else (title, body) saying what is missing.

    A success counts only with at least ``min_steps`` journaled steps and, with
    ``require_result``, a result: a run that succeeded without doing anything is not
    health. Nothing is judged before a whole window was watched (``watched_since``, or
    the agent's oldest run if older).
    """
    window = f"{expect.succeeded_within:g}s"
    last_success: dict[str, Any] | None = None
    for run in runs:
        if run["state"] != "succeeded":
            continue
        last_success = last_success or run
        if expect.min_steps and run.get("steps", 0) < expect.min_steps:
            continue
        if expect.require_result and run.get("result") is None:
            continue
        if now - run.get("ended", run["created"]) <= expect.succeeded_within:
            return None
        break
    oldest = runs[-1]["created"] if runs else watched_since
    if now - min(oldest, watched_since) <= expect.succeeded_within:
        return None  # not watched for a whole window yet
    title = f"no successful run of {expect.agent!r} in the last {window}"
    if last_success is None:
        return title, f"none of its last {len(runs)} runs succeeded"
    if now - last_success.get("ended", last_success["created"]) <= expect.succeeded_within:
        title = f"{expect.agent!r} succeeded without doing what is expected in the last {window}"
        wanted = []
        if expect.min_steps:
            wanted.append(f"at least {expect.min_steps} steps (it had {last_success.get('steps', 0)})")
        if expect.require_result:
            wanted.append("a result (it returned nothing)")
        return title, f"run {last_success['id']} succeeded but a healthy run has " + " and ".join(wanted)
    return title, f"its last success was run {last_success['id']}"
