"""Where API keys and tokens are kept: the backends and the store that asks them in order.

A :class:`SecretsStore` asks its backends in order; the first that holds a name wins.
The default order (:meth:`SecretsStore.default`) is:

1. the environment: ``CORRAL_SECRET_<NAME>`` in the mapping given (read-only), so an
   operator can override any stored value for one launch;
2. the OS keyring (macOS Keychain, Secret Service, ...), when the ``keyring`` package is
   installed and finds a usable backend;
3. a JSON file of mode 0600 in the corral home, which corral refuses to read if anyone
   but its owner could read it.

New values go to the first writable backend (the keyring where usable, else the file)
unless a backend is named. Values are never part of an error message or a repr.
"""

from __future__ import annotations

import contextlib
import fcntl
import json
import os
import re
import stat
import tempfile
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Protocol

from corral.errors import CorralError
from corral.secrets.secret import MIN_SECRET_LENGTH

ENV_PREFIX = "CORRAL_SECRET_"
KEYRING_SERVICE = "corral"
NAME = re.compile(r"[A-Za-z_][A-Za-z0-9_]*")
"""What a secret's name may be: an environment variable's name."""
_INDEX_ENTRY = "corral:index"  # not a valid secret name, so it cannot collide with one
_FILE_VERSION = 1


class SecretsError(CorralError):
    """Operator: a secret could not be stored, found or used; the message names it and the fix."""


class SecretNotFound(SecretsError):
    """Operator: no backend holds the secret a run was granted."""


def check_secret(name: str, value: str) -> None:
    """Refuse bad names and values too short to redact safely (they would hide common words)."""
    if not NAME.fullmatch(name):
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
        return sorted(name for name in found if NAME.fullmatch(name))


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
        return sorted({n for n in names if isinstance(n, str) and NAME.fullmatch(n)})

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
