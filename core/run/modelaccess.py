"""What every run's model calls share: the endpoints, the providers, one client per model
(with its circuit breaker from the daemon's registry, :mod:`corral.run.downstreams`), and
the daily budgets.
"""

from __future__ import annotations

import asyncio
import threading
from collections.abc import Mapping
from typing import TYPE_CHECKING, Any

from corral.run.budget import Ledger
from corral.run.endpoints import Endpoints

if TYPE_CHECKING:
    from corral.breaker import Breakers
    from corral.config import CorralConfig
    from corral.models import Endpoint, ModelClient


class ModelAccess:
    """Owned by the engine, handed to each attempt's model caller."""

    def __init__(
        self,
        config: CorralConfig,
        environ: Mapping[str, str],
        providers: Mapping[str, Any],
        ledger: Ledger,
        breakers: Breakers,
        log: Any,
    ) -> None:
        self.config = config
        self.endpoints = Endpoints(config, environ, log)
        self.providers = providers
        """Provider adapters by name, from the plugins (``corral_register_model_providers``)."""
        self.ledger = ledger
        """Today's model spend per agent and in total, for the daily budgets."""
        self._breakers = breakers
        self._clients: dict[str, ModelClient] = {}
        self._closing: set[asyncio.Future[None]] = set()  # old clients of changed models, closing
        self._failing_over: set[str] = set()
        self._failing_lock = threading.Lock()  # the event loop adds, the writer's thread removes

    def failing_over(self, name: str) -> bool:
        """Note that calls to model ``name`` fail over; True when that begins an episode."""
        with self._failing_lock:
            begins = name not in self._failing_over
            self._failing_over.add(name)
        return begins

    def answers_again(self, name: str) -> bool:
        """Note that model ``name`` answered; True when that ends its failing-over episode."""
        with self._failing_lock:
            ended = name in self._failing_over
            self._failing_over.discard(name)
        return ended

    def reconfigure(self, config: CorralConfig) -> list[str]:
        """Take a reloaded config for calls from now on; returns the models whose settings
        changed. A model that kept its settings keeps its client and breaker; a changed one
        gets a new client at its next call (its endpoint found again, for ``auto``), and its
        breaker forgets failures that were another endpoint's."""
        old = self.config.models
        changed = sorted(name for name, model in config.models.items() if name in old and old[name] != model)
        self.config = self.endpoints.config = self.ledger.config = config
        for name in changed:
            self.endpoints.forget(name)
            client = self._clients.pop(name, None)
            if client is not None:
                self._closing.add(asyncio.ensure_future(client.aclose()))
                self._closing = {task for task in self._closing if not task.done()}
            self._breakers.reset(name, "the model's settings changed on reload")
        return changed

    def client(self, name: str, endpoint: Endpoint, adapter: Any) -> ModelClient:
        """The one client of model ``name``; its circuit breaker is shared by every run."""
        if name not in self._clients:
            from corral.models import ModelClient

            breaker = self._breakers.get(
                name,
                failures=endpoint.breaker_failures,
                cool_down=endpoint.breaker_cool_down,
                label=f"model endpoint {endpoint.name!r}",
            )
            self._clients[name] = ModelClient(endpoint, adapter=adapter, breaker=breaker)
        return self._clients[name]

    async def close(self) -> None:
        """Close the clients' connections; call before the event loop ends."""
        clients, self._clients = list(self._clients.values()), {}
        for client in clients:
            await client.aclose()
