"""``[telemetry]`` is read once, at load: off by default, every problem named with its key
and fix, header values kept secret, and a clear word when the packages are missing."""

from __future__ import annotations

import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

from corral.config import parse_config
from corral.config.telemetry import INSTALL, TelemetryConfig
from corral.errors import ConfigError


def read(table: dict[str, object], environ: dict[str, str] | None = None) -> TelemetryConfig:
    return parse_config({"telemetry": table}, Path("/etc/corral.toml"), environ or {}).telemetry


def problems(table: object, environ: dict[str, str] | None = None) -> str:
    with pytest.raises(ConfigError) as caught:
        parse_config({"telemetry": table}, Path("/etc/corral.toml"), environ or {})
    return str(caught.value)


def test_telemetry_is_off_unless_an_endpoint_is_given() -> None:
    assert not parse_config({}, None, {}).telemetry.enabled
    assert not read({"capture_content": True}).enabled
    config = read({"otlp_endpoint": "http://127.0.0.1:4318/"})
    assert config.enabled and config.otlp_endpoint == "http://127.0.0.1:4318"
    assert (config.capture_content, config.metrics, config.service_name) == (False, True, "corral")
    assert (config.export_interval, config.timeout, config.max_queue) == (5.0, 10.0, 2048)


def test_every_key_is_read() -> None:
    config = read(
        {
            "otlp_endpoint": "https://cloud.example/api/public/otel",
            "capture_content": True,
            "service_name": "corral-mini",
            "export_interval": "2s",
            "timeout": 3,
            "max_queue": 64,
            "metrics": False,
        }
    )
    assert config.otlp_endpoint == "https://cloud.example/api/public/otel"
    assert (config.capture_content, config.service_name, config.metrics) == (True, "corral-mini", False)
    assert (config.export_interval, config.timeout, config.max_queue) == (2.0, 3.0, 64)


def test_header_values_are_secrets_from_the_file_or_the_environment() -> None:
    config = read(
        {
            "otlp_endpoint": "http://127.0.0.1:4318",
            "headers": {"x-team": "ops-team-7"},
            "headers_env": {"Authorization": "OTLP_AUTH"},
        },
        {"OTLP_AUTH": "Basic c2stbGYtMTIzOnBrLWxmLTQ1Ng=="},
    )
    assert {name: value.reveal() for name, value in config.headers.items()} == {
        "x-team": "ops-team-7",
        "Authorization": "Basic c2stbGYtMTIzOnBrLWxmLTQ1Ng==",
    }
    assert "c2stbGYt" not in repr(config) and "ops-team-7" not in repr(config)


def test_each_problem_names_the_key_and_the_fix() -> None:
    text = problems(
        {
            "otlp_endpoint": "grpc://collector:4317",
            "headers": {"bad header": "x", "x-empty": " "},
            "headers_env": {"Authorization": "NOT_SET_ANYWHERE"},
            "capture_content": "yes",
            "export_interval": "0s",
            "timeout": "soon",
            "max_queue": 0,
            "servce_name": "typo",
        }
    )
    assert "[telemetry] otlp_endpoint: 'grpc://collector:4317' is not the http:// or https:// base URL" in text
    assert "[telemetry] headers.bad header: is not an HTTP header name" in text
    assert "[telemetry] headers.x-empty: must be a non-empty string (not shown: it may be a secret)" in text
    assert "[telemetry] headers_env.Authorization: NOT_SET_ANYWHERE is not set in corral's environment" in text
    assert "[telemetry] capture_content: 'yes' is not true or false" in text
    assert '[telemetry] export_interval: must be more than zero; e.g. export_interval = "5s"' in text
    assert "[telemetry] timeout: 'soon' is not a duration" in text
    assert "[telemetry] max_queue: 0 is not a positive integer; give how many spans may wait for export" in text
    assert "[telemetry] servce_name: unknown key" in text
    assert text.count("/etc/corral.toml") == 9


def test_a_secret_header_value_is_never_quoted_back() -> None:
    text = problems({"headers": {"Authorization": "Bearer sk-line\nbreak"}})
    assert "must be ASCII on one line (not shown: it may be a secret)" in text and "sk-line" not in text


def test_an_endpoint_without_the_packages_says_how_to_install_them(tmp_path: Path) -> None:
    """In a fresh interpreter where ``opentelemetry`` cannot be imported (as without the
    ``telemetry`` extra), loading a config that turns telemetry on fails with the command."""
    config = tmp_path / "corral.toml"
    config.write_text('[telemetry]\notlp_endpoint = "http://127.0.0.1:4318"\n')
    script = textwrap.dedent(
        f"""
        import sys

        class NoOpenTelemetry:
            def find_spec(self, name, path=None, target=None):
                if name == "opentelemetry" or name.startswith("opentelemetry."):
                    raise ModuleNotFoundError(f"No module named {{name!r}}")
                return None

        sys.meta_path.insert(0, NoOpenTelemetry())
        from pathlib import Path
        from corral.config import load_config
        from corral.errors import ConfigError
        try:
            load_config(Path({str(config)!r}), {{}})
        except ConfigError as exc:
            print(exc)
        """
    )
    done = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, timeout=60)
    assert done.returncode == 0, done.stderr
    assert (
        "[telemetry] otlp_endpoint: exporting needs the OpenTelemetry packages, which are not installed" in done.stdout
    )
    assert INSTALL in done.stdout
