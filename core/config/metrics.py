"""``[metrics]``: the Prometheus endpoint, off unless ``port`` is given (docs/alerting.md)."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Annotated

from corral.config.kinds import AnyPort, Key, Loopback
from corral.config.problems import Problems


@dataclass(frozen=True)
class MetricsConfig:
    """``[metrics]``: where the Prometheus endpoint listens, if anywhere."""

    host: Annotated[Loopback, Key("metrics are served on 127.0.0.1 or ::1 only")] = "127.0.0.1"
    port: Annotated[AnyPort, Key()] | None = None


def read_metrics(p: Problems, data: object) -> MetricsConfig:
    """The ``[metrics]`` table (off when there is none)."""
    return p.read("metrics", data, MetricsConfig)
