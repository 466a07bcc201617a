"""What the scheduler and the run queue ask of the run machinery: the engine's public
operations, named here so the schedule package never imports the engine."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, Protocol

from corral.config import CorralConfig


class Runs(Protocol):
    """Implemented by :class:`corral.run.engine.Engine`."""

    config: CorralConfig
    draining: bool
    log: Any

    async def create_run(
        self,
        agent: str,
        input: Any = None,
        trigger: str = "manual",
        *,
        also: Callable[[Any, dict[str, Any]], None] | None = None,
        **fields: Any,
    ) -> dict[str, Any]: ...

    async def execute(self, run_id: str) -> dict[str, Any]: ...

    async def cancel(self, run_id: str, reason: str = ...) -> dict[str, Any]: ...

    def paused(self, agent: str) -> dict[str, Any] | None: ...

    async def pause_agent(self, agent: str, reason: str, until: float | None = None) -> None: ...
