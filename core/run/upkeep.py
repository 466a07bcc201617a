"""Upkeep of the store's runs: at start-up, which unfinished runs resume and which are
abandoned; now and then, each agent's retention."""

from __future__ import annotations

import asyncio
import time
from typing import Any

from corral.config import CorralConfig
from corral.run.engine import change_state
from corral.run.outcome import failure
from corral.sandbox import command
from corral.sandbox.policy import tmpdir
from corral.states import FINISHED, RunState
from corral.store import Records, Writer


async def recover(
    records: Records, writer: Writer, config: CorralConfig, log: Any, dead_for: float | None = None
) -> list[str]:
    """Runs to resume after a restart; those too old are abandoned and reported.

    ``dead_for`` is how long the daemon had been gone (real time since its last sign of
    life within one boot, the wall-clock gap across a reboot): an unfinished run was
    alive until then, so it is its age. Without one (a store from before signs of life
    were kept) the age is the wall-clock time since the run was last updated.
    """
    max_age, now = config.max_resume_age, time.time()

    def age(run: dict[str, Any]) -> float:
        return dead_for if dead_for is not None else now - run.get("updated", run["created"])

    def job(txn: Any) -> tuple[list[str], list[dict[str, Any]]]:
        resume: list[str] = []
        abandoned: list[dict[str, Any]] = []
        for run in records.active_runs(txn):
            state = RunState(run["state"])
            if state is RunState.ON_HOLD:
                continue
            if age(run) > max_age:
                gone = f"the daemon was gone for {age(run):.0f}s"
                message = f"not resumed: {gone}, longer than max_resume_age ({max_age:g}s)"
                abandoned.append(
                    change_state(records, txn, run, RunState.ABANDONED, error=failure("abandoned", message))
                )
                continue
            if state is RunState.RUNNING:  # the daemon died under it
                change_state(records, txn, run, RunState.INTERRUPTED)
            resume.append(run["id"])
        return resume, abandoned

    resume, abandoned = await writer.run(job)
    loop = asyncio.get_running_loop()
    for run in abandoned:
        log.warning("run abandoned", run_id=run["id"], agent=run["agent"], reason=run["error"]["message"])
        # its last attempt died with the daemon and none follows: its end is now (a command's input)
        await loop.run_in_executor(None, command.remove_folders, tmpdir(config.workdir(run["agent"])), run["id"])
    if resume:
        log.info("resuming unfinished runs", count=len(resume))
    return resume


async def prune(records: Records, writer: Writer, config: CorralConfig, log: Any) -> int:
    """Apply each agent's retention (age and journal size); returns runs removed.

    A run record it cannot read (a state it does not know, times or sizes that are not
    numbers: a store edited by hand, or written by another version) is kept and named in a
    warning; one such record must not stop the daemon from starting."""
    now = time.time()
    retention = {name: (a.retention_days * 86400, a.retention_mb * 2**20) for name, a in config.agents.items()}

    def job(txn: Any) -> tuple[int, list[str]]:
        removed, unreadable = 0, []
        for agent, (max_age, max_bytes) in retention.items():
            runs = [r for r in (records.get_run(txn, i) for i in records.agent_run_ids(txn, agent)) if r]
            finished = []
            for run in runs:
                facts = _retention_facts(run)
                if facts is None:
                    unreadable.append(str(run.get("id")))
                elif facts[0]:
                    finished.append((run, facts[1], facts[2]))
            kept_bytes = sum(size for _, _, size in finished)
            for run, ended, size in finished:  # oldest first
                if now - ended > max_age or kept_bytes > max_bytes:
                    kept_bytes -= size
                    records.delete_run(txn, run)
                    removed += 1
        return removed, unreadable

    removed, unreadable = await writer.run(job)
    if removed:
        log.info("retention pruned runs", count=removed)
    if unreadable:
        log.warning(
            "retention kept run records it cannot read",
            count=len(unreadable),
            runs=unreadable[:10],
            detail="each is kept as it is; `corral trace RUN --json` shows what one holds",
        )
    return removed


def _retention_facts(run: dict[str, Any]) -> tuple[bool, float, int] | None:
    """(finished, when it ended or else was created, its journal bytes), or None when the
    record does not hold them as they should be."""
    try:
        finished = RunState(run["state"]) in FINISHED
    except (KeyError, ValueError):
        return None
    ended, size = run.get("ended", run.get("created")), run.get("journal_bytes", 0)
    if isinstance(ended, bool) or not isinstance(ended, int | float) or type(size) is not int:
        return None
    return finished, float(ended), size
