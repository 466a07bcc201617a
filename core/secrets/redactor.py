r"""The one redactor: every secret's value, in each of its encodings, becomes ``[redacted:NAME]``.

:class:`Redactor` is built from some secrets and hides them in any value (text, bytes,
and containers of them, keys included). :class:`Redaction` is the daemon's growing set:
every secret granted to a run or read from the config (model keys, alert sink
credentials) is added to it, and it redacts every log line, journal entry, run error and
result, and so everything ``corral logs`` and ``corral trace`` show. A part that holds its
own credentials (a sink, a model client) hides them from its errors with a
:class:`Redactor` of those alone. docs/secrets.md says which forms are found.
"""

from __future__ import annotations

import re
import threading
from collections.abc import Iterable, Mapping
from typing import Any, TypeVar

from corral.secrets.patterns import ESCAPE_MARKS, escaped_pattern, literal_pattern, whole_forms
from corral.secrets.secret import MIN_SECRET_LENGTH, Secret, placeholder

T = TypeVar("T")

_SCALARS = frozenset({bool, type(None)})  # kept as they are, checked first
_NUMBERS = frozenset({int, float})  # a secret may be all digits: an agent's int(os.environ["PIN"])
_KEYS_CACHED = 1024  # field names seen, with their redacted form: the same few recur on every line


def _secrets(secrets: Mapping[str, str] | Iterable[Secret]) -> list[Secret]:
    if isinstance(secrets, Mapping):
        return [Secret(value, name) for name, value in secrets.items()]
    return list(secrets)


class _Escaped:
    """The escaped-form pattern of some secrets (value to name): compiled for text at once, for bytes on first use."""

    def __init__(self, secrets: Mapping[str, str]) -> None:
        by_length = sorted(secrets.items(), key=lambda item: (-len(item[0]), item[1]))
        self.secrets = dict(by_length)
        self._names = {f"s{index}": name for index, (_, name) in enumerate(by_length)}
        self._text = re.compile(escaped_pattern(list(self.secrets), False))
        self._bytes: re.Pattern[bytes] | None = None

    def text(self, text: str) -> str:
        return self._text.sub(lambda m: placeholder(self._names[m.lastgroup or ""]), text)

    def bytes(self, data: bytes) -> bytes:
        if self._bytes is None:
            self._bytes = re.compile(escaped_pattern(list(self.secrets), True).encode())
        return self._bytes.sub(lambda m: placeholder(self._names[m.lastgroup or ""]).encode(), data)


