"""Which run or approval request the user means, from all of its id or a unique part.

Every command that takes a run id (``trace``, ``cancel``, ``retry``, ``release``,
``logs --run``) or an approval id (``approve``, ``deny``) resolves it here, from the
store opened read-only, before it acts: with the daemon up the full id is what goes over
the control socket, with the daemon down it is what the foreground engine gets. A part
matches an id it equals, starts or ends (the 8 characters ``corral logs`` shows can be
pasted back). An empty or impossible part is a usage error, a part matching several ids
lists them (also a usage error), a part matching none is "not found".
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from functools import partial
from typing import Any

from corral.cli.common import EXIT_NOT_FOUND, EXIT_USAGE, Exit, reader
from corral.config import CorralConfig

ID_DIGITS = frozenset("0123456789abcdef")
"""Run ids (``corral.store.new_run_id``) and approval ids (``corral.run.approvals.new_id``) are lowercase hex."""

SHOWN = 5
"""How many candidates an ambiguous part lists (in id order: runs newest first)."""

RUNS, APPROVALS = "`corral runs`", "`corral approvals --all`"
"""The commands that list what a user can name."""


def run_id(config: CorralConfig, part: str) -> str:
    """The full id of the run ``part`` names, read from ``config``'s store."""
    text = _clean(part, "run", RUNS)  # before the store: an empty id is wrong even where there is none
    store, records = reader(config)
    try:
        with store.read() as txn:
            return _pick(text, "run", records.run_ids(txn), partial(records.get_run, txn), RUNS)
    finally:
        store.close()


def approval_id(config: CorralConfig, part: str) -> str:
    """The full id of the approval request ``part`` names, read from ``config``'s store."""
    from corral.run.approvals import Approvals
    from corral.store import Records

    text = _clean(part, "approval", APPROVALS)
    store, _ = reader(config)
    try:
        with store.read() as txn:
            approvals = {r["id"]: r for r in Approvals(Records(store.dbs)).all(txn)}
    finally:
        store.close()
    return _pick(text, "approval request", approvals, approvals.get, APPROVALS)


def _clean(part: str, kind: str, listing: str) -> str:
    text = part.strip().lower()
    if not text:
        raise Exit(
            EXIT_USAGE,
            f"corral: the {kind} id is empty; give it, or a unique part of its start or end ({listing} lists them)",
        )
    if not set(text) <= ID_DIGITS:
        raise Exit(EXIT_USAGE, f"corral: {_cut(part)!r} is no part of a {kind} id: ids are hex digits (0-9, a-f)")
    return text


def _pick(
    text: str, kind: str, ids: Iterable[str], record: Callable[[str], dict[str, Any] | None], listing: str
) -> str:
    matches = []
    for candidate in ids:
        if candidate == text:
            return candidate
        if candidate.startswith(text) or candidate.endswith(text):
            matches.append(candidate)
    if not matches:
        raise Exit(EXIT_NOT_FOUND, f"corral: no {kind} matches {_cut(text)!r}; {listing} lists them")
    if len(matches) == 1:
        return matches[0]
    matches.sort(reverse=True)  # run ids sort by creation time
    shown = []
    for candidate in matches[:SHOWN]:
        found = record(candidate) or {}
        shown.append(f"{candidate} ({found.get('agent', '?')}, {found.get('state', '?')})")
    more = f" and {len(matches) - SHOWN} more" if len(matches) > SHOWN else ""
    raise Exit(
        EXIT_USAGE,
        f"corral: {_cut(text)!r} matches {len(matches)} {kind}s: {', '.join(shown)}{more}; give more of the id",
    )


def _cut(text: str, width: int = 40) -> str:
    """``text`` short enough for a one-line message."""
    return text if len(text) <= width else text[: width - 1] + "…"
