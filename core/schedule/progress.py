"""No-progress detection across runs: an agent whose last N scheduled runs all ended the
same way and changed nothing is slowed or paused, so an idle agent cannot burn tokens
for days.

"The same way" is the same end state, result and error message. "Changed nothing" is no
journaled step but model calls: a tool call or a ``ctx.state`` write is an effect.
Only runs started by a timed or event trigger count; ``corral run`` is the operator's.
"""

from __future__ import annotations

import json
from typing import Any

from corral.states import FINISHED, RunState
from corral.store import Records


def outcome(run: dict[str, Any]) -> str:
    """What "ended the same way" compares."""
    error = run.get("error") or {}
    return json.dumps([run["state"], run.get("result"), error.get("message")], sort_keys=True, default=str)


def has_effects(records: Records, txn: Any, run_id: str) -> bool:
    return any(step["kind"] != "model" and step.get("status") == "done" for step in records.steps(txn, run_id))


def stalled(records: Records, txn: Any, agent: str, count: int, since: float = 0.0) -> bool:
    """Whether the agent's last ``count`` scheduled runs (created after ``since``: the last time
    the operator resumed it) ended alike with no effects."""
    runs: list[dict[str, Any]] = []
    for run in records.list_runs(txn, agent, limit=count * 4 + 20):
        if run["created"] <= since:
            break
        if run.get("schedule") is None:
            continue
        if RunState(run["state"]) not in FINISHED:
            continue
        runs.append(run)
        if len(runs) == count:
            break
    if len(runs) < count or len({outcome(run) for run in runs}) != 1:
        return False
    return not any(has_effects(records, txn, run["id"]) for run in runs)
