"""Secrets: where API keys and tokens are kept, and how they are kept out of logs.

A :class:`SecretsStore` asks its backends in order; the first that holds a name wins.
The default order (:meth:`SecretsStore.default`) is:

1. the environment: ``CORRAL_SECRET_<NAME>`` in the mapping given (read-only), so an
   operator can override any stored value for one launch;
2. the OS keyring (macOS Keychain, Secret Service, ...), when the ``keyring`` package is
   installed and finds a usable backend;
3. a JSON file of mode 0600 in the corral home, which corral refuses to read if anyone
   but its owner could read it.

New values go to the first writable backend (the keyring where usable, else the file)
unless a backend is named. A :class:`Redactor` built from the values granted to a run
replaces them with ``[redacted:NAME]``, in keys as in values: plain, URL-encoded,
JSON-escaped and base64, and with any of their characters %-encoded, backslash-escaped
or written as an HTML reference (docs/secrets.md lists exactly which forms). Values are
never part of an error message or a repr.
"""

from __future__ import annotations

import base64
import contextlib
import fcntl
import functools
import json
import os
import re
import stat
import tempfile
import threading
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Protocol, TypeVar
from urllib.parse import quote, quote_plus

from corral.errors import CorralError

MIN_SECRET_LENGTH = 6
ENV_PREFIX = "CORRAL_SECRET_"
KEYRING_SERVICE = "corral"
_NAME = re.compile(r"[A-Za-z_][A-Za-z0-9_]*")
_INDEX_ENTRY = "corral:index"  # not a valid secret name, so it cannot collide with one
_FILE_VERSION = 1

T = TypeVar("T")


class SecretsError(CorralError):
    """Operator: a secret could not be stored, found or used; the message names it and the fix."""


class SecretNotFound(SecretsError):
    """Operator: no backend holds the secret a run was granted."""


def check_secret(name: str, value: str) -> None:
    """Refuse bad names and values too short to redact safely (they would hide common words)."""
    if not _NAME.fullmatch(name):
        raise SecretsError(
            f"secret name {name!r} is not valid; use letters, digits and underscores, not starting with a digit"
        )
    if not isinstance(value, str) or not value:
        raise SecretsError(f"secret {name!r} has an empty or non-text value; store the text of the key or token")
    if len(value) < MIN_SECRET_LENGTH:
        raise SecretsError(
            f"secret {name!r} is {len(value)} characters long; corral refuses secrets shorter than "
            f"{MIN_SECRET_LENGTH} because redacting them from logs would also hide ordinary words. Use the full "
            "key or token, or pass a short value as plain configuration instead of a secret"
        )


class SecretBackend(Protocol):
    """One place secrets live. ``writable`` is False for read-only sources."""

    name: str
    writable: bool

    def get(self, name: str) -> str | None: ...

    def set(self, name: str, value: str) -> None: ...

    def remove(self, name: str) -> bool: ...

    def names(self) -> list[str]: ...


class EnvSecrets:
    """Read-only: ``<prefix><NAME>`` from a given environment mapping."""

    name = "env"
    writable = False

    def __init__(self, environ: Mapping[str, str], prefix: str = ENV_PREFIX) -> None:
        self._environ = environ
        self.prefix = prefix

    def __repr__(self) -> str:
        return f"EnvSecrets(prefix={self.prefix!r})"

    def get(self, name: str) -> str | None:
        return self._environ.get(self.prefix + name)

    def set(self, name: str, value: str) -> None:
        raise SecretsError(f"the environment is read-only for corral; set {self.prefix}{name} where the daemon starts")

    def remove(self, name: str) -> bool:
        raise SecretsError(
            f"the environment is read-only for corral; unset {self.prefix}{name} where the daemon starts"
        )

    def names(self) -> list[str]:
        found = (key.removeprefix(self.prefix) for key in self._environ if key.startswith(self.prefix))
        return sorted(name for name in found if _NAME.fullmatch(name))


