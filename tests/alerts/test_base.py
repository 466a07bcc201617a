"""What every sink gets from the base class: the timeout cut-off and secret-free errors."""

from __future__ import annotations

import asyncio
import time
from typing import ClassVar

import pytest

from corral.alerts import Alert, Sink, SinkError
from corral.config.settings import Settings

from .receivers import assert_secret_free

SECRET = "base-SECRET-value"


class _Scripted(Sink):
    """A sink that behaves as the test says: hang, or fail with a library error quoting its secret."""

    kind: ClassVar[str] = "scripted"

    def _configure(self, settings: Settings) -> None:
        self.token = settings.secret("token", "a token")
        self.behaviour = settings.choice("behaviour", ("hang", "bug"), "hang")

    def target(self) -> str:
        return "nowhere"

    async def _send(self, alert: Alert) -> None:
        if self.behaviour == "hang":
            await asyncio.sleep(30)
        raise RuntimeError(f"library failed with token={self.token.reveal()}")


def test_a_hanging_send_is_cut_off_at_the_timeout(alert: Alert) -> None:
    sink = _Scripted({"token": SECRET, "timeout": 0.2})
    started = time.monotonic()
    with pytest.raises(SinkError) as caught:
        asyncio.run(sink.deliver(alert))
    assert time.monotonic() - started < 1
    assert caught.value.retryable
    assert str(caught.value) == "alert sink [alerts.scripted] (scripted to nowhere): gave no answer within 0.2s"


def test_an_unexpected_error_becomes_a_scrubbed_sink_error(alert: Alert) -> None:
    sink = _Scripted({"token": SECRET, "behaviour": "bug"}, section="alerts.sinks.mine")
    with pytest.raises(SinkError) as caught:
        asyncio.run(sink.deliver(alert))
    assert not caught.value.retryable
    assert str(caught.value) == (
        "alert sink [alerts.sinks.mine] (scripted to nowhere): failed unexpectedly: RuntimeError:"
        " library failed with token=[redacted:alerts.sinks.mine.token]"
    )
    assert caught.value.__context__ is None and caught.value.__cause__ is None
    assert_secret_free(caught.value, SECRET)


def test_cancellation_is_not_swallowed(alert: Alert) -> None:
    async def cancel_soon() -> None:
        task = asyncio.create_task(_Scripted({"token": SECRET, "timeout": 10}).deliver(alert))
        await asyncio.sleep(0.05)
        task.cancel()
        await task

    with pytest.raises(asyncio.CancelledError):
        asyncio.run(cancel_soon())
