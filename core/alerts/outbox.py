"""The durable outbox: every alert stored before delivery, dedup state per alert key.

Three LMDB databases (docs/store.md), all written by the store writer's thread inside
its jobs, so an alert accepted is on disk before anything tries to send it, and one
still undelivered when the daemon dies is sent after the restart:

- ``alerts``: record key -> the stored alert, its targets and each sink's outcome.
  Record keys are 12 hex digits of the time it was stored in milliseconds, 6 of a
  counter, ``-`` and the alert id, so byte order is the order alerts were raised in.
- ``outbox``: record key -> ``b""`` while some target still has to be tried.
- ``alert_keys``: alert key -> whether the condition is open, when it was last sent,
  how many repeats were held back since.
"""

from __future__ import annotations

import hashlib
import time
from collections.abc import Iterator
from typing import Any

import lmdb

from corral.alerts.alert import Alert, Severity
from corral.states import EventKind
from corral.store import Records
from corral.store.schema import pack, unpack

_RANK = {Severity.INFO.value: 0, Severity.WARNING.value: 1, Severity.CRITICAL.value: 2}
_MAX_KEY_BYTES = 400  # LMDB keys stop at 511 bytes
_DAEMON = b"\x00daemon"  # not an alert key: alert keys are non-empty text, this starts with NUL


def _time_key(seconds: float) -> bytes:
    return f"{int(max(0.0, seconds) * 1000):012x}".encode()


def _dedup_key(key: str) -> bytes:
    raw = key.encode()
    return raw if len(raw) <= _MAX_KEY_BYTES else b"sha256:" + hashlib.sha256(raw).hexdigest().encode()


class Outbox:
    """Reads and writes of the three databases; every method takes the caller's transaction."""

    def __init__(self, records: Records) -> None:
        dbs = records.dbs
        self._records = records
        self._alerts = dbs["alerts"]
        self._outbox = dbs["outbox"]
        self._keys = dbs["alert_keys"]
        self._counter = 0  # orders alerts stored within one millisecond; only the writer thread counts

    def accept(
        self, txn: lmdb.Transaction, alert: Alert, targets: tuple[str, ...], repeat_after: float | None
    ) -> dict[str, Any] | None:
        """Store ``alert`` for delivery, or count it as a repeat; the record, or None when held back.

        Held back: the same key is open and was sent less than ``repeat_after`` ago at the
        same or a higher severity, or it is an all-clear for a key that is not open.
        """
        dkey = _dedup_key(alert.key)
        raw = txn.get(dkey, db=self._keys)
        state: dict[str, Any] = unpack(raw) if raw else {}
        is_open = bool(state.get("open"))
        repeats = int(state.get("held", 0))
        if alert.resolved:
            if not is_open:
                return None
            state.update(open=False, resolved=alert.created, held=0)
        elif (
            is_open
            and _RANK[alert.severity.value] <= _RANK[state["severity"]]
            and (repeat_after is None or alert.created - state["sent"] < repeat_after)
        ):
            state["held"] = repeats + 1
            txn.put(dkey, pack(state), db=self._keys)
            return None
        else:
            state = {
                "key": alert.key,
                "open": True,
                "severity": alert.severity.value,
                "since": state["since"] if is_open else alert.created,
                "sent": alert.created,
                "held": 0,
            }
        txn.put(dkey, pack(state), db=self._keys)
        self._counter = (self._counter + 1) % 0x1000000
        record: dict[str, Any] = {
            "key": f"{_time_key(time.time()).decode()}{self._counter:06x}-{alert.id}",
            "alert": alert.to_dict(),
            "targets": list(targets),
            "deliveries": {},
            "status": "pending",
            "repeats": repeats,
        }
        txn.put(record["key"].encode(), pack(record), db=self._alerts)
        txn.put(record["key"].encode(), b"", db=self._outbox)
        self._records.post(txn, EventKind.ALERT_RAISED, record["alert"], alert.run_id)
        return record

    def get(self, txn: lmdb.Transaction, key: str) -> dict[str, Any] | None:
        raw = txn.get(key.encode(), db=self._alerts)
        return unpack(raw) if raw else None

    def pending(self, txn: lmdb.Transaction) -> list[dict[str, Any]]:
        """Records with targets still to try, oldest first."""
        out = []
        for key in txn.cursor(db=self._outbox).iternext(keys=True, values=False):
            record = self.get(txn, bytes(key).decode())
            if record is not None:
                out.append(record)
        return out

    def outcome(self, txn: lmdb.Transaction, key: str, sink: str, result: dict[str, Any]) -> dict[str, Any] | None:
        """Write one sink's outcome (``ok``, ``at``, ``attempts``, ``error``, ``escalated_to``)."""
        record = self.get(txn, key)
        if record is None:
            return None
        record["deliveries"][sink] = result
        txn.put(key.encode(), pack(record), db=self._alerts)
        return record

    def finish(self, txn: lmdb.Transaction, key: str) -> dict[str, Any] | None:
        """Every target was tried: out of the outbox, with its final status."""
        txn.delete(key.encode(), db=self._outbox)
        record = self.get(txn, key)
        if record is None:
            return None
        outside = {name: d for name, d in record["deliveries"].items() if name != "log"}
        ok = any(d.get("ok") for d in outside.values()) or not outside
        record["status"] = "delivered" if ok else "failed"
        txn.put(key.encode(), pack(record), db=self._alerts)
        return record

    def since(self, txn: lmdb.Transaction, seconds: float) -> Iterator[dict[str, Any]]:
        """Alerts stored at or after ``seconds`` (epoch), oldest first."""
        cursor = txn.cursor(db=self._alerts)
        if not cursor.set_range(_time_key(seconds)):
            return
        for _, raw in cursor:
            yield unpack(raw)

    def open_keys(self, txn: lmdb.Transaction) -> set[str]:
        """Alert keys whose condition is open (raised, not yet resolved)."""
        found = set()
        for key, raw in txn.cursor(db=self._keys):
            state = unpack(raw)
            if key != _DAEMON and state.get("open"):
                found.add(state["key"])
        return found

    def prune(self, txn: lmdb.Transaction, before: float) -> int:
        """Delete delivered or failed records created before ``before``; returns how many."""
        cursor = txn.cursor(db=self._alerts)
        end = _time_key(before)
        doomed = []
        for key in cursor.iternext(keys=True, values=False):
            key = bytes(key)
            if key >= end:
                break
            if txn.get(key, db=self._outbox) is None:
                doomed.append(key)
        for key in doomed:
            txn.delete(key, db=self._alerts)
        return len(doomed)

    def daemon_started(self, txn: lmdb.Transaction, pid: int, now: float) -> dict[str, Any] | None:
        """Mark the daemon running; returns the previous mark, still "running" if that daemon died."""
        raw = txn.get(_DAEMON, db=self._keys)
        txn.put(_DAEMON, pack({"running": True, "pid": pid, "started": now}), db=self._keys)
        return unpack(raw) if raw else None

    def daemon_stopped(self, txn: lmdb.Transaction, now: float) -> None:
        """A clean stop: the next start is not after a crash."""
        raw = txn.get(_DAEMON, db=self._keys)
        mark = unpack(raw) if raw else {}
        txn.put(_DAEMON, pack({**mark, "running": False, "stopped": now}), db=self._keys)
