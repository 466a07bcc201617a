"""What every run's model calls share: the endpoints, the providers, one client (and so one
circuit breaker) per model, and the daily budgets.

A breaker's change of state is posted to the event stream (``breaker_changed``), where the
log line, the alert and the metric come from.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import TYPE_CHECKING, Any

from corral.run.budget import Ledger
from corral.run.endpoints import Endpoints
from corral.states import EventKind

if TYPE_CHECKING:
    from corral.config import CorralConfig
    from corral.models import Endpoint, ModelClient
    from corral.models.breaker import BreakerChange
    from corral.store import Records, Writer


class ModelAccess:
    """Owned by the engine, handed to each attempt's model caller."""

    def __init__(
        self,
        config: CorralConfig,
        environ: Mapping[str, str],
        providers: Mapping[str, Any],
        ledger: Ledger,
        writer: Writer,
        records: Records,
        log: Any,
    ) -> None:
        self.config = config
        self.endpoints = Endpoints(config, environ, log)
        self.providers = providers
        """Provider adapters by name, from the plugins (``corral_register_model_providers``)."""
        self.ledger = ledger
        """Today's model spend per agent and in total, for the daily budgets."""
        self._writer = writer
        self._records = records
        self._log = log
        self._clients: dict[str, ModelClient] = {}

    def reconfigure(self, config: CorralConfig) -> None:
        """Take a reloaded config for calls from now on; clients (and breakers) are kept."""
        self.config = self.endpoints.config = self.ledger.config = config

    def client(self, name: str, endpoint: Endpoint, adapter: Any) -> ModelClient:
        """The one client of model ``name`` (its circuit breaker shared by every run)."""
        if name not in self._clients:
            from corral.models import ModelClient

            self._clients[name] = ModelClient(
                endpoint, adapter=adapter, on_breaker_change=lambda change: self._breaker_changed(name, change)
            )
        return self._clients[name]

    def _breaker_changed(self, name: str, change: BreakerChange) -> None:
        data = {
            "model": name,
            "old": change.old.value,
            "new": change.new.value,
            "reason": change.reason,
            "retry_in": change.retry_in,
        }
        records = self._records
        try:
            self._writer.submit(lambda txn: records.post(txn, EventKind.BREAKER_CHANGED, data))
        except Exception as exc:  # noqa: BLE001 - the writer is closing: the call goes on regardless
            self._log.error("breaker change not recorded", model=name, error=f"{type(exc).__name__}: {exc}")

    async def close(self) -> None:
        """Close the clients' connections; call before the event loop ends."""
        clients, self._clients = list(self._clients.values()), {}
        for client in clients:
            await client.aclose()