class FileSecrets:
    """A JSON file of mode 0600, owned by the daemon's user, replaced atomically on every change."""

    name = "file"
    writable = True

    def __init__(self, directory: Path, filename: str = "secrets.json") -> None:
        self.path = directory / filename
        self._lock_path = directory / f".{filename}.lock"

    def __repr__(self) -> str:
        return f"FileSecrets({str(self.path)!r})"

    def _refuse(self, problem: str, fix: str) -> SecretsError:
        return SecretsError(f"secrets file {self.path} {problem}; {fix}")

    def _read(self) -> dict[str, str]:
        try:
            fd = os.open(self.path, os.O_RDONLY | os.O_NOFOLLOW | os.O_CLOEXEC)
        except FileNotFoundError:
            return {}
        except OSError as error:
            if self.path.is_symlink():
                raise self._refuse("is a symbolic link", "replace it with the file itself") from None
            raise self._refuse(f"cannot be opened ({error.strerror})", "check its permissions") from None
        with os.fdopen(fd, "rb") as handle:
            info = os.fstat(handle.fileno())
            if not stat.S_ISREG(info.st_mode):
                raise self._refuse("is not a regular file", "move it away")
            if info.st_uid != os.geteuid():
                raise self._refuse(
                    f"is owned by uid {info.st_uid}, but corral runs as uid {os.geteuid()}",
                    f"run `chown {os.geteuid()} {self.path}` or run corral as its owner",
                )
            if info.st_mode & 0o077:
                raise self._refuse(
                    f"has mode {stat.S_IMODE(info.st_mode):04o}, readable by others",
                    f"run `chmod 600 {self.path}` (and rotate the secrets if others may have read them)",
                )
            raw = handle.read()
        return self._parse(raw)

    def _parse(self, raw: bytes) -> dict[str, str]:
        expected = f'expected {{"version": {_FILE_VERSION}, "secrets": {{"NAME": "value", ...}}}}'
        try:
            data = json.loads(raw)
        except ValueError:
            raise self._refuse("is not valid JSON", f"{expected}; fix or move it away") from None
        secrets = data.get("secrets") if isinstance(data, dict) else None
        if not isinstance(secrets, dict) or not all(isinstance(v, str) for v in secrets.values()):
            raise self._refuse("is not a corral secrets file", expected)
        return dict(secrets)

    def _write(self, secrets: dict[str, str]) -> None:
        """Temp file (0600) in the same folder, fsync, rename over, fsync the folder."""
        payload = json.dumps({"version": _FILE_VERSION, "secrets": secrets}, indent=2, sort_keys=True).encode()
        fd, temp = tempfile.mkstemp(dir=self.path.parent, prefix=f".{self.path.name}.", suffix=".tmp")
        try:
            with os.fdopen(fd, "wb") as handle:
                handle.write(payload)
                handle.flush()
                os.fsync(handle.fileno())
            os.replace(temp, self.path)
        except BaseException:
            with contextlib.suppress(FileNotFoundError):
                os.unlink(temp)
            raise
        directory = os.open(self.path.parent, os.O_RDONLY | os.O_DIRECTORY)
        try:
            os.fsync(directory)
        finally:
            os.close(directory)

    @contextlib.contextmanager
    def _locked(self) -> Iterator[None]:
        """One writer at a time (daemon and CLI), so no update is lost between read and write."""
        self.path.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
        fd = os.open(self._lock_path, os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o600)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX)
            for stale in self.path.parent.glob(f".{self.path.name}.*.tmp"):  # left by a writer killed mid-write
                stale.unlink(missing_ok=True)
            yield
        finally:
            os.close(fd)

    def get(self, name: str) -> str | None:
        return self._read().get(name)

    def set(self, name: str, value: str) -> None:
        check_secret(name, value)
        with self._locked():
            secrets = self._read()
            secrets[name] = value
            self._write(secrets)

    def remove(self, name: str) -> bool:
        with self._locked():
            secrets = self._read()
            if secrets.pop(name, None) is None:
                return False
            self._write(secrets)
        return True

    def names(self) -> list[str]:
        return sorted(self._read())


@dataclass(frozen=True)
class KeyringSupport:
    """Whether the OS keyring can hold corral's secrets here, and why (not)."""

    available: bool
    backend: str
    reason: str


