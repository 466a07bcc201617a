"""The one type for a credential in the daemon's memory, and the one placeholder shown for one.

A :class:`Secret` holds an API key, token, password or secret URL from the moment the
config or the secrets store gives it to corral until the one call that sends it, which
asks for it with :meth:`Secret.reveal`. Anything else that touches it (``repr``, ``str``,
an f-string, ``%``, a log field, ``json.dumps(default=str)``) gets the placeholder
``[redacted:NAME]`` instead; msgpack, ``json.dumps`` and pickle refuse it outright, so it
cannot reach the store, the wire or another process by accident.

``[redacted:NAME]`` is also what :class:`corral.secrets.Redactor` writes where it finds a
secret's value in text, so a reader sees one form wherever a secret was kept out.
"""

from __future__ import annotations

import dataclasses
import hmac
import re
from collections.abc import Mapping
from typing import NoReturn, final
from urllib.parse import urlsplit

MIN_SECRET_LENGTH = 6
"""Shorter values are found only as written, and never hidden from every log line: they
would hide ordinary words. A secret stored for agents must be at least this long."""

DEFAULT_NAME = "secret"
"""The name of a secret built without one (a plugin's own ``Secret(value)``)."""

_MAX_NAME = 200
PLACEHOLDER = re.compile(r"\[redacted:[^\s\[\]]{1,200}\]")
"""The one placeholder, as a pattern: tests search output for any other."""


def placeholder(name: str) -> str:
    """What is shown in place of the secret called ``name``: ``[redacted:NAME]``."""
    return f"[redacted:{secret_name(name)}]"


def secret_name(text: str) -> str:
    """``text`` as a name a placeholder can show: whitespace, brackets and control characters
    become ``_``, and it is cut to 200 characters (an empty one becomes ``secret``)."""
    shown = "".join(c if c.isprintable() and not c.isspace() and c not in "[]" else "_" for c in text[:_MAX_NAME])
    return shown or DEFAULT_NAME


@final
class Secret:
    """A value that never shows itself: :meth:`reveal` at the one place that sends it.

    ``name`` says which secret it is, without saying what: a granted secret's name
    (``GITHUB_TOKEN``), the environment variable a key came from (``OPENAI_API_KEY``), or
    the config key that holds it (``alerts.sinks.ops.password``). It is what the
    placeholder shows (see :func:`secret_name`). Equal secrets have the same name and
    value (compared in constant time); copies are the object itself.
    """

    __slots__ = ("_value", "name")

    _value: str
    name: str

    def __init__(self, value: str, name: str = DEFAULT_NAME) -> None:
        if not isinstance(value, str) or not value:
            raise ValueError("a secret must be a non-empty string")
        object.__setattr__(self, "_value", value)
        object.__setattr__(self, "name", secret_name(str(name)))

    def reveal(self) -> str:
        """The value itself, for the one call that needs it (an HTTP header, an SMTP login)."""
        return self._value

    @property
    def placeholder(self) -> str:
        """``[redacted:NAME]``: what is shown instead of this secret."""
        return placeholder(self.name)

    def __repr__(self) -> str:
        return f"Secret({self.placeholder!r})"

    def __str__(self) -> str:
        return self.placeholder

    def __format__(self, spec: str) -> str:
        return format(self.placeholder, spec)

    def __eq__(self, other: object) -> bool:
        if not isinstance(other, Secret):
            return NotImplemented
        return self.name == other.name and hmac.compare_digest(self._value.encode(), other._value.encode())

    def __hash__(self) -> int:
        return hash((Secret, self.name))  # not the value: a hash is a clue to it

    def __setattr__(self, name: str, value: object) -> NoReturn:
        raise AttributeError("a Secret cannot be changed; make a new one")

    def __delattr__(self, name: str) -> NoReturn:
        raise AttributeError("a Secret cannot be changed; make a new one")

    def __copy__(self) -> Secret:
        return self

    def __deepcopy__(self, memo: dict[int, object]) -> Secret:
        return self

    def __reduce_ex__(self, protocol: object) -> NoReturn:
        raise TypeError("a Secret cannot be pickled: it must not leave the process by accident")


def secrets_in(value: object) -> list[Secret]:
    """Every :class:`Secret` held in ``value``, at any depth of dataclass fields, mapping
    values, lists, tuples and sets: how the daemon finds a loaded config's credentials
    without knowing where each part of the config keeps them."""
    found: list[Secret] = []
    seen: set[int] = set()
    stack = [value]
    while stack:
        item = stack.pop()
        if isinstance(item, Secret):
            found.append(item)
            continue
        if id(item) in seen:
            continue
        seen.add(id(item))
        if dataclasses.is_dataclass(item) and not isinstance(item, type):
            stack.extend(getattr(item, field.name) for field in dataclasses.fields(item))
        elif isinstance(item, Mapping):
            stack.extend(item.values())
        elif isinstance(item, list | tuple | set | frozenset):
            stack.extend(item)
    return found


def redact_url(url: str) -> str:
    """Scheme, host and port only: the path, query and login of a webhook URL are its credentials."""
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


def url_pieces(url: Secret) -> list[Secret]:
    """The secret URL and the pieces of it that could turn up on their own in a library's
    error text (path, query, user, password), each under the URL's name."""
    parts = urlsplit(url.reveal())
    pieces = [url.reveal(), parts.path, parts.query, parts.password or "", parts.username or ""]
    return [Secret(piece, url.name) for piece in dict.fromkeys(pieces) if len(piece) > 1]
