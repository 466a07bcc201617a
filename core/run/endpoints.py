"""Which endpoint a ``[models.NAME]`` name means right now.

Most models name their endpoint in config. ``provider = "auto"`` (the example agents use
it) lets the daemon find one: an API key in its own environment, or a local Ollama. A
model whose key is missing, or for which nothing is found, is *not configured*: its calls
are answered with an error that says exactly what to set, and nothing crashes. Detection
is tried again after :data:`REDETECT_AFTER`, so starting Ollama later is noticed.
"""

from __future__ import annotations

import time
from collections.abc import Mapping
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from corral.config import CorralConfig
    from corral.models import Endpoint

REDETECT_AFTER = 60.0


class NotConfigured(Exception):
    """A model cannot be called yet; the message says what to add or set."""


class Endpoints:
    """Resolves model names to endpoints for the daemon, detecting ``auto`` ones once."""

    def __init__(self, config: CorralConfig, environ: Mapping[str, str], log: Any) -> None:
        self.config = config
        self.environ = environ
        self.log = log
        self._found: dict[str, tuple[Endpoint | str, float]] = {}

    def forget(self, name: str) -> None:
        """Find ``name``'s endpoint again at its next call (its settings changed on reload)."""
        self._found.pop(name, None)

    async def get(self, name: str) -> Endpoint:
        """The endpoint for ``name``; raises NotConfigured with the fix."""
        model = self.config.models.get(name)
        if model is None:  # removed by a reload while a run that was granted it goes on
            raise NotConfigured(f"model {name!r} is no longer in the config; add [models.{name}] back to call it")
        if model.missing_key:
            raise NotConfigured(
                f"model {name!r} is not configured: its API key is not in the daemon's environment; set "
                f'{model.missing_key} where corral runs ([models.{name}] api_key_env = "{model.missing_key}")'
            )
        if model.endpoint is not None:
            return model.endpoint
        found = self._found.get(name)
        if found is None or (isinstance(found[0], str) and time.monotonic() - found[1] > REDETECT_AFTER):
            found = (await self._detect(name), time.monotonic())
            self._found[name] = found
        if isinstance(found[0], str):
            raise NotConfigured(f"model {name!r} is not configured: {found[0]}")
        return found[0]

    async def _detect(self, name: str) -> Endpoint | str:
        from corral.models import detect
        from corral.models.detection import Undetected

        result = await detect(self.environ, name=name)
        if isinstance(result, Undetected):
            self.log.warning("model not configured", model=name, fix=result.message)
            return result.message
        self.log.info("model detected", model=name, provider=result.provider, base_url=result.base_url)
        return result
