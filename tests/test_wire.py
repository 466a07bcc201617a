"""Frames: validated before use, bounded in size and time, never resynchronised."""

from __future__ import annotations

import asyncio
import contextlib
import os
import tempfile
import threading
from collections.abc import AsyncIterator
from pathlib import Path

import msgpack
import pytest

from corral import wire
from corral.errors import ProtocolError
from corral.packing import MAX_DEPTH, nesting
from corral.run.childwire import ChildWire
from corral.store import Store, Writer


def _body(message: object) -> bytes:
    return msgpack.packb(message, use_bin_type=True)


def test_round_trip_over_a_real_pipe() -> None:
    read_fd, write_fd = os.pipe()
    channel = wire.BlockingChannel(read_fd, write_fd)
    channel.send({"t": "result", "seq": 3, "ok": True, "replayed": False, "value": {"x": [1, "two"]}})
    assert channel.recv() == {"t": "result", "seq": 3, "ok": True, "replayed": False, "value": {"x": [1, "two"]}}
    os.close(read_fd)
    os.close(write_fd)


def test_answers_that_arrive_together_or_in_pieces_are_read_whole() -> None:
    # The child reads whatever the pipe holds and keeps what lies past one frame.
    read_fd, write_fd = os.pipe()
    channel = wire.BlockingChannel(read_fd, -1)
    first = {"t": "exec", "seq": 1, "key": "k1"}
    second = {"t": "result", "seq": 2, "ok": True, "replayed": True, "value": "x" * 70_000}
    frames = wire.encode(first) + wire.encode(second)
    writer = threading.Thread(target=lambda: [os.write(write_fd, frames[i : i + 7]) for i in range(0, 21, 7)])
    writer.start()
    writer.join()
    sent = threading.Thread(target=lambda: os.write(write_fd, frames[21:]))
    sent.start()
    assert channel.recv() == first
    assert channel.recv() == second
    sent.join()
    os.close(write_fd)
    with pytest.raises(ProtocolError, match="closed the wire"):
        channel.recv()
    os.close(read_fd)


def test_packing_reuses_a_packer_per_thread_and_survives_errors() -> None:
    from corral.packing import pack

    value = {"seq": 1, "args": {"a": [1, 2.5, None, True]}, "blob": b"\x00"}
    assert pack(value) == msgpack.packb(value, use_bin_type=True)
    with pytest.raises(TypeError):
        pack({"a": object()})
    assert pack([1]) == b"\x91\x01"  # nothing of the failed value is left in the buffer
    big = "y" * 300_000
    assert pack(big) == msgpack.packb(big, use_bin_type=True)
    assert pack("z") == msgpack.packb("z", use_bin_type=True)
    other: list[bytes] = []
    thread = threading.Thread(target=lambda: other.append(pack(value)))
    thread.start()
    thread.join()
    assert other == [pack(value)]


def test_fingerprints_stay_the_hash_of_the_canonical_request() -> None:
    # Journals on disk hold these values: a faster fingerprint must give the same ones.
    import hashlib

    args = {"b": [{"z": 1, "y": {"q": 2, "p": 3}}], "a": "s", "c": None}
    canonical = msgpack.packb(["tool", "search", wire.canonical(args)], use_bin_type=True)
    assert wire.fingerprint("tool", "search", args) == hashlib.sha256(canonical).hexdigest()[:32]
    reordered = {"c": None, "a": "s", "b": [{"y": {"p": 3, "q": 2}, "z": 1}]}
    assert wire.fingerprint("tool", "search", reordered) == wire.fingerprint("tool", "search", args)
    assert wire.fingerprint("tool", "search", args) != wire.fingerprint("model", "search", args)


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
        (_body({"t": "done", "seq": 1, "ok": True, "other": 1}), r"unexpected fields \['other'\]"),
        (b"\x91" * 100_000, "nested deeper than the wire allows"),
        (_body({1: 2}), "not valid msgpack"),
        (_body({"t": "log", "level": "info", "event": "e", "fields": {b"k": 1}}), "'fields' must have text keys"),
    ],
    ids=[
        "garbage",
        "ext",
        "list",
        "unknown",
        "missing",
        "bool_seq",
        "extra",
        "extra_for_optional",
        "deep",
        "int_key",
        "bytes_field_name",
    ],
)
def test_bad_frames_are_protocol_errors(body: bytes, message: str) -> None:
    with pytest.raises(ProtocolError, match=message):
        wire.decode(body, wire.CHILD_MESSAGES)


