"""Keeping secrets out of reprs, logs and error messages.

Sink config holds passwords, tokens and URLs that are themselves credentials (a Slack
or Discord webhook URL lets anyone post). They live in :class:`Secret` from the moment
the config is read, and error text goes through :func:`scrub` and :func:`redact_url`.
"""

from __future__ import annotations

import hmac
from collections.abc import Iterable
from typing import final
from urllib.parse import urlsplit

from corral.secrets import value_pattern

REDACTED = "***"


@final
class Secret:
    """A configured secret whose repr and str never show it; :meth:`reveal` at the point of use."""

    __slots__ = ("_value",)

    def __init__(self, value: str) -> None:
        if not isinstance(value, str):
            raise TypeError("a Secret holds a string")
        self._value = value

    def reveal(self) -> str:
        """The secret itself, for the one call that needs it."""
        return self._value

    def __repr__(self) -> str:
        return f"Secret({REDACTED!r})"

    def __str__(self) -> str:
        return REDACTED

    def __eq__(self, other: object) -> bool:
        return isinstance(other, Secret) and hmac.compare_digest(self._value.encode(), other._value.encode())

    def __hash__(self) -> int:
        return hash((Secret, self._value))

    def __reduce__(self) -> tuple[object, ...]:
        raise TypeError("a Secret cannot be pickled; keep it out of anything that is stored or sent")


def scrub(text: str, secrets: Iterable[str]) -> str:
    """``text`` with each secret replaced by ``***``, in every form :mod:`corral.secrets` redacts
    (as written, URL-encoded, JSON-escaped, base64, and any full, partial or mixed
    %-encoding or backslash escape); one shorter than 6 characters only as written.

    Longest first, so a secret that contains another is replaced whole.
    """
    for value in sorted({value for value in secrets if value}, key=len, reverse=True):
        text = value_pattern(value).sub(REDACTED, text)
    return text


def redact_url(url: str) -> str:
    """Scheme, host and port only: the path and query of a webhook URL are its credentials."""
    try:
        parts = urlsplit(url)
        host = parts.hostname or ""
        port = parts.port
    except ValueError:
        return "<unparsable URL>"
    if not parts.scheme or not host:
        return "<unparsable URL>"
    if ":" in host:
        host = f"[{host}]"
    return f"{parts.scheme}://{host}" + (f":{port}" if port else "")


def url_secret_parts(url: str) -> list[str]:
    """The pieces of a secret URL that could turn up on their own in a library's error text."""
    parts = urlsplit(url)
    pieces = [url, parts.path, parts.query, parts.password or "", parts.username or ""]
    return [p for p in pieces if len(p) > 1]
