"""Frames: validated before use, bounded in size and time, never resynchronised."""

from __future__ import annotations

import asyncio
import os

import msgpack
import pytest

from corral import wire
from corral.errors import ProtocolError


def _body(message: object) -> bytes:
    return msgpack.packb(message, use_bin_type=True)


def test_round_trip_over_a_real_pipe() -> None:
    read_fd, write_fd = os.pipe()
    channel = wire.BlockingChannel(read_fd, write_fd)
    channel.send({"t": "result", "seq": 3, "ok": True, "replayed": False, "value": {"x": [1, "two"]}})
    assert channel.recv() == {"t": "result", "seq": 3, "ok": True, "replayed": False, "value": {"x": [1, "two"]}}
    os.close(read_fd)
    os.close(write_fd)


@pytest.mark.parametrize(
    ("body", "message"),
    [
        (b"\xc1", "not valid msgpack"),
        (_body(msgpack.ExtType(5, b"x")), "extension type 5"),
        (_body([1, 2]), "must be a map"),
        (_body({"t": "launch"}), "unknown message type 'launch'"),
        (_body({"t": "step", "seq": 1, "kind": "tool", "name": "x"}), "lacks field 'args'"),
        (_body({"t": "step", "seq": True, "kind": "tool", "name": "x", "args": {}}), "'seq' must be an integer"),
        (_body({"t": "step", "seq": 1, "kind": "tool", "name": "x", "args": {}, "extra": 1}), "unexpected fields"),
        (b"\x91" * 100_000, "nested deeper than the wire allows"),
        (_body({1: 2}), "not valid msgpack"),
    ],
    ids=["garbage", "ext", "list", "unknown", "missing", "bool_seq", "extra", "deep", "int_key"],
)
def test_bad_frames_are_protocol_errors(body: bytes, message: str) -> None:
    with pytest.raises(ProtocolError, match=message):
        wire.decode(body, wire.CHILD_MESSAGES)


async def _read(data: bytes, *, eof: bool = True, max_bytes: int = 1024, deadline: float = 0.3) -> object:
    reader = asyncio.StreamReader()
    reader.feed_data(data)
    if eof:
        reader.feed_eof()
    return await wire.FrameReader(reader, max_bytes=max_bytes, deadline=deadline).next()


def test_frames_that_arrive_together_are_read_in_order() -> None:
    async def both() -> list[object]:
        reader = asyncio.StreamReader()
        reader.feed_data(wire.encode({"t": "hello", "v": 1, "pid": 1}) + wire.encode({"t": "hello", "v": 1, "pid": 2}))
        reader.feed_eof()
        frames = wire.FrameReader(reader, max_bytes=1024, deadline=1)
        return [await frames.next(), await frames.next(), await frames.next()]

    first, second, end = asyncio.run(both())
    assert first["pid"] == 1 and second["pid"] == 2 and end is None  # type: ignore[index]


def test_async_reader_limits() -> None:
    good = wire.encode({"t": "hello", "v": 1, "pid": 7})
    assert asyncio.run(_read(good)) == {"t": "hello", "v": 1, "pid": 7}
    assert asyncio.run(_read(b"")) is None, "clean EOF between frames"
    with pytest.raises(ProtocolError, match="exceeds the 1024-byte limit"):
        asyncio.run(_read(wire.HEADER.pack(1 << 30) + b"x"))
    with pytest.raises(ProtocolError, match="ended mid-frame"):
        asyncio.run(_read(good[:-3]))
    with pytest.raises(ProtocolError, match="did not arrive whole"):
        asyncio.run(_read(good[:-3], eof=False))


def test_fingerprints_ignore_map_order_but_not_values() -> None:
    a = wire.fingerprint("tool", "x", {"a": 1, "b": {"c": 2, "d": 3}})
    assert a == wire.fingerprint("tool", "x", {"b": {"d": 3, "c": 2}, "a": 1})
    assert a != wire.fingerprint("tool", "x", {"a": 2, "b": {"c": 2, "d": 3}})
    assert a != wire.fingerprint("tool", "y", {"a": 1, "b": {"c": 2, "d": 3}})
    key = wire.idempotency_key("run", 4, "x", {"a": 1})
    assert key == wire.idempotency_key("run", 4, "x", {"a": 1}) != wire.idempotency_key("run", 5, "x", {"a": 1})
