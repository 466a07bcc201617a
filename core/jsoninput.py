"""JSON a person gives corral as a run's input (``corral run --input``, the console's form,
the control socket), checked once in one place: JSON it is, and the store can keep it."""

from __future__ import annotations

import json
import math
from typing import Any

from corral.packing import MAX_DEPTH, nesting, pack


class NotStorable(ValueError):
    """Valid JSON that the store and the wire cannot carry (an integer beyond 64 bits)."""


def loads(text: str | bytes) -> Any:
    """``text`` parsed as strict JSON: ValueError for ``NaN``, ``Infinity`` and ``-Infinity``
    (which Python's json takes and no other JSON parser does), for a number too large for a
    float (``1e999``, which Python's json turns into infinity), and for nesting past the
    recursion limit."""
    try:
        return json.loads(text, parse_constant=_not_json, parse_float=_finite)
    except RecursionError:
        raise ValueError(TOO_DEEP) from None


TOO_DEEP = f"nested too deeply: corral keeps lists and objects up to {MAX_DEPTH} levels deep"


def _not_json(name: str) -> Any:
    raise ValueError(f'{name} is not a JSON value; write a number, or the string "{name}"')


def _finite(text: str) -> float:
    number = float(text)
    if not math.isfinite(number):
        raise ValueError(f"{text[:40]} is beyond the largest number JSON readers agree on (about 1.8e308)")
    return number


def parse_input(text: str | bytes) -> Any:
    """``text`` as a run's input. ValueError saying why when it is not valid JSON (see
    :func:`loads`; a lone surrogate); :class:`NotStorable` when it is JSON the store cannot keep."""
    value = loads(text)
    storable(value)
    return value


def storable(value: Any) -> None:
    """Raise ValueError (a lone surrogate, nesting too deep) or :class:`NotStorable` unless
    ``value`` is what the store and the wire can keep."""
    if nesting(value) > MAX_DEPTH:
        raise ValueError(TOO_DEEP)
    json.dumps(value, ensure_ascii=False).encode()  # within the bound: no RecursionError
    try:
        pack(value)
    except (OverflowError, TypeError, ValueError) as exc:
        raise NotStorable(str(exc)) from None