def detect_keyring() -> KeyringSupport:
    """Find the ``keyring`` package's backend; the fail, null and empty chainer backends mean unavailable."""
    try:
        import keyring
        from keyring.backends import chainer, fail, null
    except ImportError:
        return KeyringSupport(False, "", "the keyring package is not installed (pip install keyring)")
    backend = keyring.get_keyring()
    label = f"{type(backend).__module__}.{type(backend).__name__}"
    empty_chain = isinstance(backend, chainer.ChainerBackend) and not chainer.ChainerBackend.backends
    if isinstance(backend, (fail.Keyring, null.Keyring)) or empty_chain:
        return KeyringSupport(
            False,
            label,
            "keyring found no usable OS keyring (a headless Linux server has no Secret Service); "
            "secrets go to the 0600 file instead",
        )
    return KeyringSupport(True, label, f"the OS keyring is usable through {label}")


class KeyringSecrets:
    """The OS keyring, under one service name. Keyrings cannot list entries, so an index entry does."""

    name = "keyring"
    writable = True

    def __init__(self, service: str = KEYRING_SERVICE, backend: Any = None) -> None:
        """``backend``: a ``keyring.backend.KeyringBackend``; default: the one ``keyring`` chose."""
        if backend is None:
            try:
                import keyring
            except ImportError:
                raise SecretsError("the OS keyring needs the keyring package: pip install keyring") from None
            backend = keyring.get_keyring()
        self.service = service
        self._backend = backend

    def __repr__(self) -> str:
        return f"KeyringSecrets(service={self.service!r}, backend={type(self._backend).__name__})"

    @contextlib.contextmanager
    def _failures(self, action: str) -> Iterator[None]:
        from keyring.errors import KeyringError

        try:
            yield
        except KeyringError as error:
            backend = type(self._backend).__name__
            raise SecretsError(f"the OS keyring ({backend}) failed to {action}: {type(error).__name__}") from None

    def _index(self) -> list[str]:
        with self._failures("read corral's index"):
            raw = self._backend.get_password(self.service, _INDEX_ENTRY)
        try:
            names = json.loads(raw) if raw else []
        except ValueError:
            names = []
        return sorted({n for n in names if isinstance(n, str) and _NAME.fullmatch(n)})

    def _save_index(self, names: list[str]) -> None:
        with self._failures("update corral's index"):
            self._backend.set_password(self.service, _INDEX_ENTRY, json.dumps(sorted(set(names))))

    def get(self, name: str) -> str | None:
        with self._failures(f"read secret {name!r}"):
            value = self._backend.get_password(self.service, name)
        return value if isinstance(value, str) else None

    def set(self, name: str, value: str) -> None:
        check_secret(name, value)
        with self._failures(f"store secret {name!r}"):
            self._backend.set_password(self.service, name, value)
        self._save_index([*self._index(), name])

    def remove(self, name: str) -> bool:
        from keyring.errors import PasswordDeleteError

        with self._failures(f"delete secret {name!r}"):
            try:
                self._backend.delete_password(self.service, name)
                removed = True
            except PasswordDeleteError:
                removed = False
        index = self._index()
        if name in index:
            self._save_index([n for n in index if n != name])
        return removed

    def names(self) -> list[str]:
        return self._index()


