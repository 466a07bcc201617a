"""The observers: the event stream and what follows it (logs, metrics, telemetry)."""
