"""Retries and circuit breakers of one attempt's tool calls, for the step path.

The daemon, not the child, decides every retry: the child runs one try and reports it
(``done``); for a failed try of a tool that retries, the child then waits while the daemon
journals the try in the step's entry (``tries``), waits the backoff on the writer thread's
clock (:meth:`corral.run.steps.Steps.deadline`), journals the next try's start and sends
``exec`` again with the same idempotency key. So every try is in the journal (and in
``corral trace``), the wait costs the agent's process nothing, and a crash at any point
follows the outcome-unknown rules: between tries the entry says no try is in flight
(``between_tries``), so the call is simply started again on resume, idempotent or not;
during a try it is an interrupted call like any other. The model sees one result: the
last try's, with how many tries were made.

Each call asks its downstream's breaker (:class:`corral.breaker.Breakers`, shared by every
agent) for leave just before a try is sent to the child, and hands the leave back with the
try's outcome: a transient failure counts against the downstream, a deliberate refusal
(``ToolError(retryable=False)``) proves it is up, and a failure that asks to wait
(``retry_after``: rate-limited) or any other (a bug in the tool) says nothing about it.
Nor does a failure of a call to a host the caller's own sandbox does not let it reach: an
agent with network "none" cannot open the breaker of a host other agents use.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from corral.breaker import DEFAULT_COOL_DOWN, DEFAULT_FAILURES, BreakerOpen, CircuitBreaker, Permit
from corral.config.tools import ToolConfig
from corral.retrypolicy import NextTry, RetryPolicy, next_try

if TYPE_CHECKING:
    from corral.breaker import Breakers
    from corral.tools import ToolSpec

_NO_CONFIG = ToolConfig()


@dataclass(frozen=True)
class ToolPolicy:
    """One tool's retries and breaker settings: the decorator's, with ``[tools.NAME]`` over them."""

    retry: RetryPolicy | None
    failures: int = DEFAULT_FAILURES
    cool_down: float = DEFAULT_COOL_DOWN

    @property
    def retries(self) -> bool:
        """Whether a failed call may be tried again (the child then waits for the daemon's word)."""
        return self.retry is not None and self.retry.retries > 0


def tool_policy(spec: ToolSpec, tools: Mapping[str, ToolConfig]) -> ToolPolicy:
    """The policy in force for ``spec`` under the config's ``[tools]`` tables."""
    table = tools.get(spec.name, _NO_CONFIG)
    return ToolPolicy(
        table.policy(spec.retry),
        table.breaker_failures or DEFAULT_FAILURES,
        table.breaker_cool_down or DEFAULT_COOL_DOWN,
    )


class ToolCalls:
    """The retry policy and breaker of each granted tool for one attempt, and the leaves out.

    Used on the store writer's thread only (the breakers themselves are shared and locked).
    """

    def __init__(
        self,
        granted: Mapping[str, ToolSpec | None],
        tools: Mapping[str, ToolConfig],
        breakers: Breakers,
        reaches: Callable[[str], bool],
    ) -> None:
        self._granted = granted  # read at each call: an MCP server's tools join it as the run lists them
        self._tools = tools
        self._policies: dict[str, ToolPolicy] = {}
        self._breakers = breakers
        self._permits: dict[int, tuple[CircuitBreaker, Permit]] = {}  # by seq: the breaker and leave of the try out
        self._reaches = reaches
        """Whether the calling run's network grant reaches a host (its sandbox's policy)."""
        self._walled: set[int] = set()
        """Steps whose tool declares a downstream host this run's sandbox does not reach."""

    def _spec(self, name: str) -> ToolSpec | None:
        """A plugin's tool; None for an MCP server's, whose calls keep their own retries and
        breaker (:mod:`corral.run.mcptools`), and for a name no plugin provides."""
        spec = self._granted.get(name)
        return spec if spec is not None and spec.server is None else None

    def _policy(self, spec: ToolSpec) -> ToolPolicy:
        if spec.name not in self._policies:
            self._policies[spec.name] = tool_policy(spec, self._tools)
        return self._policies[spec.name]

    def admit(self, seq: int, name: str, args: Mapping[str, Any]) -> str | None:
        """Leave for a try of step ``seq`` from its downstream's breaker; or why not (the model reads it)."""
        spec = self._spec(name)
        if spec is None:
            return None
        policy = self._policy(spec)
        downstream = spec.downstream_of(args)
        breaker = self._breakers.get(downstream, failures=policy.failures, cool_down=policy.cool_down)
        try:
            self._permits[seq] = (breaker, breaker.admit())
        except BreakerOpen as refused:
            return f"tool {name!r} was not called: {refused.message}"
        # a declared downstream is a host; a plugin's own name (the fallback) is not
        if spec.downstream is not None and not self._reaches(downstream.removeprefix("tool:")):
            self._walled.add(seq)
        return None

    def settle(self, seq: int, ok: bool, error: Mapping[str, Any] | None) -> None:
        """A try of step ``seq`` ended: tell its breaker how (nothing if no leave is out)."""
        taken = self._permits.pop(seq, None)
        walled = seq in self._walled
        self._walled.discard(seq)
        if taken is None:
            return
        breaker, permit = taken
        error = error or {}
        if not ok and walled:  # the caller's own sandbox may be what failed, not the host
            breaker.record_neutral(permit)
        elif ok or error.get("deliberate"):
            breaker.record_success(permit)
        elif error.get("retry_after") is not None:  # rate-limited: the downstream is up, and busy
            breaker.record_neutral(permit)
        elif error.get("transient"):
            breaker.record_failure(permit, str(error.get("message", "failed"))[:300])
        else:
            breaker.record_neutral(permit)

    def release(self, seq: int) -> None:
        """The try was never sent (its job failed to commit): give its leave back without a verdict."""
        taken = self._permits.pop(seq, None)
        self._walled.discard(seq)
        if taken is not None:
            taken[0].record_neutral(taken[1])

    def release_all(self) -> None:
        """The attempt ended with tries out (the child died): no verdict on any of them."""
        for seq in list(self._permits):
            self.release(seq)

    def next_try(self, name: str, number: int, error: Mapping[str, Any]) -> NextTry:
        """What follows failed try ``number`` of a call of ``name``."""
        spec = self._spec(name)
        if spec is None:
            return NextTry(None)
        return next_try(self._policy(spec).retry, number=number, idempotent=spec.idempotent, error=error)
