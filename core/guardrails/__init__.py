"""Guardrails: rules consulted before each model and tool call and after each step.

A guardrail is registered by a plugin through ``corral_register_guardrails`` (the
built-ins in :mod:`corral.plugins.guardrails` the same way). For each run it is asked
:meth:`Guardrail.start`; the :class:`RunGuard` it returns (or None: it does not apply to
this agent) sees every action of that run, in order, on the daemon's step path. Its
answer is a :class:`Decision`: allow (None), ``warn`` or ``deny`` (the call is refused
with the reason, which the agent or model reads and can act on), ``approve`` (a human
must approve the call first) or ``stop`` (the run ends). Every decision other than allow
is journaled with the guardrail's name and reason and shown by ``corral trace``.

Guards run on the store writer's thread, once per step: keep them to counting and
comparing (a few microseconds); never do I/O in one.
"""

from __future__ import annotations

from corral.guardrails.types import Action, Decision, Guardrail, RunGuard, Verdict

__all__ = ["Action", "Decision", "Guardrail", "RunGuard", "Verdict"]
