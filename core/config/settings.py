"""A plugin's own config table, read key by key: an alert sink's ``[alerts.sinks.NAME]``,
a trigger kind's ``[[agents.NAME.triggers]]``.

corral reads its own tables at load; a plugin's table is read when the plugin builds its
object (``corral check`` and the daemon's start), because only the plugin knows its keys.
Each getter reads one key by its kind (:mod:`corral.config.kinds`) into the collector the
loader uses too (:class:`~corral.config.problems.Problems`), returning a placeholder when
the value is wrong; :meth:`Settings.finish` then raises one
:class:`~corral.errors.ConfigError` listing every problem, unknown keys included, so the
operator fixes the table in one go. Values read with :meth:`Settings.secret` are held in
a :class:`~corral.secrets.Secret` named after their key (``alerts.sinks.ops.password``),
or after the variable a ``KEY_env`` key named, and are never quoted back in a message.
"""

from __future__ import annotations

import re
import ssl
from collections.abc import Mapping
from pathlib import Path
from typing import Annotated, Any

import httpx

from corral.config.kinds import (
    EnvName,
    Flag,
    Port,
    PositiveInt,
    PositiveSeconds,
    Rule,
    Seconds,
    SomeTexts,
    String,
    Text,
    Texts,
    Wrong,
    Zone,
    choice,
    read,
)
from corral.config.problems import Problems
from corral.secrets import Secret, url_pieces

_HEADER_NAME = re.compile(r"^[!#$%&'*+.^_`|~0-9A-Za-z-]+$")  # RFC 9110 token
_NOT_READ = "not read: the config has a problem here"  # what a secret getter returns with a problem
_Timeout = Annotated[PositiveSeconds, Rule('must be more than zero; give seconds, e.g. 10 or "30s"')]
"""A duration whose messages already say how to write one: no fix is added."""
_Wait = Annotated[Seconds, Rule('must be a finite duration; give seconds, e.g. 10 or "30s"')]


