"""How an attempt of a run ended, as the engine records it."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from corral.states import RunState


@dataclass
class Outcome:
    """How an attempt ended; ``retry`` means the engine may start another attempt."""

    state: RunState
    error: dict[str, Any] | None = None
    result: Any = None
    retry: bool = False
    hold_reason: str | None = None


class RunEnded(Exception):
    """Raised where an attempt learns that its run is over (a journal decision, a stop)."""

    def __init__(self, outcome: Outcome) -> None:
        super().__init__(outcome.error.get("message") if outcome.error else outcome.state.value)
        self.outcome = outcome


def failure(kind: str, message: str) -> dict[str, Any]:
    return {"kind": kind, "message": message}


def resumable(error: dict[str, Any]) -> dict[str, Any]:
    """Mark a failure that ``corral retry`` can pick up from the journal once its cause is gone."""
    return {**error, "resumable": True}
