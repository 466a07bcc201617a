"""Sink config: every problem reported at once, naming key and fix, and never quoting a secret."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any
from urllib.parse import quote

import pytest

from corral.alerts import Secret, redact_url
from corral.alerts.routing import sink_types
from corral.errors import ConfigError
from corral.pluginmanager import register_plugins
from corral.plugins.alert_sinks.command import CommandSink
from corral.plugins.alert_sinks.mail import EmailSink
from corral.plugins.alert_sinks.ntfy import NtfySink
from corral.plugins.alert_sinks.webhook import WebhookSink

SECRET = "s3cr3t-T0KEN-value"


def test_a_secret_read_from_a_sink_table_is_named_by_its_key_or_variable() -> None:
    inline = WebhookSink(
        {"url": "https://example.com/hook", "headers": {"X-Token": SECRET}}, section="alerts.sinks.ops"
    )
    from_env = WebhookSink({"url": "https://example.com/hook", "headers": {"X-Token": Secret(SECRET, "OPS_TOKEN")}})

    assert str(inline.headers["X-Token"]) == "[redacted:alerts.sinks.ops.headers.X-Token]"
    assert repr(from_env.headers["X-Token"]) == "Secret('[redacted:OPS_TOKEN]')"


@pytest.mark.parametrize(
    ("url", "shown"),
    [
        (f"https://hooks.slack.com/services/T0/B0/{SECRET}", "https://hooks.slack.com"),
        (f"https://user:{SECRET}@example.com:8443/x?token={SECRET}", "https://example.com:8443"),
        ("http://[::1]:9000/hook", "http://[::1]:9000"),
        ("not a url", "<unparsable URL>"),
    ],
)
def test_redact_url_keeps_scheme_host_and_port(url: str, shown: str) -> None:
    assert redact_url(url) == shown


def test_the_built_in_sink_types_are_registered_by_their_plugin() -> None:
    plugins = register_plugins(entry_points=[])
    types = sink_types(plugins.manager, plugins.failures)
    assert sorted(types) == ["command", "desktop", "email", "ntfy", "webhook"] and not plugins.failures
    assert all(found.plugin == "corral.plugins.alert_sinks" for found in types.values())
    assert all(getattr(found.factory, "kind", None) == kind for kind, found in types.items())


def test_every_problem_is_listed_with_key_and_fix() -> None:
    with pytest.raises(ConfigError) as caught:
        EmailSink(
            {"host": "", "port": "587", "tls": "ssl", "from": "nobody", "to": [], "timout": 5, "timeout": "soon"},
            section="alerts.sinks.ops",
        )
    assert caught.value.problems == [
        '[alerts.sinks.ops] timeout: \'soon\' is not a duration; write 30, "30s", "5m", "1h30m" or "2d"',
        "[alerts.sinks.ops] host: '' is not a non-empty string; write host = \"smtp.example.com\"",
        "[alerts.sinks.ops] tls: 'ssl' is not one of 'starttls', 'tls', 'none'",
        "[alerts.sinks.ops] port: '587' is not a port number; give an integer from 1 to 65535",
        "[alerts.sinks.ops] from: 'nobody' is not an email address; write e.g. from = \"corral@example.com\"",
        '[alerts.sinks.ops] to: [] is not a list of non-empty strings; write to = ["ops@example.com"]',
        "[alerts.sinks.ops] timout: unknown key; did you mean 'timeout'?",
    ]


def test_a_sink_error_hides_its_secrets_in_encoded_forms_too() -> None:
    secret = 'p@ss/w"rd SECRET'
    sink = EmailSink({"host": "mail", "from": "a@b.c", "to": "d@e.f", "username": "u", "password": secret})
    text = f"raw {secret} url {quote(secret, safe='')} json {json.dumps(secret)} path {quote(secret)}"

    shown = "[redacted:alerts.email.password]"
    assert str(sink._error(text, retryable=False)).endswith(f'raw {shown} url {shown} json "{shown}" path {shown}')


def test_email_subject_prefix_must_be_one_line() -> None:
    with pytest.raises(ConfigError, match=r"subject_prefix: must be one line of printable text"):
        EmailSink({"host": "mail", "from": "a@b.c", "to": "d@e.f", "subject_prefix": "[x]\nBcc: evil@example.com"})


def test_email_refuses_a_password_without_tls_or_without_username() -> None:
    base = {"host": "mail", "from": "a@b.c", "to": "d@e.f"}
    with pytest.raises(ConfigError) as caught:
        EmailSink({**base, "tls": "none", "username": "u", "password": SECRET})
    assert caught.value.problems == [
        '[alerts.email] tls: "none" would send the password unencrypted; use "starttls" or "tls"'
    ]
    with pytest.raises(ConfigError, match="username and password go together"):
        EmailSink({**base, "password": SECRET})
    assert SECRET not in str(caught.value)


def test_ca_file_must_be_a_pem_bundle(tmp_path: Path) -> None:
    junk = tmp_path / "junk.pem"
    junk.write_text("not a certificate")
    base = {"host": "mail", "from": "a@b.c", "to": "d@e.f"}
    with pytest.raises(ConfigError, match=r"ca_file: '.*missing.pem' does not exist; give the path of a PEM file"):
        EmailSink({**base, "ca_file": str(tmp_path / "missing.pem")})
    with pytest.raises(ConfigError, match=r"ca_file: '.*junk.pem' cannot be loaded as PEM CA certificates"):
        WebhookSink({"url": "https://example.com/hook", "ca_file": str(junk)})


@pytest.mark.parametrize(
    ("config", "problem"),
    [
        ({"url": f"ftp://example.com/{SECRET}"}, "url: must be an http:// or https:// URL with a host (not shown"),
        ({"url": f"https://exa mple.com/{SECRET}"}, "url: is not a valid URL (not shown: it is a secret)"),
        ({"url": 12}, "url: must be a string holding the webhook URL (a int was given)"),
        ({}, "url: is required; give the webhook URL"),
        ({"url": "https://x.org", "headers": {"X-Key": f"{SECRET}\r\nX: y"}}, "headers.X-Key: must be ASCII on one"),
        ({"url": "https://x.org", "headers": {"Bad Name": "v"}}, "headers.Bad Name: is not a valid HTTP header name"),
        ({"url": "https://x.org", "format": "teams"}, "format: 'teams' is not one of 'json', 'slack', 'discord'"),
    ],
)
def test_webhook_config_problems_never_quote_the_secret(config: dict[str, object], problem: str) -> None:
    with pytest.raises(ConfigError) as caught:
        WebhookSink(config)
    assert problem in str(caught.value)
    assert SECRET not in str(caught.value)


def test_ntfy_topic_and_server_are_checked_without_quoting_secrets() -> None:
    with pytest.raises(ConfigError) as caught:
        NtfySink({"topic": f"{SECRET}/../x", "server": f"https://user:{SECRET}@ntfy.example.com", "token": 5})
    assert caught.value.problems == [
        "[alerts.ntfy] server: (not shown: it holds credentials) is not an http:// or https:// server address;"
        " credentials go in token, not here",
        "[alerts.ntfy] topic: may hold only letters, digits, '-' and '_', at most 64 (not shown: it is a secret)",
        "[alerts.ntfy] token: must be a string holding an ntfy access token (a int was given)",
    ]


def test_command_must_name_an_executable(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match=r"command: 'no-such-program-here' was not found on PATH; give the full"):
        CommandSink({"command": ["no-such-program-here"]})
    with pytest.raises(ConfigError, match=r"command: '/nonexistent/page-me' is not an executable file"):
        CommandSink({"command": ["/nonexistent/page-me"]})
    with pytest.raises(ConfigError, match=r"env.1BAD: is not a valid environment variable name"):
        CommandSink({"command": ["true"], "env": {"1BAD": "x"}})
    not_a_table: Any = ["true"]
    with pytest.raises(ConfigError, match=r"\[alerts.command\]: must be a table of settings, got list"):
        CommandSink(not_a_table)


def test_reprs_hold_no_secrets() -> None:
    sinks = [
        WebhookSink({"url": f"https://hooks.slack.com/services/{SECRET}", "headers": {"Authorization": SECRET}}),
        NtfySink({"topic": "alerts-" + SECRET[:8], "token": SECRET}),
        EmailSink({"host": "mail", "from": "a@b.c", "to": "d@e.f", "username": "u", "password": SECRET}),
        CommandSink({"command": ["true"], "env": {"TOKEN": SECRET}}),
    ]
    for sink in sinks:
        assert SECRET not in repr(sink) and SECRET[:8] not in repr(sink)
        assert SECRET not in repr(vars(sink))
    assert repr(sinks[0]) == "<WebhookSink [alerts.webhook] to https://hooks.slack.com>"
