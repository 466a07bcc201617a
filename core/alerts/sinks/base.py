"""What every sink shares: the error it raises, the timeout, and secret-free messages.

A sink is built once from its config table (validated then, so a typo surfaces at
``corral check``, not at 3 a.m. when the first alert fires) and then delivers alerts
one call at a time. :meth:`Sink.deliver` is the only entry point: it cuts the sink off
at its timeout, turns anything unexpected into a :class:`SinkError`, and replaces every
secret the sink was configured with by ``[redacted:NAME]`` in the error's message (with
:class:`corral.secrets.Redactor`), so nothing a caller logs can leak a password, token or
secret URL.
"""

from __future__ import annotations

import asyncio
import ssl
from abc import ABC, abstractmethod
from collections.abc import Mapping
from typing import ClassVar

from corral.alerts.alert import Alert
from corral.config.settings import Settings
from corral.errors import CorralError
from corral.secrets import Redactor, Secret


class SinkError(CorralError):
    """Operator: an alert sink could not deliver an alert.

    ``retryable`` says whether trying the same alert again later can help (a timeout, a
    refused connection, a 429 or 5xx) or not (a rejected login, a 404, a bad request):
    the outbox retries the first kind and gives up on the second. ``retry_after`` is the
    receiver's own hint, in seconds, when it sent one.
    """

    def __init__(self, message: str, *, retryable: bool, retry_after: float | None = None) -> None:
        self.retryable = retryable
        self.retry_after = retry_after
        super().__init__(message)


def certificate_rejected(exc: BaseException) -> bool:
    """Whether ``exc`` was caused by a failed TLS certificate check, however deep libraries wrapped it."""
    seen: BaseException | None = exc
    for _ in range(10):  # bounded: a cause chain can loop
        if seen is None:
            return False
        if isinstance(seen, ssl.SSLCertVerificationError):
            return True
        seen = seen.__cause__ or seen.__context__
    return False


class Sink(ABC):
    """Base of the built-in sinks: validated config, a timeout, and secret-free errors.

    Subclasses set ``kind``, read their settings in :meth:`_configure` and send in
    :meth:`_send`, raising errors made by :meth:`_error`.
    """

    kind: ClassVar[str]
    default_timeout: ClassVar[float] = 10.0

    def __init__(self, config: Mapping[str, object], *, section: str | None = None) -> None:
        self.section = section or f"alerts.{self.kind}"
        settings = Settings(self.section, config)
        self.timeout = settings.duration("timeout", self.default_timeout)
        self._configure(settings)
        settings.finish()
        self._secrets = settings.secrets()
        self._redactor: Redactor | None = None  # compiled at the first error: most sinks never fail

    def secrets(self) -> tuple[Secret, ...]:
        """Every secret this sink was configured with (a secret URL's pieces too): the daemon
        hides them from its logs and store as well as from this sink's errors."""
        return self._secrets

    @abstractmethod
    def _configure(self, settings: Settings) -> None:
        """Read and validate this sink's keys; every problem goes to ``settings``."""

    @abstractmethod
    async def _send(self, alert: Alert) -> None:
        """Deliver ``alert`` once; raise a SinkError from :meth:`_error` on failure."""

    @abstractmethod
    def target(self) -> str:
        """Where alerts go, safe to log: no secrets (a URL is cut to scheme and host)."""

    async def deliver(self, alert: Alert) -> None:
        """Deliver ``alert`` or raise :class:`SinkError`; gives up after ``timeout`` seconds."""
        failure: SinkError | None = None
        try:
            async with asyncio.timeout(self.timeout):
                await self._send(alert)
        except SinkError:
            raise
        except TimeoutError:
            failure = self._error(f"gave no answer within {self.timeout:g}s", retryable=True)
        except Exception as exc:  # a bug or an unforeseen library error: keep its secrets out
            failure = self._error(f"failed unexpectedly: {type(exc).__name__}: {exc}", retryable=False)
        if failure is not None:
            raise failure  # outside the except block: no chained exception to carry a secret

    def _error(self, message: str, *, retryable: bool, retry_after: float | None = None) -> SinkError:
        """A SinkError naming this sink, with every configured secret in ``message`` redacted."""
        if self._redactor is None:
            self._redactor = Redactor(self._secrets)
        text = self._redactor.redact_text(f"alert sink [{self.section}] ({self.kind} to {self.target()}): {message}")
        return SinkError(text, retryable=retryable, retry_after=retry_after)

    def __repr__(self) -> str:
        return f"<{type(self).__name__} [{self.section}] to {self.target()}>"
