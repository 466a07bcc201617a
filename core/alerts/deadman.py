"""The dead-man's switch: the daemon pings a URL on an interval while it is alive.

A service such as healthchecks.io (or any HTTP endpoint that expects regular pings)
then notices when the pings stop: the machine is off, the network is down, or corral
is not running, which no alert from corral itself could report. A failed ping is
logged and tried again at the next interval; the URL is a secret (it identifies the
check) and is never logged, only its scheme and host; an error quoting it says
``[redacted:NAME]`` instead.
"""

from __future__ import annotations

import asyncio
from typing import Any

import httpx

from corral import __version__
from corral.config.alerts import Deadman
from corral.secrets import Redactor, redact_url, url_pieces


class DeadmanSwitch:
    """Pings ``config.url`` at once and then every ``config.every`` seconds."""

    def __init__(self, config: Deadman, log: Any) -> None:
        self._config = config
        self._log = log
        self._redactor: Redactor | None = None  # compiled at the first failure
        self.failures = 0

    async def serve(self) -> None:
        failing = False
        async with httpx.AsyncClient(
            timeout=self._config.timeout, headers={"User-Agent": f"corral/{__version__}"}
        ) as client:
            while True:
                error = await self.ping(client)
                if error is not None:
                    self._log.warning("dead-man's switch ping failed", target=self.target(), error=error)
                elif failing:
                    self._log.info("dead-man's switch ping works again", target=self.target())
                failing = error is not None
                await asyncio.sleep(self._config.every)

    async def ping(self, client: httpx.AsyncClient) -> str | None:
        """One ping; None when the receiver answered 2xx, else why not (no secret in it)."""
        url = self._config.url.reveal()
        try:
            response = await client.get(url)
        except httpx.HTTPError as exc:
            self.failures += 1
            if self._redactor is None:
                self._redactor = Redactor(url_pieces(self._config.url))
            return self._redactor.redact_text(f"{type(exc).__name__}: {exc}")
        if not response.is_success:
            self.failures += 1
            return f"answered {response.status_code}"
        return None

    def target(self) -> str:
        return redact_url(self._config.url.reveal())