class Settings:
    """One plugin's config table under ``[section]``, read key by key."""

    def __init__(self, section: str, config: Mapping[str, object], where: str | None = None) -> None:
        """``where`` is the config file, when the messages should name it (the caller adds it else)."""
        self.section = section
        self._problems = Problems(where)
        self._known: list[str] = []
        self._secrets: list[Secret] = []
        self._failed: set[str] = set()
        if isinstance(config, Mapping):
            self._config: Mapping[str, object] = config
        else:
            self._config = {}
            self.fail_table(f"must be a table of settings, got {type(config).__name__}")

    @property
    def problems(self) -> list[str]:
        """Every problem found so far, each naming ``[section] key``."""
        return self._problems.items

    def fail(self, key: str, message: str) -> None:
        """Record a problem with ``key``; ``message`` says what is wrong and how to fix it."""
        self._failed.add(key)
        self._problems.fail(self.section, key, message)

    def ok(self, key: str) -> bool:
        """Whether ``key`` was read without a problem, so a check of its value can follow."""
        return key not in self._failed

    def fail_table(self, message: str) -> None:
        """Record a problem with the table as a whole (the sink cannot work here at all)."""
        self._problems.fail(self.section, None, message)

    def _raw(self, key: str) -> object:
        self._known.append(key)
        return self._config.get(key)

    def raw(self, key: str) -> object:
        """The value as written (None when absent), for a kind only the plugin knows (a
        date-time, a cron expression): the caller checks it and calls :meth:`fail`."""
        return self._raw(key)

    def _read(self, key: str, kind: Any, default: Any, fix: str = "") -> Any:
        self._known.append(key)
        before = len(self.problems)
        value = self._problems.value(self.section, self._config, key, kind, default, fix)
        if len(self.problems) > before:
            self._failed.add(key)
        return value

    def _required(self, key: str, kind: Any, default: Any, example: str) -> Any:
        if self._config.get(key) is None:
            self._known.append(key)
            self.fail(key, f"is required; add {key} = {example}")
            return default
        return self._read(key, kind, default, f"write {key} = {example}")

    def required_text(self, key: str, example: str) -> str:
        """A non-empty string that must be given; ``example`` shows a valid value."""
        return str(self._required(key, Text, "", example))

    def text(self, key: str, default: str) -> str:
        """A string, ``default`` when absent; may be empty."""
        return str(self._read(key, String, default, "quote it"))

    def optional_text(self, key: str) -> str | None:
        """A non-empty string, or None when absent."""
        value = self._read(key, Text, None, "give a value or remove the key")
        return None if value is None else str(value)

    def choice(self, key: str, options: tuple[str, ...], default: str) -> str:
        """One of ``options``."""
        return str(self._read(key, choice(*options), default))

    def port(self, key: str, default: int) -> int:
        """A TCP port number."""
        return int(self._read(key, Port, default))

    def integer(self, key: str, default: int, fix: str = "") -> int:
        """A positive integer; ``fix`` says what it counts."""
        return int(self._read(key, PositiveInt, default, fix))

    def flag(self, key: str, default: bool) -> bool:
        """true or false."""
        return bool(self._read(key, Flag, default))

    def zone(self, key: str) -> str | None:
        """An IANA time zone name, or None when absent."""
        value = self._read(key, Zone, None, 'give an IANA name such as "Europe/Paris"')
        return None if value is None else str(value)

    def duration(self, key: str, default: float | None = None, *, zero: bool = False) -> float:
        """A duration above zero (``zero``: or zero): ``10``, ``2.5``, ``"30s"``, ``"2m"``;
        required when there is no ``default``."""
        if default is None and self._config.get(key) is None:
            self._known.append(key)
            self.fail(key, 'is required; give a duration, e.g. 10 or "30s"')
            return 0.0
        return float(self._read(key, _Wait if zero else _Timeout, 0.0 if default is None else default))

    def text_list(self, key: str, example: str) -> tuple[str, ...]:
        """A required list of non-empty strings; one string is taken as a list of one."""
        return tuple(self._required(key, SomeTexts, (), example))

    def optional_text_list(self, key: str) -> tuple[str, ...]:
        """A list of non-empty strings, empty when absent."""
        return tuple(self._read(key, Texts, ()))

    def _secret(self, value: object, key: str, what: str) -> Secret | None:
        if isinstance(value, str) and not value.strip():
            self.fail(key, f"is empty; give {what}")
            return None
        if isinstance(value, Secret):
            secret = value
        elif isinstance(value, str):
            secret = Secret(value, f"{self.section}.{key}")
        else:
            self.fail(key, f"must be a string holding {what} (a {type(value).__name__} was given)")
            return None
        if not secret.reveal().strip():
            self.fail(key, f"is empty; give {what}")
            return None
        self._secrets.append(secret)
        return secret

    def _not_read(self, key: str) -> Secret:
        return Secret(_NOT_READ, f"{self.section}.{key}")

    def secret(self, key: str, what: str) -> Secret:
        """A required secret string; ``what`` names it for messages, which never show the value.

        With a problem (recorded, see :meth:`ok`) it returns a placeholder secret, never used:
        :meth:`finish` raises before the sink is built.
        """
        value = self._raw(key)
        if value is None:
            self.fail(key, f"is required; give {what}")
            return self._not_read(key)
        return self._secret(value, key, what) or self._not_read(key)

    def optional_secret(self, key: str, what: str) -> Secret | None:
        """A secret string, or None when absent."""
        value = self._raw(key)
        return None if value is None else self._secret(value, key, what)

    def secret_url(self, key: str, what: str) -> Secret:
        """A required http(s) URL held as a secret; problems are described without quoting it."""
        secret = self.secret(key, what)
        if not self.ok(key):
            return secret
        url = secret.reveal()
        try:
            if any(c.isspace() or not c.isprintable() for c in url):
                raise httpx.InvalidURL("blank or control characters")
            parsed = httpx.URL(url)
        except httpx.InvalidURL:
            self.fail(key, f"is not a valid URL (not shown: it is a secret); give {what}")
            return secret
        if parsed.scheme not in ("http", "https") or not parsed.host:
            self.fail(key, f"must be an http:// or https:// URL with a host (not shown: it is a secret); give {what}")
            return secret
        self._secrets.extend(url_pieces(secret))
        return secret

    def secret_headers(self, key: str) -> dict[str, Secret]:
        """A table of extra HTTP headers; values are kept secret (they often hold tokens)."""
        value = self._raw(key)
        if value is None:
            return {}
        if not isinstance(value, Mapping):
            self.fail(key, 'must be a table of header names to values, e.g. {Authorization = "Bearer ..."}')
            return {}
        out: dict[str, Secret] = {}
        for name, header in value.items():
            if not isinstance(name, str) or not _HEADER_NAME.match(name):
                self.fail(f"{key}.{name}", "is not a valid HTTP header name; use letters, digits and '-'")
                continue
            secret = self._secret(header, f"{key}.{name}", "the header's value")
            if secret is None:
                continue
            if not secret.reveal().isascii() or any(c in secret.reveal() for c in "\r\n\0"):
                self.fail(f"{key}.{name}", "must be ASCII on one line (value not shown: it may be a secret)")
                continue
            out[name] = secret
        return out

    def secret_env(self, key: str) -> dict[str, Secret]:
        """A table of environment variables for a child process; values are kept secret."""
        value = self._raw(key)
        if value is None:
            return {}
        if not isinstance(value, Mapping):
            self.fail(key, 'must be a table of NAME = "value" strings')
            return {}
        out: dict[str, Secret] = {}
        for name, item in value.items():
            try:
                read(name, EnvName)
            except Wrong:
                self.fail(f"{key}.{name}", "is not a valid environment variable name")
                continue
            secret = self._secret(item, f"{key}.{name}", "the variable's value")
            if secret is not None:
                out[name] = secret
        return out

    def tls_context(self, key: str) -> ssl.SSLContext:
        """A verifying TLS context: trusting only the PEM bundle at ``key`` when set, else certifi's roots."""
        value = self._raw(key)
        if value is None:
            return httpx.create_ssl_context()
        try:
            path = Path(read(value, Text)).expanduser()
        except Wrong:
            self.fail(key, f"{value!r} is not a path; give the path of a PEM file of CA certificates")
            return httpx.create_ssl_context()
        try:
            return ssl.create_default_context(cafile=str(path))
        except FileNotFoundError:
            self.fail(key, f"{str(path)!r} does not exist; give the path of a PEM file of CA certificates")
        except (OSError, ssl.SSLError) as exc:
            self.fail(key, f"{str(path)!r} cannot be loaded as PEM CA certificates ({exc}); check the file")
        return httpx.create_ssl_context()

    def secrets(self) -> tuple[Secret, ...]:
        """Every secret read, and the pieces of secret URLs, for hiding them from error text."""
        return tuple(self._secrets)

    def finish(self) -> None:
        """Raise ConfigError listing every problem, including keys no getter asked for."""
        self._problems.unknown(self.section, self._config, set(self._known))
        self._problems.check()
