"""Named databases, key encodings and the ordered list of schema migrations.

Keys are built only here, so the layout documented in docs/store.md has one source.
"""

from __future__ import annotations

import struct
from collections.abc import Callable
from typing import Any

import lmdb
import msgpack

from corral import packing

DATABASES = (
    *("meta", "runs", "journal", "snapshots", "state", "agent_runs", "active", "spend"),
    *("alerts", "outbox", "alert_keys"),
    *("pauses", "schedules"),
    *("approvals",),
    *("events",),
)
"""Every named database; ``max_dbs`` is sized from this tuple."""

SEQ = struct.Struct(">I")


def pack(value: Any) -> bytes:
    return packing.pack(value)


def unpack(data: bytes | memoryview) -> Any:
    return msgpack.unpackb(data, raw=False, strict_map_key=False)


def run_key(run_id: str) -> bytes:
    return run_id.encode("ascii")


def journal_key(run_id: str, seq: int) -> bytes:
    return run_id.encode("ascii") + b"/" + SEQ.pack(seq)


def journal_prefix(run_id: str) -> bytes:
    return run_id.encode("ascii") + b"/"


def state_key(agent: str, key: str) -> bytes:
    return agent.encode() + b"\x00" + key.encode()


def state_prefix(agent: str) -> bytes:
    return agent.encode() + b"\x00"


def state_size_key(agent: str) -> bytes:
    """``meta``'s record of the bytes ``agent``'s state holds (:func:`state_entry_size` summed)."""
    return b"state-bytes/" + agent.encode()


def state_entry_size(key: bytes, packed: bytes | memoryview) -> int:
    """What one state entry counts towards ``limits.state_mb``: its key (without the agent's
    prefix) and its packed value, about what it adds to the welcome frame that carries it."""
    return len(key) + len(packed)


def agent_run_key(agent: str, run_id: str) -> bytes:
    return agent.encode() + b"\x00" + run_id.encode("ascii")


Migration = Callable[[lmdb.Transaction, dict[str, Any]], None]


def _v1_initial(txn: lmdb.Transaction, dbs: dict[str, Any]) -> None:
    """Version 1: the databases above, created empty by opening them."""


def _v2_events(txn: lmdb.Transaction, dbs: dict[str, Any]) -> None:
    """Version 2: the ``events`` database (the durable event stream), created empty by opening it."""


def event_key(seq: int) -> bytes:
    return EVENT_SEQ.pack(seq)


EVENT_SEQ = struct.Struct(">Q")


def _v3_shared_messages(txn: lmdb.Transaction, dbs: dict[str, Any]) -> None:
    """Version 3: a model step's journal entry may be stored as the messages it added to the
    step before (``shared``, :mod:`corral.store.conversations`). Nothing to convert: old
    entries are whole and read as they are; the version is there so that an older corral,
    which would read a shared entry as the whole request, refuses the store instead."""


def _v4_state_sizes(txn: lmdb.Transaction, dbs: dict[str, Any]) -> None:
    """Version 4: each agent's state total in ``meta`` (``state-bytes/AGENT``), kept by every
    write so that ``limits.state_mb`` is checked without a scan; counted here once. An older
    corral, which would write state without keeping it, refuses the store."""
    totals: dict[bytes, int] = {}
    for raw_key, value in txn.cursor(db=dbs["state"]):
        agent, _, key = bytes(raw_key).partition(b"\x00")
        totals[agent] = totals.get(agent, 0) + state_entry_size(key, value)
    for agent, total in totals.items():
        txn.put(state_size_key(agent.decode()), pack(total), db=dbs["meta"])


MIGRATIONS: tuple[Migration, ...] = (_v1_initial, _v2_events, _v3_shared_messages, _v4_state_sizes)
"""Applied in order; the store's ``meta/schema`` holds how many have run. Append only."""

SCHEMA_VERSION = len(MIGRATIONS)
