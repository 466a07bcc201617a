"""``[telemetry]``: where to export traces and metrics over OTLP/HTTP (docs/telemetry.md).

Off unless ``otlp_endpoint`` is given. Header values often hold a collector's token, so
they are kept as :class:`~corral.secrets.Secret` from the moment they are read, written
in the file (``headers``) or taken from the daemon's environment (``headers_env``, the
``KEY_env`` convention of the other sections). Exporting needs the ``telemetry`` extra;
a config that turns it on without the packages is refused here, with the command that
installs them, rather than at the first span.
"""

from __future__ import annotations

import importlib.util
import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Annotated, Any
from urllib.parse import urlsplit

from corral.config.kinds import EnvName, Flag, Key, PositiveInt, PositiveSeconds, Rule, Text, Wrong, read
from corral.config.problems import Problems, table_keys
from corral.secrets import Secret

SECTION = "telemetry"
INSTALL = "pip install 'corral[telemetry]'"
"""The command that installs what exporting needs."""
_HEADER_NAME = re.compile(r"^[!#$%&'*+.^_`|~0-9A-Za-z-]+$")  # RFC 9110 token


def _base_url(value: object) -> str:
    parts = urlsplit(value) if isinstance(value, str) else None
    if parts is None or parts.scheme not in ("http", "https") or not parts.hostname:
        raise ValueError(f"{value!r} is not the http:// or https:// base URL of an OTLP/HTTP receiver")
    return str(value).rstrip("/")


BaseUrl = Annotated[str, Rule("{value!r} is not an http:// or https:// URL", parse=_base_url)]


@dataclass(frozen=True)
class TelemetryConfig:
    """``[telemetry]``, validated. ``otlp_endpoint`` None: telemetry is off."""

    otlp_endpoint: (
        Annotated[BaseUrl, Key('e.g. otlp_endpoint = "http://127.0.0.1:4318" (corral adds /v1/traces and /v1/metrics)')]
        | None
    ) = None
    """Base URL of an OTLP/HTTP receiver; corral posts to ``/v1/traces`` and ``/v1/metrics`` under it."""
    headers: Mapping[str, Secret] = field(default_factory=dict)
    """Sent with every export (a collector's token): ``headers`` and ``headers_env``; values never shown."""
    capture_content: Annotated[Flag, Key()] = False
    """Export prompts, responses, tool arguments and results, state values (after redaction)."""
    service_name: Annotated[Text, Key('e.g. service_name = "corral"')] = "corral"
    export_interval: Annotated[PositiveSeconds, Key('e.g. export_interval = "5s"')] = 5.0
    """Seconds between exports of the batched spans and of the metrics."""
    timeout: Annotated[PositiveSeconds, Key('e.g. timeout = "10s"')] = 10.0
    """Seconds one export may take, retries included, before it is given up."""
    max_queue: Annotated[PositiveInt, Key("give how many spans may wait for export, e.g. max_queue = 2048")] = 2048
    """Spans held while waiting for export; beyond it new ones are dropped (bounded memory)."""
    metrics: Annotated[Flag, Key()] = True
    """Export metrics too (Jaeger, Tempo, Langfuse and Phoenix take traces only)."""

    @property
    def enabled(self) -> bool:
        return self.otlp_endpoint is not None

    def shown_endpoint(self) -> str:
        """Scheme, host and port of the endpoint: what logs and errors name (a path or query may hold a token)."""
        parts = urlsplit(self.otlp_endpoint or "")
        return f"{parts.scheme}://{parts.netloc.rpartition('@')[2]}"


def exporter_installed() -> bool:
    """Whether the OpenTelemetry SDK and OTLP/HTTP exporter can be imported (the ``telemetry`` extra)."""
    try:
        return all(
            importlib.util.find_spec(name) is not None
            for name in ("opentelemetry.sdk", "opentelemetry.exporter.otlp.proto.http")
        )
    except ModuleNotFoundError:  # a parent package is missing altogether
        return False


def read_telemetry(p: Problems, data: object, environ: Mapping[str, str]) -> TelemetryConfig:
    """``[telemetry]`` (off when there is none); ``headers_env`` values are read from ``environ``."""
    table = p.table(SECTION, data, 'a table, e.g. [telemetry] with otlp_endpoint = "http://..."')
    p.unknown(SECTION, table, [*table_keys(TelemetryConfig), "headers", "headers_env"])
    values = p.keys(SECTION, table, TelemetryConfig)
    if values.get("otlp_endpoint") is not None and not exporter_installed():
        p.fail(
            SECTION,
            "otlp_endpoint",
            f"exporting needs the OpenTelemetry packages, which are not installed; install them with {INSTALL}, "
            "or remove [telemetry] otlp_endpoint",
        )
        del values["otlp_endpoint"]
    return TelemetryConfig(**values, headers=_headers(p, table, environ))


def _headers(p: Problems, table: Mapping[str, Any], environ: Mapping[str, str]) -> dict[str, Secret]:
    """``headers`` (values written in the file) and ``headers_env`` (values from the daemon's
    environment), as secrets; a value is never quoted back in a message."""
    headers: dict[str, Secret] = {}
    for key, from_env in (("headers", False), ("headers_env", True)):
        example = '{ Authorization = "OTLP_AUTH" }' if from_env else '{ Authorization = "Bearer ..." }'
        for name, raw in p.table(
            SECTION, table.get(key), f"a table of header names, e.g. {key} = {example}", key
        ).items():
            where = f"{key}.{name}"
            if not _HEADER_NAME.match(str(name)):
                p.fail(SECTION, where, "is not an HTTP header name; use letters, digits and '-'")
                continue
            if name in headers:
                p.fail(SECTION, where, "is also in headers; give each header once")
                continue
            secret_name = f"{SECTION}.{where}"
            if from_env:
                try:
                    variable = read(raw, EnvName)
                except Wrong:
                    p.fail(SECTION, where, f'must name an environment variable, e.g. {name} = "OTLP_AUTH"')
                    continue
                if not environ.get(variable):
                    p.fail(SECTION, where, f"{variable} is not set in corral's environment; set it where corral runs")
                    continue
                secret_name, raw = variable, environ[variable]
            if not isinstance(raw, str) or not raw.strip():
                p.fail(SECTION, where, "must be a non-empty string (not shown: it may be a secret)")
            elif not raw.isascii() or any(c in raw for c in "\r\n\0"):
                p.fail(SECTION, where, "must be ASCII on one line (not shown: it may be a secret)")
            else:
                headers[str(name)] = Secret(raw, secret_name)
    return headers