@contextlib.asynccontextmanager
async def _wire(max_bytes: int = 1024, deadline: float = 0.3) -> AsyncIterator[tuple[ChildWire, int, int]]:
    """A ChildWire on two real pipes, served by a real store writer thread; yields it with
    the child's write end and read end."""
    daemon_read, child_write = os.pipe()
    child_read, daemon_write = os.pipe()
    with tempfile.TemporaryDirectory() as tmp:
        store = Store.open(Path(tmp) / "store")
        writer = Writer(store)
        wire_end = ChildWire(daemon_read, daemon_write, max_bytes=max_bytes)
        wire_end.deadline_seconds = deadline
        wire_end.reply_timeout = deadline
        writer.attach(wire_end)
        try:
            yield wire_end, child_write, child_read
        finally:
            await writer.detach(wire_end)
            wire_end.close()
            writer.close()
            store.close()
            for fd in (child_write, child_read):
                with contextlib.suppress(OSError):
                    os.close(fd)


async def _read(data: bytes, *, eof: bool = True, max_bytes: int = 1024, deadline: float = 0.3) -> object:
    async with _wire(max_bytes, deadline) as (wire_end, child_write, _):
        os.write(child_write, data)
        if eof:
            os.close(child_write)
        return await wire_end.next(5)


def _log_frame(depth: int) -> dict[str, object]:
    """A log frame nested ``depth`` deep in all: the frame, its fields, then lists."""
    value: object = "bottom"
    for _ in range(depth - 2):
        value = [value]
    return {"t": "log", "level": "info", "event": "e", "fields": {"v": value}}


def test_frames_nested_past_the_bound_are_refused_on_both_ends() -> None:
    # msgpack reads about 1,000 levels; the daemon's walks over a value (redaction, the
    # log, schema checks) recursed past Python's limit well before that.
    limit = wire.MAX_FRAME_DEPTH
    assert wire.decode(_body(_log_frame(limit)), wire.CHILD_MESSAGES)["fields"]
    with pytest.raises(ProtocolError, match=f"nested deeper than the wire allows \\({limit} levels"):
        wire.decode(_body(_log_frame(limit + 1)), wire.CHILD_MESSAGES)
    read_fd, write_fd = os.pipe()
    channel = wire.BlockingChannel(read_fd, write_fd)
    with pytest.raises(ValueError, match=f"deeper than corral keeps \\({MAX_DEPTH} levels\\)"):
        channel.send(_log_frame(900))
    channel.send(_log_frame(limit))  # nothing of the refused frame went out: the next one reads whole
    assert nesting(msgpack.unpackb(os.read(read_fd, 1 << 16)[wire.HEADER.size :]), limit + 1) == limit
    os.close(read_fd)
    os.close(write_fd)


def test_nesting_is_measured_without_recursion_and_stops_at_the_limit() -> None:
    deep: object = 1
    for _ in range(100_000):
        deep = {"k": [deep]}
    assert nesting(deep, 50) == 51
    assert [nesting(v) for v in (1, "x", [], {}, [[], {"a": (1,)}], {"a": [1, {"b": []}]})] == [0, 0, 1, 1, 3, 4]


def test_frames_that_arrive_together_are_read_in_order() -> None:
    async def both() -> list[object]:
        async with _wire() as (wire_end, child_write, _):
            log = {"t": "log", "level": "info", "event": "x", "fields": {}}
            os.write(child_write, wire.encode({"t": "hello", "v": 1, "pid": 1}) + wire.encode(log))
            os.close(child_write)
            return [await wire_end.next(5), await wire_end.next(5), await wire_end.next(5)]

    first, second, end = asyncio.run(both())
    assert first["pid"] == 1 and second["t"] == "log" and end is None  # type: ignore[index]


def test_async_reader_limits() -> None:
    good = wire.encode({"t": "hello", "v": 1, "pid": 7})
    assert asyncio.run(_read(good)) == {"t": "hello", "v": 1, "pid": 7}
    assert asyncio.run(_read(b"")) is None, "clean EOF between frames"
    with pytest.raises(ProtocolError, match="exceeds the 1024-byte limit"):
        asyncio.run(_read(wire.HEADER.pack(1 << 30) + b"x"))
    with pytest.raises(ProtocolError, match="ended mid-frame"):
        asyncio.run(_read(good[:-3]))
    with pytest.raises(ProtocolError, match="did not arrive whole within 0.3s"):
        asyncio.run(_read(good[:-3], eof=False))


def test_good_frames_before_a_bad_one_are_still_delivered() -> None:
    async def main() -> object:
        async with _wire() as (wire_end, child_write, _):
            os.write(child_write, wire.encode({"t": "hello", "v": 1, "pid": 1}) + wire.encode({"t": "nope"}))
            got = await wire_end.next(5)
            with pytest.raises(ProtocolError, match="unknown message type 'nope'"):
                await wire_end.next(5)
            return got

    assert asyncio.run(main()) == {"t": "hello", "v": 1, "pid": 1}


