"""JSON a person gives corral as a run's input (``corral run --input``, the console's form,
the control socket), checked once in one place: JSON it is, and the store can keep it."""

from __future__ import annotations

import json
from typing import Any

from corral.packing import pack


class NotStorable(ValueError):
    """Valid JSON that the store and the wire cannot carry (an integer beyond 64 bits)."""


def parse_input(text: str | bytes) -> Any:
    """``text`` as a run's input. ValueError saying why when it is not valid JSON (nesting
    past Python's recursion limit, a lone surrogate); :class:`NotStorable` when it is JSON the
    store cannot keep."""
    try:
        value = json.loads(text)
    except RecursionError:
        raise ValueError("nested too deeply") from None
    storable(value)
    return value


def storable(value: Any) -> None:
    """Raise ValueError (a lone surrogate, nesting too deep) or :class:`NotStorable` unless
    ``value`` is what the store and the wire can keep."""
    try:
        json.dumps(value, ensure_ascii=False).encode()
    except RecursionError:
        raise ValueError("nested too deeply") from None
    try:
        pack(value)
    except (OverflowError, TypeError, ValueError) as exc:
        raise NotStorable(str(exc)) from None
