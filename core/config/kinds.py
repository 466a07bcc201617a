"""The kinds of value a config key holds, each declared once.

A kind is a type annotation: the Python type and its bounds as :class:`msgspec.Meta`
constraints, which msgspec checks (``bool`` is never taken for ``int``, ``1.5`` never for
an integer), plus a :class:`Rule`: what a wrong value is told, and the TOML shorthand
read before the check (``"5m"`` for 300 seconds, ``"none"`` for no limit). Sections
declare their keys with these kinds (``max_attempts: Annotated[PositiveInt, Key(...)]``)
and :class:`corral.config.problems.Problems` reads them, so "a positive integer" is
checked and worded here and nowhere else. A section refines a kind by wrapping it in
another ``Annotated`` with its own Rule: the bounds stay, the wording is the outer one.

Imports nothing of corral's but the units, so any module may declare its keys with it.
"""

from __future__ import annotations

import functools
import ipaddress
import sys
from collections.abc import Callable
from dataclasses import dataclass
from decimal import Decimal
from types import UnionType
from typing import Annotated, Any, Literal, Union, get_args, get_origin
from urllib.parse import urlsplit

import msgspec
from msgspec import Meta

from corral.config.units import parse_duration, zone_named


@dataclass(frozen=True)
class Rule:
    """How one kind of value is read, and what is said of a wrong one."""

    wrong: str
    """What a wrong value is told; ``{value!r}`` stands for the value as written."""
    parse: Callable[[Any], Any] | None = None
    """The shorthand an operator may write, turned into the checked type first
    (``"5m"`` -> 300.0); a ValueError it raises is the whole message."""
    then: Callable[[Any], Any] | None = None
    """The checked value into the value kept (a float of dollars into a Decimal)."""
    off: tuple[object, ...] = ()
    """Values that lift a limit or turn a setting off: read as None."""


@dataclass(frozen=True)
class Key:
    """Marks a field (or an annotation of a table declaration) as a key of its table."""

    fix: str = ""
    """How to write a good value, added to every message about this key."""
    required: bool = False
    """A missing key is a problem ("is required; " and the fix)."""


class Wrong(ValueError):
    """A value that is not of its kind; the message says what is wrong, without the fix."""


_FINITE = sys.float_info.max

PositiveInt = Annotated[int, Meta(gt=0), Rule("{value!r} is not a positive integer")]
Count = Annotated[int, Meta(ge=0), Rule("{value!r} is not a whole number, 0 or more")]
PositiveNumber = Annotated[float, Meta(gt=0, le=_FINITE), Rule("{value!r} is not a positive number")]
Flag = Annotated[bool, Rule("{value!r} is not true or false")]
String = Annotated[str, Rule("{value!r} is not a string")]
Text = Annotated[str, Meta(pattern=r"\S"), Rule("{value!r} is not a non-empty string")]
Texts = Annotated[tuple[Text, ...], Rule("{value!r} is not a list of non-empty strings")]


def _one_or_more(value: object) -> object:
    return [value] if isinstance(value, str) else value


Names = Annotated[tuple[Text, ...], Rule("{value!r} is not a list of non-empty strings", parse=_one_or_more)]
"""Non-empty strings; one string alone is a list of one."""
SomeTexts = Annotated[Names, Meta(min_length=1)]
"""At least one non-empty string; one string alone is a list of one."""

EnvName = Annotated[
    str, Meta(pattern=r"^[A-Za-z_][A-Za-z0-9_]*$"), Rule("{value!r} is not an environment variable name")
]
EnvNames = Annotated[tuple[EnvName, ...], Rule("{value!r} is not a list of environment variable names")]

Port = Annotated[int, Meta(ge=1, le=65535), Rule("{value!r} is not a port number; give an integer from 1 to 65535")]
AnyPort = Annotated[
    int, Meta(ge=0, le=65535), Rule("{value!r} is not a port number; give 1 to 65535, or 0 for any free port")
]

Seconds = Annotated[float, Meta(ge=0, le=_FINITE), Rule("must be a finite duration", parse=parse_duration)]
"""A duration, zero allowed: ``30``, ``2.5``, ``"90s"``, ``"1h30m"``."""
PositiveSeconds = Annotated[float, Meta(gt=0, le=_FINITE), Rule("must be more than zero", parse=parse_duration)]


_LIFT: tuple[object, ...] = ("none", False)
"""What lifts a limit: ``"none"`` or ``false``."""

Limit = Annotated[Annotated[int, Meta(gt=0)] | None, Rule("{value!r} is not a positive integer", off=_LIFT)]
"""A positive integer, or ``"none"`` (or false) for no limit: None."""
SecondsLimit = Annotated[
    Annotated[float, Meta(ge=0, le=_FINITE)] | None, Rule("must be a finite duration", parse=parse_duration, off=_LIFT)
]
"""A duration, or ``"none"`` (or false) for no limit: None."""
PositiveSecondsOrOff = Annotated[
    Annotated[float, Meta(gt=0, le=_FINITE)] | None,
    Rule("must be more than zero", parse=parse_duration, off=_LIFT),
]
"""A duration above zero, or false (or ``"none"``) to turn it off: None."""


