"""The record of one try of a model call: what the retry loop, the errors, the logs and
the journal all say about it."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import asdict, dataclass
from typing import Any

SLEEP_THRESHOLD = 2.0
"""Seconds the host must have slept during a failed try for the sleep to take the blame.

Far above the clocks' read-to-read noise (microseconds), far below any real suspend."""


@dataclass(frozen=True, slots=True)
class Try:
    """One try of a model call, as it ended (a run's *attempt* is something else: :mod:`corral.run.attempt`).

    ``status`` is the HTTP status (``None`` when no answer came), ``kind`` and ``message``
    describe the failure (``None`` on success). ``held`` is the time spent waiting, before
    sending, for a ``Retry-After`` another caller of the endpoint was given; ``elapsed``
    the time from the start of the try to its end, ``held`` included, not counting any time
    the host slept. ``wait`` is the pause before the next try, ``None`` when none followed;
    ``retry_after`` what the server asked for. ``slept`` is non-zero on a try cut short by
    the host sleeping (a timeout or a dropped connection while it slept more than
    :data:`SLEEP_THRESHOLD`, during the try or the wait before it): the seconds it slept.
    Such a try is not the endpoint's failure, and does not count against ``retry_attempts``
    (up to the bound :class:`RetryStop` sets).
    """

    endpoint: str
    number: int
    status: int | None
    kind: str | None
    message: str | None
    elapsed: float
    held: float = 0.0
    wait: float | None = None
    retry_after: float | None = None
    request_id: str | None = None
    slept: float = 0.0

    @property
    def ok(self) -> bool:
        """Whether this try produced the response."""
        return self.kind is None

    def to_dict(self) -> dict[str, Any]:
        """Builtins only, for msgpack and log fields."""
        return asdict(self)

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> Try:
        """Read back :meth:`to_dict`."""
        return cls(**{key: data[key] for key in cls.__dataclass_fields__ if key in data})
