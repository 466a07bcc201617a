"""The daemon's circuit breakers, one registry for models, tools and MCP servers, and where
their changes go.

Every transition of a breaker (:class:`corral.breaker.Breakers`) is posted to the event
stream as ``breaker_changed`` (the log line, the alert and the metric come from it) and kept
in the store's ``meta`` database under ``breakers``, so ``corral status`` can show the
breakers that are not closed. A new daemon's breakers start closed: the record is cleared
when the registry is made.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from corral.breaker import BreakerChange, Breakers, BreakerState, describe
from corral.states import EventKind
from corral.store.schema import pack, unpack

if TYPE_CHECKING:
    import lmdb

    from corral.store import Records, Store, Writer

BREAKERS_KEY = b"breakers"
"""``meta`` key of the breakers that are not closed, by name."""


def daemon_breakers(store: Store, writer: Writer, records: Records, log: Any) -> Breakers:
    """The registry every run shares; its changes are posted and kept for ``corral status``."""
    db = store.dbs["meta"]

    def clear(txn: lmdb.Transaction) -> None:
        txn.delete(BREAKERS_KEY, db=db)

    def changed(change: BreakerChange) -> None:
        kind, name = describe(change.downstream)
        data: dict[str, Any] = {
            "downstream": change.downstream,
            "kind": kind,
            "name": name,
            "old": change.old.value,
            "new": change.new.value,
            "reason": change.reason,
            "retry_in": change.retry_in,
        }
        if kind == "model":
            data["model"] = name

        def job(txn: lmdb.Transaction) -> None:
            records.post(txn, EventKind.BREAKER_CHANGED, data)
            raw = txn.get(BREAKERS_KEY, db=db)
            known: dict[str, Any] = _record(raw) if raw else {}
            if change.new is BreakerState.CLOSED:
                known.pop(change.downstream, None)
            else:
                known[change.downstream] = {k: data[k] for k in ("kind", "name", "new", "reason", "retry_in")}
            txn.put(BREAKERS_KEY, pack(known), db=db)

        try:
            writer.submit(job)
        except Exception as exc:  # noqa: BLE001 - the writer is closing: the call goes on regardless
            log.error("breaker change not recorded", downstream=change.downstream, error=f"{type(exc).__name__}: {exc}")

    try:
        writer.submit(clear)
    except Exception as exc:  # noqa: BLE001 - a store that cannot be written fails the daemon elsewhere
        log.error("breaker record not cleared", error=f"{type(exc).__name__}: {exc}")
    return Breakers(on_change=changed)


def _record(raw: bytes | memoryview) -> dict[str, Any]:
    """The ``meta/breakers`` record: breaker name -> ``kind``, ``name``, ``new``, ``reason``, ``retry_in``."""

    value = unpack(bytes(raw))
    return value if isinstance(value, dict) else {}


def open_breakers(store: Store, txn: lmdb.Transaction) -> dict[str, Any]:
    """The breakers not closed, as the running daemon last recorded them (``corral status``)."""
    raw = txn.get(BREAKERS_KEY, db=store.dbs["meta"])
    return _record(raw) if raw else {}
