"""The vocabulary guardrails speak: what the agent asks (:class:`Action`) and the answer."""

from __future__ import annotations

import enum
import functools
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Protocol

from corral.wire import fingerprint

if TYPE_CHECKING:
    from corral.config import AgentConfig


class Verdict(enum.StrEnum):
    """What happens to the call. ``warn`` refuses this call with a warning, so the model
    changes course; ``deny`` refuses it for good reason; ``approve`` waits for a human."""

    WARN = "warn"
    DENY = "deny"
    APPROVE = "approve"
    STOP = "stop"


@dataclass(frozen=True, slots=True)
class Decision:
    """A guardrail's answer other than "allow"; ``reason`` is shown to the agent and in the trace."""

    verdict: Verdict
    reason: str
    guardrail: str = ""

    def to_dict(self) -> dict[str, str]:
        return {"verdict": self.verdict.value, "reason": self.reason, "guardrail": self.guardrail}


@dataclass(frozen=True)
class Action:
    """A model or tool call the agent asks for; ``high_stakes`` is the tool's flag."""

    seq: int
    kind: str
    name: str
    args: dict[str, Any]
    now: float
    high_stakes: bool = False

    @functools.cached_property
    def fp(self) -> str:
        """The journal's fingerprint of (kind, name, args): equal for identical requests.
        Computed when a guard first asks (most steps never need it)."""
        return fingerprint(self.kind, self.name, self.args)


class RunGuard(Protocol):
    """One guardrail's view of one run."""

    def before(self, action: Action) -> Decision | None:
        """Before a model or tool call is journaled: None allows it."""

    def after(self, step: dict[str, Any]) -> Decision | None:
        """After a step is durable (``step`` is its journal entry; one answered from the journal
        on resume as stored: a model step may hold only its new messages and ``shared``);
        only ``stop`` has an effect."""


class Guardrail(Protocol):
    """A registered guardrail; ``name`` appears in the journal and ``corral trace``."""

    name: str

    def start(self, run: dict[str, Any], agent: AgentConfig) -> RunGuard | None:
        """A guard for this run, or None when this guardrail does not apply to ``agent``."""
