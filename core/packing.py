"""msgpack packing with one reusable ``Packer`` per thread.

``msgpack.packb`` builds a new ``Packer`` (and its 256 KiB buffer) on every call, which is
most of what packing a small journal entry or wire frame costs; the step path packs
several per step on the store writer's thread, and the agent's runtime several more.
"""

from __future__ import annotations

import threading
from typing import Any

import msgpack

_BUFFER = 256 * 1024
"""A thread keeps its packer only while packed values fit this (msgpack's default buffer);
after a bigger one it starts afresh, so one large value does not pin its size for good."""

_local = threading.local()


def pack(value: Any) -> bytes:
    """``msgpack.packb(value, use_bin_type=True)``, without building a packer each time.

    Raises what ``packb`` raises (TypeError, ValueError, OverflowError); the packer is left
    empty for the next call either way.
    """
    packer: msgpack.Packer | None = getattr(_local, "packer", None)
    if packer is None:
        packer = _local.packer = msgpack.Packer(use_bin_type=True, buf_size=_BUFFER)
    data: bytes = packer.pack(value)
    if len(data) > _BUFFER:
        _local.packer = None
    return data


MAX_DEPTH = 100
"""How deep lists and maps may nest in a value an agent or a person hands corral: a log
field, a tool's arguments or result, ``ctx.state``, a model message, a run's input. Far
beyond what data needs, and far within what every walk the daemon makes over such a
value can take (Python's recursion limit of 1000 frames, orjson's 255 levels, the JSON
Schema validator's), so no value can make one of them fail (docs/protocol.md)."""

_NESTING = frozenset({dict, list, tuple})


def nesting(value: Any, limit: int = MAX_DEPTH) -> int:
    """How deep lists, tuples and maps nest in ``value`` (0 for a scalar, 1 for ``[1]``),
    counted no further than ``limit + 1``. A loop over one level at a time, never a
    recursion: the value it measures may be too deep to recurse over."""
    level = [value] if type(value) in _NESTING else []
    depth = 0
    while level and depth <= limit:
        depth += 1
        inner: list[Any] = []
        for item in level:
            children = item.values() if type(item) is dict else item
            inner += [child for child in children if type(child) in _NESTING]
        level = inner
    return depth
