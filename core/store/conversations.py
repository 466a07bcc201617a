"""A model step is stored with only the messages its conversation added since the step before.

Every request of a chat conversation carries the whole history, and a model step's
arguments are that request, so a run whose conversation has N turns would journal about
N²/2 turns: 50 turns that add 20 kB each filled 25.7 MB, and ``limits.journal_mb``'s
128 MiB was reached at about 115 turns (``benchmarks/journal_growth.py``). Here a model
entry whose messages begin with the whole of the run's previous model step's (the common
case: the same conversation, one answer and one question longer) is stored with the
messages after that shared beginning and ``shared = [base seq, count, depth]``; reading it
puts the base's first ``count`` messages back in front. Only the stored form changes: the
entry's fingerprint is the whole request's, taken before, so resume, replay and the
divergence check see what they always saw, and every reader gets whole entries from
:class:`corral.store.Records`. Every :data:`CHECKPOINT`-th link of a chain is stored whole,
so no read follows more than that many entries.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from corral.packing import pack

SHARED = "shared"
"""The stored entry's key: ``[base seq, messages taken from the base, depth in the chain]``."""
CHECKPOINT = 32
"""A chain's longest run of shared entries before one is stored whole again."""


def messages(entry: dict[str, Any] | None) -> list[Any] | None:
    """The messages of a model entry's request, else None (other kinds are never shared)."""
    if entry is None or entry.get("kind") != "model" or not isinstance(entry.get("args"), dict):
        return None
    found = entry["args"].get("messages")
    return found if isinstance(found, list) else None


def depth(stored: dict[str, Any]) -> int:
    """How many shared links lead from ``stored`` to an entry stored whole."""
    shared = stored.get(SHARED)
    return int(shared[2]) if shared else 0


def compact(entry: dict[str, Any], base_seq: int, base: list[Any], base_depth: int) -> dict[str, Any]:
    """``entry`` as it is stored, given the whole messages (``base``) of the previous model
    step ``base_seq`` and that step's depth: whole (``entry`` itself) when they share no
    beginning or the chain is long enough, else the messages after the shared beginning."""
    mine = messages(entry)
    if mine is None or not base or base_depth + 1 >= CHECKPOINT or len(mine) < len(base):
        return entry
    # compared packed: Python's == takes True, 1 and 1.0 (and 0.0, -0.0) for one value,
    # which would store a request other than the one sent; msgpack tells them apart
    if pack(mine[: len(base)]) != pack(base):
        return entry
    args = {**entry["args"], "messages": mine[len(base) :]}
    return {**entry, "args": args, SHARED: [base_seq, len(base), base_depth + 1]}


def expand(stored: dict[str, Any], base: list[Any] | None) -> dict[str, Any]:
    """The whole entry from its stored form and its base's whole messages. A base that is
    gone (it never is: see ``Records.put_step``) leaves the entry as stored, ``shared``
    and all, rather than a conversation with its beginning silently missing."""
    shared = stored.get(SHARED)
    if shared is None or base is None or len(base) < shared[1]:
        return stored
    whole = {key: value for key, value in stored.items() if key != SHARED}
    whole["args"] = {**stored["args"], "messages": base[: shared[1]] + stored["args"]["messages"]}
    return whole


def continues(stored: dict[str, Any]) -> tuple[int, int] | None:
    """``(base seq, messages)`` of a stored entry whose request begins with the first
    ``messages`` messages of step ``base seq``'s (whole) request, else None."""
    shared = stored.get(SHARED)
    return (int(shared[0]), int(shared[1])) if shared else None


def spelled(stored: dict[str, Any]) -> dict[str, Any]:
    """A stored entry as readers print it: ``shared`` spelled out as
    ``"continues": {"step": base seq, "messages": count}`` (its ``args.messages`` are the
    ones after those), so what is printed is what is stored, not the conversation again."""
    found = continues(stored)
    if found is None:
        return stored
    shown = {key: value for key, value in stored.items() if key != SHARED}
    return shown | {"continues": {"step": found[0], "messages": found[1]}}


def whole(stored: Mapping[int, dict[str, Any]], seq: int) -> dict[str, Any] | None:
    """Entry ``seq`` whole from a run's entries as stored, held by seq (a replay's journal):
    one entry at a time is expanded, when it is asked for."""
    entry = stored.get(seq)
    if entry is None or SHARED not in entry:
        return entry
    return expand(entry, messages(whole(stored, entry[SHARED][0])))
