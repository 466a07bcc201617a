"""The one collector of config problems: every problem of a file in one pass, each naming
the file, the table, the key, what is wrong and how to fix it.

Section readers take a :class:`Problems`, report what they find and carry on with a
default, so the operator fixes the whole file at once; :meth:`Problems.check` then raises
one :class:`~corral.errors.ConfigError` listing them all. Keys are read by their declared
kind (:mod:`corral.config.kinds`): a table declares its keys as annotations (a frozen
dataclass whose fields are the keys, or a class of annotations alone when the typed value
is built elsewhere), and :meth:`Problems.read` or :meth:`Problems.keys` reads them.

Messages read ``corral.toml: [agents.a.limits] memory_mb: -5 is not a positive integer;
give ...``. A plugin's own table (a sink's, say) is read without the file's name, which
the caller adds (``Problems(None)``).
"""

from __future__ import annotations

import dataclasses
import difflib
import functools
from collections.abc import Iterable, Mapping
from pathlib import Path
from typing import TYPE_CHECKING, Any, TypeVar, get_type_hints

from corral.config.kinds import Key, Wrong, key_of, read
from corral.errors import ConfigError

if TYPE_CHECKING:
    from _typeshed import DataclassInstance

T = TypeVar("T", bound="DataclassInstance")


class Problems:
    """Every problem found in one file (``where``), or in one plugin's table (``None``)."""

    def __init__(self, where: str | None = None) -> None:
        self.where = where
        self.items: list[str] = []

    def __bool__(self) -> bool:
        return bool(self.items)

    def at(self, section: str, key: str | None = None) -> str:
        """Where a problem is, as messages name it: ``corral.toml: [agents.a] every``."""
        place = f"[{section}] {key}" if key else f"[{section}]"
        return f"{self.where}: {place}" if self.where else place

    def fail(self, section: str, key: str | None, message: str) -> None:
        """Record that ``key`` of ``[section]`` (or the table itself) is wrong; ``message``
        says what is wrong and how to fix it."""
        self.items.append(f"{self.at(section, key)}: {message}")

    def check(self) -> None:
        """Raise ConfigError listing every problem, if there is any."""
        if self.items:
            raise ConfigError(list(self.items))

    def table(self, section: str, value: object, shape: str = "a table", key: str | None = None) -> Mapping[str, Any]:
        """``value`` (``[section]``, or its ``key``) if it is a table (nothing given is an
        empty one), else a problem and ``{}``."""
        if value is None:
            return {}
        if not isinstance(value, Mapping):
            self.fail(section, key, f"must be {shape}")
            return {}
        return value

    def unknown(self, section: str, table: Mapping[str, Any], known: Iterable[str]) -> None:
        """A problem for each key of ``table`` not in ``known``, with the nearest known key."""
        known = sorted(known)
        for key in table:
            if key not in known:
                near = difflib.get_close_matches(str(key), known, n=1)
                hint = f"did you mean {near[0]!r}?" if near else f"known keys: {', '.join(known)}"
                self.fail(section, str(key), f"unknown key; {hint}")

    def value(self, section: str, table: Mapping[str, Any], key: str, kind: Any, default: Any, fix: str = "") -> Any:
        """``table[key]`` read as ``kind``; ``default`` when it is absent or wrong (a problem then)."""
        if key not in table:
            return default
        try:
            return read(table[key], kind)
        except Wrong as exc:
            self.fail(section, key, f"{exc}; {fix}" if fix else str(exc))
            return default

    def keys(self, section: str, table: Mapping[str, Any], declared: type) -> dict[str, Any]:
        """Every key ``declared`` marks with :class:`~corral.config.kinds.Key` that ``table``
        gives, read by its kind; a missing required key and each wrong value is a problem
        (and left out)."""
        values: dict[str, Any] = {}
        for name, (kind, key) in table_keys(declared).items():
            if name in table:
                try:
                    values[name] = read(table[name], kind)
                except Wrong as exc:
                    self.fail(section, name, f"{exc}; {key.fix}" if key.fix else str(exc))
            elif key.required:
                self.fail(section, name, f"is required; {key.fix}" if key.fix else "is required")
        return values

    def read(self, section: str, data: object, declared: type[T], base: T | None = None, shape: str = "a table") -> T:
        """A whole table of ``declared`` (a frozen dataclass whose fields are its keys): unknown
        keys, each key by its kind, the rest from ``base`` (else the defaults). ``shape`` says
        what the table should look like when it is not one."""
        table = self.table(section, data, shape)
        self.unknown(section, table, table_keys(declared))
        values = self.keys(section, table, declared)
        return dataclasses.replace(base, **values) if base is not None else declared(**values)


def file_name(path: Path | None) -> str:
    """How messages name a config file (``<config>`` for one that was never a file)."""
    return str(path) if path else "<config>"


@functools.cache
def table_keys(declared: type) -> dict[str, tuple[Any, Key]]:
    """The keys a class declares: name -> (its annotated kind, its :class:`Key`)."""
    hints = get_type_hints(declared, include_extras=True)
    return {name: (hint, key) for name, hint in hints.items() if (key := key_of(hint)) is not None}
