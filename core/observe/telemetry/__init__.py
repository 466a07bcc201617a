"""OpenTelemetry export of runs: a span per run, model call, tool call and state step,
and the GenAI client metrics, over OTLP/HTTP (docs/telemetry.md).

Needs the ``telemetry`` extra (``pip install 'corral[telemetry]'``); nothing outside this
package imports it, and the composition root does only when ``[telemetry]
otlp_endpoint`` is set. The engine never does: it posts events, this package observes them.
"""

from corral.observe.telemetry.observer import Telemetry

__all__ = ["Telemetry"]