def test_no_frame_in_time_is_a_timeout_not_a_protocol_error() -> None:
    async def main() -> None:
        async with _wire() as (wire_end, _, _):
            with pytest.raises(TimeoutError):
                await wire_end.next(0.05)

    asyncio.run(main())


def test_a_flooding_child_is_read_with_bounded_memory() -> None:
    """Tens of thousands of frames sent without waiting: reading pauses while the loop is
    behind (after at most one read beyond the limit), and every frame still arrives, in order."""
    count = 30_000

    async def main() -> list[int]:
        async with _wire() as (wire_end, child_write, _):
            frames = b"".join(wire.encode({"t": "hello", "v": 1, "pid": n}) for n in range(count))
            writer = threading.Thread(target=lambda: (os.write(child_write, frames), os.close(child_write)))
            writer.start()
            await asyncio.sleep(0.3)
            assert len(wire_end._queue) < count // 2, "reading should pause while frames pile up"
            got = []
            while (message := await wire_end.next(5)) is not None:
                got.append(message["pid"])
            writer.join()
            return got

    assert asyncio.run(main()) == list(range(count))


def test_a_frame_cut_by_our_own_pause_gets_its_whole_deadline_once_reading_resumes() -> None:
    """The daemon's loop being behind is not the child's delay: a frame that was partly read
    when reading paused may take the frame deadline again from the moment reading resumes
    (it used to count from the pause, so a loop busy for longer than the deadline ended a
    healthy child with 'frame did not arrive whole')."""

    async def main() -> list[int]:
        async with _wire() as (wire_end, child_write, _):
            frames = b"".join(wire.encode({"t": "hello", "v": 1, "pid": n}) for n in range(1000))
            last = wire.encode({"t": "hello", "v": 1, "pid": 1000})
            os.write(child_write, frames + last[:5])  # enough to pause reading, and a frame cut short
            await asyncio.sleep(0.8)  # the loop is busy for longer than the 0.3 s frame deadline
            got = []
            while len(got) < 1000:
                message = await wire_end.next(5)
                assert message is not None
                got.append(message["pid"])
            await asyncio.sleep(0.1)  # reading has resumed; the child now finishes its frame
            os.write(child_write, last[5:])
            os.close(child_write)
            while (message := await wire_end.next(5)) is not None:
                got.append(message["pid"])
            return got

    assert asyncio.run(main()) == list(range(1001))


def test_replies_bigger_than_the_pipe_are_finished_as_the_child_reads() -> None:
    value = "x" * 300_000  # several times a pipe's capacity

    async def main() -> dict[str, object]:
        async with _wire() as (wire_end, _, child_read):
            channel = wire.BlockingChannel(child_read, -1)
            reading = asyncio.get_running_loop().run_in_executor(None, channel.recv)
            wire_end.send({"t": "result", "seq": 1, "ok": True, "replayed": False, "value": value})
            got = await asyncio.wait_for(reading, 5)
            for _ in range(100):  # the last write's bookkeeping may land just after the child has read it
                if wire_end.pending == 0:
                    break
                await asyncio.sleep(0.01)
            assert wire_end.pending == 0
            return got

    assert asyncio.run(main())["value"] == value


def test_a_child_that_stops_reading_replies_is_a_protocol_error() -> None:
    async def main() -> None:
        async with _wire() as (wire_end, _, _):
            wire_end.send({"t": "abort", "reason": "x" * 300_000})
            assert wire_end.pending > 0
            with pytest.raises(ProtocolError, match="stopped reading replies for 0.3s"):
                await wire_end.next(5)

    asyncio.run(main())


def test_replies_after_close_or_after_the_child_went_are_dropped() -> None:
    async def main() -> None:
        async with _wire() as (wire_end, _, child_read):
            os.close(child_read)
            wire_end.send({"t": "abort", "reason": "gone"})  # EPIPE: dropped, no exception
            assert wire_end.pending == 0

    asyncio.run(main())


def test_fingerprints_ignore_map_order_but_not_values() -> None:
    a = wire.fingerprint("tool", "x", {"a": 1, "b": {"c": 2, "d": 3}})
    assert a == wire.fingerprint("tool", "x", {"b": {"d": 3, "c": 2}, "a": 1})
    assert a != wire.fingerprint("tool", "x", {"a": 2, "b": {"c": 2, "d": 3}})
    assert a != wire.fingerprint("tool", "y", {"a": 1, "b": {"c": 2, "d": 3}})
    key = wire.idempotency_key("run", 4, a)
    assert key == wire.idempotency_key("run", 4, a) != wire.idempotency_key("run", 5, a)
    assert (
        key != wire.idempotency_key("other", 4, a) != wire.idempotency_key("run", 4, wire.fingerprint("tool", "y", {}))
    )
