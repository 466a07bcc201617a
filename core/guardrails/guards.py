"""All of one run's guards together, asked once per step on the step path."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from corral.guardrails.types import Action, Decision, Verdict

if TYPE_CHECKING:
    from corral.config import AgentConfig
    from corral.guardrails.types import Guardrail, RunGuard

_STRENGTH = {Verdict.WARN: 1, Verdict.DENY: 2, Verdict.APPROVE: 3, Verdict.STOP: 4}


class Guards:
    """Asks every guard (each must see every action to keep count) and keeps the strongest
    answer: stop, then approve, then deny, then warn. A guard that raises is logged once with
    its guardrail's name and left out for the rest of the run: one broken plugin does not
    stop every run, nor fill the log."""

    def __init__(self, guards: list[tuple[str, RunGuard]], log: Any) -> None:
        self.guards = guards
        self.log = log

    @classmethod
    def start(cls, guardrails: list[Guardrail], run: dict[str, Any], agent: AgentConfig, log: Any) -> Guards:
        guards = []
        for guardrail in guardrails:
            try:
                guard = guardrail.start(run, agent)
            except Exception as exc:  # noqa: BLE001 - a plugin's bug is reported, not fatal
                log.error("guardrail failed to start", guardrail=guardrail.name, error=f"{type(exc).__name__}: {exc}")
                continue
            if guard is not None:
                guards.append((guardrail.name, guard))
        return cls(guards, log)

    def before(self, action: Action) -> Decision | None:
        return self._strongest(lambda guard: guard.before(action))

    def after(self, step: dict[str, Any]) -> Decision | None:
        decision = self._strongest(lambda guard: guard.after(step))
        return decision if decision is not None and decision.verdict is Verdict.STOP else None

    def _strongest(self, ask: Any) -> Decision | None:
        best: Decision | None = None
        for name, guard in list(self.guards):
            try:
                decision = ask(guard)
            except Exception as exc:  # noqa: BLE001 - see the class docstring
                self.log.error(
                    "guardrail failed; ignored for the rest of this run",
                    guardrail=name,
                    error=f"{type(exc).__name__}: {exc}",
                )
                self.guards.remove((name, guard))
                continue
            if decision is None:
                continue
            if not decision.guardrail:
                decision = Decision(decision.verdict, decision.reason, name)
            if best is None or _STRENGTH[decision.verdict] > _STRENGTH[best.verdict]:
                best = decision
        return best
