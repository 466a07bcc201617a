"""The ``schedules`` database: each schedule's fire times, and each agent's slow-down.

``s\\0KEY`` -> ``{"agent", "kind", "describe", "clock", "since", "last", "next", "due",
"fired", "skipped", "caught_up", "covered", "last_skip"}``: ``last`` is the nominal time
(on the trigger's ``clock``: wall or steady) of the last fire handled (run or skipped),
written in the same commit as the run it created, so a restart neither fires that time
again nor forgets it; ``covered`` keeps the wall-time spans handled before the clock was
set back; ``caught_up`` counts catch-ups since the last fire on time; ``next`` is on the
trigger's clock and ``due`` is when it fires by the wall clock, for ``corral status``.
``a\\0AGENT`` -> ``{"slowed": FACTOR, "since", "reason", "fires"}`` while the no-progress
rule has slowed the agent.
"""

from __future__ import annotations

from typing import Any

from corral.store.schema import pack, unpack


def _schedule_key(key: str) -> bytes:
    return b"s\x00" + key.encode()


def _agent_key(agent: str) -> bytes:
    return b"a\x00" + agent.encode()


def put_schedule(txn: Any, db: Any, key: str, record: dict[str, Any]) -> None:
    txn.put(_schedule_key(key), pack(record), db=db)


def all_schedules(txn: Any, db: Any) -> dict[str, dict[str, Any]]:
    """Every schedule on record (including those no longer in the config), by key."""
    out: dict[str, dict[str, Any]] = {}
    cursor = txn.cursor(db=db)
    if cursor.set_range(b"s\x00"):
        for key, raw in cursor:
            key = bytes(key)
            if not key.startswith(b"s\x00"):
                break
            out[key[2:].decode()] = unpack(bytes(raw))
    return out


def get_agent(txn: Any, db: Any, agent: str) -> dict[str, Any] | None:
    raw = txn.get(_agent_key(agent), db=db)
    return unpack(bytes(raw)) if raw else None


def put_agent(txn: Any, db: Any, agent: str, record: dict[str, Any] | None) -> None:
    if record is None:
        txn.delete(_agent_key(agent), db=db)
    else:
        txn.put(_agent_key(agent), pack(record), db=db)