class SecretsStore:
    """Backends asked in order: the first that holds a name wins (see the module docstring)."""

    def __init__(self, backends: Sequence[SecretBackend]) -> None:
        if not backends:
            raise SecretsError("a secrets store needs at least one backend")
        self.backends = tuple(backends)

    def __repr__(self) -> str:
        return f"SecretsStore({', '.join(map(repr, self.backends))})"

    @classmethod
    def default(
        cls, directory: Path, environ: Mapping[str, str], *, use_keyring: bool = True, service: str = KEYRING_SERVICE
    ) -> SecretsStore:
        """Environment, then the OS keyring if usable, then ``directory/secrets.json``."""
        backends: list[SecretBackend] = [EnvSecrets(environ)]
        if use_keyring and detect_keyring().available:
            backends.append(KeyringSecrets(service))
        backends.append(FileSecrets(directory))
        return cls(backends)

    def _backend(self, name: str | None) -> SecretBackend:
        writable = [b for b in self.backends if b.writable]
        if name is None:
            if not writable:
                raise SecretsError("no writable secrets backend is configured")
            return writable[0]
        for backend in writable:
            if backend.name == name:
                return backend
        raise SecretsError(f"no writable secrets backend named {name!r}; use one of {[b.name for b in writable]}")

    def get(self, name: str) -> str:
        """The value of ``name`` from the first backend holding it."""
        for backend in self.backends:
            value = backend.get(name)
            if value is not None:
                return value
        places = ", ".join(repr(b) for b in self.backends)
        raise SecretNotFound(
            f"secret {name!r} was not found in {places}; store it in one of them, or export "
            f"{ENV_PREFIX}{name} in the daemon's environment"
        )

    def set(self, name: str, value: str, backend: str | None = None) -> str:
        """Store ``name`` in ``backend`` (default: the first writable one); return where it went."""
        check_secret(name, value)
        target = self._backend(backend)
        target.set(name, value)
        return target.name

    def remove(self, name: str) -> list[str]:
        """Remove ``name`` from every writable backend; return those that held it."""
        return [backend.name for backend in self.backends if backend.writable and backend.remove(name)]

    def list(self) -> dict[str, list[str]]:
        """Every secret name and the backends holding it, in resolution order (never the values)."""
        found: dict[str, list[str]] = {}
        for backend in self.backends:
            for name in backend.names():
                found.setdefault(name, []).append(backend.name)
        return dict(sorted(found.items()))

    def grant(self, names: Sequence[str]) -> dict[str, str]:
        """The values a run is granted, checked so that a :class:`Redactor` can hide each."""
        granted = {name: self.get(name) for name in names}
        for name, value in granted.items():
            check_secret(name, value)
        return granted


