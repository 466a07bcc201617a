"""The log sink: every alert as one structured line in corral's own log.

Always on, so the log is the complete record of what was raised even when every
outside channel is down. The daemon hands in its structlog logger; the line is written
synchronously (a short file append, like every other corral log line).
"""

from __future__ import annotations

import logging
from collections.abc import Mapping
from typing import ClassVar

from structlog.typing import FilteringBoundLogger

from corral.alerts.alert import Alert, Severity
from corral.alerts.sinks.base import Sink
from corral.config.settings import Settings

_LEVELS = {Severity.INFO: logging.INFO, Severity.WARNING: logging.WARNING, Severity.CRITICAL: logging.CRITICAL}


class LogSink(Sink):
    """Writes ``alert raised`` / ``alert resolved`` events at the alert's level (resolved: info).

    Config: ``timeout`` only.
    """

    kind: ClassVar[str] = "log"
    default_timeout: ClassVar[float] = 5.0

    def __init__(
        self, config: Mapping[str, object], *, logger: FilteringBoundLogger, section: str | None = None
    ) -> None:
        self._logger = logger
        super().__init__(config, section=section)

    def _configure(self, settings: Settings) -> None:
        """No keys beyond ``timeout``."""

    def target(self) -> str:
        return "corral's log"

    async def _send(self, alert: Alert) -> None:
        level = logging.INFO if alert.resolved else _LEVELS[alert.severity]
        self._logger.log(
            level,
            "alert resolved" if alert.resolved else "alert raised",
            alert_id=alert.id,
            key=alert.key,
            severity=alert.severity.value,
            title=alert.title,
            body=alert.body,
            agent=alert.agent,
            run_id=alert.run_id,
            fields=dict(alert.fields),
            created=alert.created,
        )