class Redactor:
    r"""Replaces every value of ``secrets``, in each of its encodings, with ``[redacted:NAME]``.

    ``secrets``: :class:`Secret`\ s, or a mapping of name to value. Several values may
    share a name (a rotated token, the pieces of a secret URL); where two secrets have
    the same value, the first name in order wins. A value shorter than
    :data:`MIN_SECRET_LENGTH` is found only as it is written (its encoded forms would be
    a letter or two).

    Compiled patterns, built once (not per line): the whole-value forms (plain,
    URL-encoded, JSON-escaped, base64, see :func:`~corral.secrets.patterns.whole_forms`) as
    one trie of literals, run on every string; and the escaped forms, run only on a string
    holding ``%``, ``\`` or ``&`` (or ``+``, when a secret holds a space), since no escaped
    form can be written without one. The escaped-form patterns of a ``previous`` redactor
    are kept (compiling them is the costly part: about 0.3 ms per character of a secret),
    so a new grant compiles only its own values, unless one of them contains an earlier
    one or lies inside it: then all are compiled together, so the longer still wins.

    Handles ``str``, ``bytes``, and dicts (any mapping), lists, tuples and sets of them,
    keys included; a key that redacts to one already present gets `` (2)``, `` (3)``...,
    so no field is lost. Anything else is returned as it is.
    """

    def __init__(self, secrets: Mapping[str, str] | Iterable[Secret], previous: Redactor | None = None) -> None:
        named: dict[str, str] = {}  # value -> name
        for secret in sorted(_secrets(secrets), key=lambda s: s.name):
            named.setdefault(secret.reveal(), secret.name)
        lookup: dict[str, str] = {}
        for value, name in named.items():
            for form in whole_forms(value) if len(value) >= MIN_SECRET_LENGTH else (value,):
                lookup.setdefault(form, name)
        self._names = sorted(set(named.values()))
        self._secrets = {value: name for value, name in named.items() if len(value) >= MIN_SECRET_LENGTH}
        self._keys: dict[str, str] = {}
        self._lookup = lookup
        self._escaped = self._batches(previous)
        self._text = re.compile(literal_pattern(sorted(lookup, key=len, reverse=True), False)) if lookup else None
        self._bytes: re.Pattern[bytes] | None = None
        marks = "".join(ESCAPE_MARKS) + ("+" if any(" " in value for value in self._secrets) else "")
        self._marks = re.compile(f"[{re.escape(marks)}]")
        self._byte_marks = re.compile(f"[{re.escape(marks)}]".encode())

    def _batches(self, previous: Redactor | None) -> list[_Escaped]:
        kept = [b for b in previous._escaped if b.secrets.items() <= self._secrets.items()] if previous else []
        known = {value for batch in kept for value in batch.secrets}
        fresh = {value: name for value, name in self._secrets.items() if value not in known}
        if not fresh:
            return kept
        if any(a in b or b in a for a in fresh for b in known):
            return [_Escaped(self._secrets)]
        return [*kept, _Escaped(fresh)]

    def __repr__(self) -> str:
        return f"Redactor(names={self._names!r})"

    @property
    def names(self) -> list[str]:
        """The names of the secrets it hides (never their values)."""
        return list(self._names)

    def redact_text(self, text: str) -> str:
        if self._text is None:
            return text
        if self._escaped and self._marks.search(text) is not None:  # first: it also takes plain text, longest first
            for batch in self._escaped:
                text = batch.text(text)
        if self._text.search(text) is not None:
            text = self._text.sub(lambda m: placeholder(self._lookup[m.group()]), text)
        return text

    def redact_bytes(self, data: bytes) -> bytes:
        if not self._lookup:
            return data
        if self._bytes is None:
            ordered = sorted(self._lookup, key=len, reverse=True)
            self._bytes = re.compile(literal_pattern(ordered, True).encode())
        if self._escaped and self._byte_marks.search(data) is not None:
            for batch in self._escaped:
                data = batch.bytes(data)
        if self._bytes.search(data) is not None:
            data = self._bytes.sub(lambda m: placeholder(self._lookup[m.group().decode()]).encode(), data)
        return data

    def redact(self, value: T) -> T:
        """``value`` with every secret replaced, same shape and types."""
        result: T = self._walk(value, False)
        return result

    def redact_event(self, event: Mapping[str, Any]) -> dict[str, Any]:
        """A log event with every secret replaced; objects of other types become their redacted
        ``repr``, which is what the log file would hold for them anyway."""
        result: dict[str, Any] = self._walk(event, True)
        return result

    def _walk(self, value: Any, reprs: bool) -> Any:
        kind = type(value)
        if kind is str:
            return self.redact_text(value)
        if kind in _SCALARS:
            return value
        if kind in _NUMBERS:
            return self._number(value)
        if isinstance(value, dict):
            return self._mapping(value, reprs)
        if isinstance(value, str):
            return self.redact_text(value)
        if isinstance(value, bytes):
            return self.redact_bytes(value)
        if isinstance(value, list):
            return [self._walk(item, reprs) for item in value]
        if isinstance(value, tuple):
            return tuple(self._walk(item, reprs) for item in value)
        if isinstance(value, set | frozenset):
            return type(value)(self._walk(item, reprs) for item in value)
        if isinstance(value, Mapping):
            return self._mapping(value, reprs)
        if isinstance(value, int | float) and not isinstance(value, bool):  # a subclass (an IntEnum...)
            return self._number(value)
        if not reprs:
            return value
        try:
            return self.redact_text(repr(value))
        except Exception:  # a broken __repr__, or an int too long to print
            return f"<unrepresentable {type(value).__name__}>"

    def _number(self, value: int | float) -> Any:
        """The number, or its placeholder text when its digits are a secret's (the only
        place a redacted value changes type)."""
        if self._text is None:
            return value
        try:
            text = repr(value)
        except ValueError:  # an int too long to print
            return value
        redacted = self.redact_text(text)
        return value if redacted == text else redacted

    def _mapping(self, mapping: Mapping[Any, Any], reprs: bool) -> dict[Any, Any]:
        result: dict[Any, Any] = {}
        keys = self._keys
        for key, item in mapping.items():
            new = keys.get(key)  # only text keys are kept, so 1 and True cannot be confused
            if new is None:
                new = self._key(key)
            if new is not key and new != key and (new in result or new in mapping):
                new = _free_key(new, result, mapping)
            kind = type(item)
            result[new] = item if kind in _SCALARS else self._walk(item, reprs)
        return result

    def _key(self, key: Any) -> Any:
        """Field names repeat on every line, so each text key is redacted once and remembered."""
        redacted = self._walk(key, False)
        if type(key) is str:
            if len(self._keys) >= _KEYS_CACHED:
                self._keys.clear()
            self._keys[key] = redacted
        return redacted


def _free_key(key: Any, *taken: Mapping[Any, Any]) -> Any:
    """``key`` with `` (2)``, `` (3)``... appended, the first that no mapping in ``taken`` holds."""
    text = key.decode(errors="replace") if isinstance(key, bytes) else key if isinstance(key, str) else repr(key)
    number = 2
    while any(f"{text} ({number})" in mapping for mapping in taken):
        number += 1
    return f"{text} ({number})"


class Redaction:
    """The daemon's secrets, hidden from every log line (it is a structlog processor) and
    from what :meth:`redact` is given: journal entries, run errors and results.

    The daemon calls :meth:`add` with a run's granted values before the run starts, and
    with the config's credentials whenever a config is loaded, so everything written
    from then on is redacted; a value once added stays hidden (a rotated token too).
    Values shorter than :data:`MIN_SECRET_LENGTH` are left out: hiding them from every
    line would hide ordinary words (a granted secret that short is refused when stored;
    a short sink password is still hidden from that sink's errors). Thread-safe: the
    redactor is replaced whole, never changed in place. With nothing added it costs one
    attribute check per event.
    """

    def __init__(self) -> None:
        self._secrets: set[Secret] = set()
        self._redactor: Redactor | None = None
        self._lock = threading.Lock()

    def __repr__(self) -> str:
        return f"Redaction(names={sorted({secret.name for secret in self._secrets})!r})"

    def add(self, secrets: Mapping[str, str] | Iterable[Secret]) -> None:
        """Hide these values too, from now on."""
        with self._lock:
            fresh = {s for s in _secrets(secrets) if len(s.reveal()) >= MIN_SECRET_LENGTH} - self._secrets
            if not fresh:
                return
            self._secrets |= fresh
            self._redactor = Redactor(self._secrets, self._redactor)

    def redact(self, value: T) -> T:
        """``value`` with every secret added so far replaced, same shape and types."""
        redactor = self._redactor
        return value if redactor is None else redactor.redact(value)

    def __call__(self, logger: Any, name: str, event_dict: Any) -> Any:
        redactor = self._redactor
        if redactor is None:
            return event_dict
        return redactor.redact_event(event_dict)