def _base64_forms(raw: bytes) -> set[str]:
    """The base64 text of ``raw`` wherever it sits in a longer encoded blob (3 alignments), std and urlsafe.

    Characters that mix in bits of neighbouring bytes are left out, so the middle still
    matches inside, say, a Basic auth header that encodes ``user:token``.
    """
    forms = set()
    for shift in range(3):
        encoded = base64.b64encode(b"\0" * shift + raw).decode()
        start = -(-shift * 4 // 3)
        end = (shift + len(raw)) * 8 // 6
        middle = encoded[start:end]
        forms |= {middle, middle.replace("+", "-").replace("/", "_")}
    return forms


def _forms(value: str) -> set[str]:
    """The whole-value forms of a secret found by plain search: as it is, fully encoded, base64."""
    forms = {value, quote(value, safe=""), quote(value), quote_plus(value)}
    forms |= {json.dumps(value)[1:-1], json.dumps(value, ensure_ascii=False)[1:-1]}
    return forms | _base64_forms(value.encode())


# The escaped forms: each character of a secret may be written as itself or in any of the
# ways below, independently of its neighbours, so one pattern covers full, partial and
# mixed encodings. A text holding none of _ESCAPE_MARKS cannot hold an escaped form.
# Every repeat below is possessive or bounded: an agent writes the text these run on, and a
# long run of backslashes must not cost the daemon more than a few steps per character.
_PERCENT = "%(?:25)*+"  # %XX, or %25XX and so on for each further round of %-encoding
_BACKSLASH = r"(?:\\|%(?:25)*+5[cC]){1,8}+"  # backslashes (escaped again, up to 8), or %-encoded ones
_ESCAPED_BACKSLASH = r"(?:\\|%(?:25)*+5[cC]){1,4}\\"  # a backslash in the secret, escaped: not possessive
_SHORT_ESCAPES = {'"': '"', "'": "'", "/": "/", "\b": "b", "\f": "f", "\n": "n", "\r": "r", "\t": "t"}
_ENTITIES = {"&": "amp", "<": "lt", ">": "gt", '"': "quot", "'": "apos"}
_ESCAPE_MARKS = ("%", "\\", "&")
_SCALARS = frozenset({int, float, bool, type(None)})  # kept as they are, checked first: most fields
_KEYS_CACHED = 1024  # field names seen, with their redacted form: the same few recur on every line


def _percent(byte: int) -> str:
    """``byte`` %-encoded any number of times (``%`` itself is ``%25``, ``%2525``...)."""
    return "%(?:25)++" if byte == 0x25 else _PERCENT + _hex(byte, 2)


def _hex(number: int, width: int) -> str:
    """``number`` in hex, zero-padded to ``width``, as a pattern that takes either letter case."""
    return "".join(f"[{d}{d.upper()}]" if d.isalpha() else d for d in f"{number:0{width}x}")


def _char_pattern(char: str, binary: bool) -> str:
    r"""Every way the escaped-form pattern takes one character of a secret.

    As itself; its UTF-8 bytes %-encoded (in ``binary`` patterns any mix of literal and
    %-encoded bytes); ``\uXXXX`` (a surrogate pair above U+FFFF), ``\UXXXXXXXX``,
    ``\u{X}``, ``\xXX`` of the code point up to U+00FF and of each UTF-8 byte, and the
    JSON/C short escape (``\/``, ``\"``, ``\n`` ...), after any number of backslashes or
    a %-encoded one; an HTML character reference; ``+`` for a space. ``binary`` patterns
    are ASCII text, compiled as bytes.
    """
    code, data = ord(char), char.encode()
    if binary:
        ways = ["".join(f"(?:\\x{byte:02x}|{_percent(byte)})" for byte in data)]
    else:
        ways = [re.escape(char), "".join(map(_percent, data))]
    if code > 0xFFFF:
        high, low = 0xD800 + ((code - 0x10000) >> 10), 0xDC00 + ((code - 0x10000) & 0x3FF)
        escapes = [f"u{_hex(high, 4)}{_BACKSLASH}u{_hex(low, 4)}"]
    else:
        escapes = [f"u{_hex(code, 4)}"]
    escapes += [f"U{_hex(code, 8)}", f"u\\{{0*{_hex(code, 1)}\\}}"]
    if code <= 0xFF:
        escapes.append(f"x{_hex(code, 2)}")
    if len(data) > 1:
        escapes.append(_BACKSLASH.join(f"x{_hex(byte, 2)}" for byte in data))
    if char in _SHORT_ESCAPES:
        escapes.append(re.escape(_SHORT_ESCAPES[char]))
    ways.append(f"{_BACKSLASH}(?:{'|'.join(escapes)})")
    if char == "\\":
        ways.append(_ESCAPED_BACKSLASH)
    named = f"|{_ENTITIES[char]}" if char in _ENTITIES else ""
    ways.append(f"&(?:#(?:0*{code}|[xX]0*{_hex(code, 1)}){named});")
    if char == " ":
        ways.append(r"\+")
    return f"(?:{'|'.join(ways)})"


def _trie(words: Sequence[Sequence[Any]], atom: Callable[[Any], str], end: Callable[[int], str]) -> str:
    """A pattern taking any of ``words``, which share their common prefixes.

    ``atom`` renders one element of a word, ``end(i)`` what follows the last one of word
    ``i`` (a word given twice keeps its first index). So a position is tried once per
    distinct element, not once per word; where a word ends and others go on, the longer
    come first and win. Runs without a branch are neither grouped nor recursed into, so
    a long value costs no depth.
    """
    root: dict[Any, Any] = {}
    for index, word in enumerate(words):
        node = root
        for item in word:
            node = node.setdefault(item, {})
        node.setdefault(None, index)

    def render(node: dict[Any, Any]) -> str:
        chain = []
        while len(node) == 1 and None not in node:
            ((item, node),) = node.items()
            chain.append(atom(item))
        branches = [atom(item) + render(child) for item, child in node.items() if item is not None]
        if None in node:
            branches.append(end(node[None]))
        return "".join(chain) + (branches[0] if len(branches) == 1 else f"(?:{'|'.join(branches)})")

    return render(root)


def _literal_pattern(forms: Sequence[str], binary: bool) -> str:
    """The whole-value forms as one trie; ``binary`` patterns are ASCII text, compiled as bytes."""
    if binary:
        return _trie([form.encode() for form in forms], lambda byte: f"\\x{byte:02x}", lambda index: "")
    return _trie(forms, re.escape, lambda index: "")


def _escaped_pattern(values: Sequence[str], binary: bool) -> str:
    """One pattern for the escaped forms of all ``values``; the group ``s<i>`` names the one found.

    The values share a trie (:func:`_trie`). Two lookaheads turn away, first at the cost
    of a character-class test, the positions where no value can start.
    """

    def char(item: str) -> str:
        return _char_pattern(item, binary)

    def literal(item: str) -> str:  # in bytes, later bytes of a character may be %-encoded: the first only
        return f"\\x{item.encode()[0]:02x}" if binary else re.escape(item)

    # The gate: a value starts here as itself (its first two characters, or the first and an
    # escape), or with an escape whose first characters fit one of the values.
    seconds: dict[str, set[str]] = {}
    for value in values:
        seconds.setdefault(value[0], set()).add(value[1])
    marks = re.escape("".join(_ESCAPE_MARKS) + "+")
    gate = [
        literal(first)
        if binary and not first.isascii()
        else f"{literal(first)}(?:[{marks}]|{'|'.join(map(literal, sorted(after)))})"
        for first, after in seconds.items()
    ]
    if " " in seconds:
        gate.append(r"\+")
    starts = sorted({_hex(first.encode()[0], 2) for first in seconds})
    shorts = "".join(sorted({re.escape(_SHORT_ESCAPES[first]) for first in seconds if first in _SHORT_ESCAPES}))
    gate += [f"%(?:25)*(?:{'|'.join(starts)})", f"{_BACKSLASH}[uUx{shorts}]", "&[#a-z]"]
    firsts = "".join(sorted(map(literal, seconds)))
    escaped = _trie(values, char, lambda index: f"(?P<s{index}>)")
    return f"(?=[{firsts}{marks}])(?={'|'.join(gate)})" + escaped


@functools.lru_cache(maxsize=16)
def value_pattern(value: str) -> re.Pattern[str]:
    """Every form of one ``value`` that a :class:`Redactor` finds, as one pattern compiled once.

    For hiding a credential that is not a granted secret (a model endpoint's API key)
    where no redactor is at hand; a value shorter than :data:`MIN_SECRET_LENGTH` is only
    found as it is.
    """
    if len(value) < MIN_SECRET_LENGTH:  # its base64 pieces would be a letter or two: the value alone
        return re.compile(re.escape(value))
    whole = _literal_pattern(sorted(_forms(value), key=len, reverse=True), False)
    return re.compile(f"{_escaped_pattern([value], False)}|{whole}")


class _Escaped:
    """The escaped-form pattern of some secrets: compiled for text at once, for bytes on first use."""

    def __init__(self, secrets: Mapping[str, str]) -> None:
        by_length = sorted(secrets.items(), key=lambda item: (-len(item[1]), item[0]))
        self.secrets = dict(by_length)
        self._names = {f"s{index}": name for index, (name, _) in enumerate(by_length)}
        self._text = re.compile(_escaped_pattern(list(self.secrets.values()), False))
        self._bytes: re.Pattern[bytes] | None = None

    def text(self, text: str) -> str:
        return self._text.sub(lambda m: f"[redacted:{self._names[m.lastgroup or '']}]", text)

    def bytes(self, data: bytes) -> bytes:
        if self._bytes is None:
            self._bytes = re.compile(_escaped_pattern(list(self.secrets.values()), True).encode())
        return self._bytes.sub(lambda m: f"[redacted:{self._names[m.lastgroup or '']}]".encode(), data)


class Redactor:
    r"""Replaces every granted secret, in each of its encodings, with ``[redacted:NAME]``.

    Compiled patterns, built once (when a grant adds values, not per line): the whole-value
    forms (plain, URL-encoded, JSON-escaped, base64, see :func:`_forms`) as one trie of
    literals, run on every string; and the escaped forms (see :func:`_char_pattern`), run
    only on a string holding ``%``, ``\`` or ``&`` (or ``+``, when a secret holds a
    space), since no escaped form can be written without one. The escaped-form patterns
    of a ``previous`` redactor are kept (compiling them is the costly part: about 0.3 ms
    per character of a secret), so a new grant compiles only its own values, unless one
    of them contains an earlier one or lies inside it: then all are compiled together, so
    the longer still wins.

    Handles ``str``, ``bytes``, and dicts (any mapping), lists, tuples and sets of them,
    keys included; a key that redacts to one already present gets `` (2)``, `` (3)``...,
    so no field is lost. Anything else is returned as it is.
    """

    def __init__(self, secrets: Mapping[str, str], previous: Redactor | None = None) -> None:
        lookup: dict[str, str] = {}
        for name, value in sorted(secrets.items()):
            check_secret(name, value)
            for form in _forms(value):
                lookup.setdefault(form, name)
        self._names = sorted(secrets)
        self._secrets = dict(secrets)
        self._keys: dict[str, str] = {}
        self._lookup = lookup
        self._escaped = self._batches(previous)
        self._text = re.compile(_literal_pattern(sorted(lookup, key=len, reverse=True), False)) if lookup else None
        self._bytes: re.Pattern[bytes] | None = None
        marks = "".join(_ESCAPE_MARKS) + ("+" if any(" " in value for value in secrets.values()) else "")
        self._marks = re.compile(f"[{re.escape(marks)}]")
        self._byte_marks = re.compile(f"[{re.escape(marks)}]".encode())

    def _batches(self, previous: Redactor | None) -> list[_Escaped]:
        kept = [b for b in previous._escaped if b.secrets.items() <= self._secrets.items()] if previous else []
        known = {name for batch in kept for name in batch.secrets}
        fresh = {name: value for name, value in self._secrets.items() if name not in known}
        if not fresh:
            return kept
        old = [value for batch in kept for value in batch.secrets.values()]
        if any(a in b or b in a for a in fresh.values() for b in old):
            return [_Escaped(self._secrets)]
        return [*kept, _Escaped(fresh)]

    def __repr__(self) -> str:
        return f"Redactor(names={self._names!r})"

    def redact_text(self, text: str) -> str:
        if self._text is None:
            return text
        if self._marks.search(text) is not None:  # first: it also takes plain text, longest first
            for batch in self._escaped:
                text = batch.text(text)
        if self._text.search(text) is not None:
            text = self._text.sub(lambda m: f"[redacted:{self._lookup[m.group()]}]", text)
        return text

    def redact_bytes(self, data: bytes) -> bytes:
        if not self._lookup:
            return data
        if self._bytes is None:
            ordered = sorted(self._lookup, key=len, reverse=True)
            self._bytes = re.compile(_literal_pattern(ordered, True).encode())
        if self._byte_marks.search(data) is not None:
            for batch in self._escaped:
                data = batch.bytes(data)
        if self._bytes.search(data) is not None:
            data = self._bytes.sub(lambda m: f"[redacted:{self._lookup[m.group().decode()]}]".encode(), data)
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
        if not reprs or isinstance(value, int | float):
            return value
        try:
            return self.redact_text(repr(value))
        except Exception:  # a broken __repr__, or an int too long to print
            return f"<unrepresentable {type(value).__name__}>"

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
    """A structlog processor hiding every secret granted so far, in every value of every event.

    The daemon calls :meth:`add` with a run's granted values before the run starts, so
    its log lines (the agent's output included), its error and its result are redacted
    from then on. Thread-safe: the redactor is replaced whole, never changed in place.
    With nothing granted it costs one attribute check per event.
    """

    def __init__(self) -> None:
        self._secrets: dict[str, str] = {}
        self._redactor: Redactor | None = None
        self._lock = threading.Lock()

    def __repr__(self) -> str:
        return f"Redaction(names={sorted(self._secrets)!r})"

    def add(self, secrets: Mapping[str, str]) -> None:
        """Redact these values too (a changed value is added; the old one stays redacted)."""
        with self._lock:
            known = set(self._secrets.items())
            fresh = {name: value for name, value in secrets.items() if (name, value) not in known}
            if not fresh:
                return
            for name, value in fresh.items():
                key = name if self._secrets.get(name, value) == value else f"{name}_{len(self._secrets)}"
                self._secrets[key] = value
            self._redactor = Redactor(self._secrets, self._redactor)

    def redact(self, value: T) -> T:
        redactor = self._redactor
        return value if redactor is None else redactor.redact(value)

    def __call__(self, logger: Any, name: str, event_dict: Any) -> Any:
        redactor = self._redactor
        if redactor is None:
            return event_dict
        return redactor.redact_event(event_dict)
