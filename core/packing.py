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