def _zone(value: object) -> str:
    if not isinstance(value, str):
        raise ValueError(f"{value!r} is not a time zone")
    zone_named(value)
    return value


Zone = Annotated[str, Rule("{value!r} is not a time zone", parse=_zone)]
"""An IANA time zone name, checked against the zone database."""


def _dollars(value: float) -> Decimal:
    return Decimal(str(value))  # through str, so 0.1 stays exactly 0.1


Dollars = Annotated[float, Meta(gt=0, le=_FINITE), Rule("{value!r} is not a positive amount of dollars", then=_dollars)]
Price = Annotated[
    float,
    Meta(ge=0, le=_FINITE),
    Rule("{value!r} is not a price (0 or more)", then=_dollars),
]
Fractions = Annotated[
    tuple[Annotated[float, Meta(gt=0, lt=1)], ...], Rule("{value!r} must be a list of fractions between 0 and 1")
]


def _http_url(value: object) -> str:
    if isinstance(value, str) and not any(c.isspace() for c in value):
        try:
            parts = urlsplit(value)
            if parts.scheme in ("http", "https") and parts.hostname:
                return value
        except ValueError:  # a port that is not a number, a broken IPv6 address
            pass
    raise ValueError(f"{value!r} is not an http(s) URL")


HttpUrl = Annotated[str, Rule("{value!r} is not an http(s) URL", parse=_http_url)]
"""An ``http://`` or ``https://`` URL with a host (read without the HTTP client: every command reads the config)."""


def _loopback(value: object) -> str:
    try:
        if isinstance(value, str) and ipaddress.ip_address(value).is_loopback:
            return value
    except ValueError:
        pass
    raise ValueError(f"{value!r} is not a loopback address")


Loopback = Annotated[str, Rule("{value!r} is not a loopback address", parse=_loopback)]


def choice(*options: str) -> Any:
    """The kind of a key that takes one of ``options``."""
    return Literal.__getitem__(options)


def read(value: object, kind: Any) -> Any:
    """``value`` as ``kind`` declares it; raises :class:`Wrong` saying what is wrong."""
    checked, rule, _ = _peel(kind)
    if rule is not None and any(value is off or (type(value) is type(off) and value == off) for off in rule.off):
        return None
    given = value
    if rule is not None and rule.parse is not None:
        try:
            value = rule.parse(value)
        except ValueError as exc:
            raise Wrong(str(exc)) from None
    try:
        value = msgspec.convert(value, checked)
    except msgspec.ValidationError as exc:
        raise Wrong(_wrong(given, checked, rule, exc)) from None
    if rule is not None and rule.then is not None:
        value = rule.then(value)
    return value


def key_of(annotation: Any) -> Key | None:
    """The :class:`Key` of a field's annotation, or None when the field is not a table key."""
    return _peel(annotation)[2]


@functools.cache  # a kind is peeled once, not at every key of every table
def _peel(kind: Any) -> tuple[Any, Rule | None, Key | None]:
    """The type msgspec checks (its constraints kept), the kind's Rule and its Key.

    ``Annotated`` layers and an ``X | None`` around them are peeled (TOML has no null: None
    is only ever a default or what ``off`` reads as). An outer Rule (a refined kind) gives
    the wording, and its reading where it sets one, else the inner kind's.
    """
    checks: list[Any] = []
    rules: list[Rule] = []
    keys: list[Key] = []
    while True:
        if get_origin(kind) is Annotated:
            kind, *extras = get_args(kind)
            rules[:0] = [extra for extra in extras if isinstance(extra, Rule)]
            keys[:0] = [extra for extra in extras if isinstance(extra, Key)]
            checks[:0] = [extra for extra in extras if not isinstance(extra, Rule | Key)]
        elif get_origin(kind) in (Union, UnionType) and type(None) in get_args(kind) and len(get_args(kind)) == 2:
            kind = next(arg for arg in get_args(kind) if arg is not type(None))
        else:
            break
    rule: Rule | None = None
    for outer in rules:
        if rule is not None:
            outer = Rule(outer.wrong, outer.parse or rule.parse, outer.then or rule.then, outer.off or rule.off)
        rule = outer
    checked = Annotated[(kind, *checks)] if checks else kind
    return checked, rule, (keys[-1] if keys else None)


def _wrong(value: object, checked: Any, rule: Rule | None, exc: msgspec.ValidationError) -> str:
    if rule is not None:
        return rule.wrong.format(value=value)
    if get_origin(checked) is Literal:
        return f"{value!r} is not one of {', '.join(repr(option) for option in get_args(checked))}"
    return f"{value!r} is not valid here ({exc})"
