"""The bare baseline's child: the least a process can do to make a step durable elsewhere.

Started as ``python -I bare_child.py READ_FD WRITE_FD MODE STEPS``. It sends a hello
frame, then (mode ``steps``) times STEPS request/reply round trips over the pipe, the
same 4-byte length + msgpack framing corral uses, and sends the latencies back; or
(mode ``idle``) blocks reading until the parent closes the pipe. It imports nothing but
msgpack and the standard library, so it is the floor under corral's child runtime.
"""

import os
import struct
import sys
import time
from typing import Any

import msgpack

HEADER = struct.Struct(">I")


def _send(fd: int, message: dict[str, Any]) -> None:
    body = msgpack.packb(message, use_bin_type=True)
    data = memoryview(HEADER.pack(len(body)) + body)
    while data:
        data = data[os.write(fd, data) :]


def _read_exactly(fd: int, n: int) -> bytes:
    chunks = bytearray()
    while len(chunks) < n:
        chunk = os.read(fd, n - len(chunks))
        if not chunk:
            raise SystemExit(0)
        chunks += chunk
    return bytes(chunks)


def _recv(fd: int) -> Any:
    (length,) = HEADER.unpack(_read_exactly(fd, HEADER.size))
    return msgpack.unpackb(_read_exactly(fd, length), raw=False)


def main() -> None:
    read_fd, write_fd, mode, steps = int(sys.argv[1]), int(sys.argv[2]), sys.argv[3], int(sys.argv[4])
    _send(write_fd, {"t": "hello", "first": time.monotonic(), "pid": os.getpid()})
    if mode == "idle":
        while os.read(read_fd, 4096):
            pass
        return
    latencies: list[float] = []
    cpu = time.process_time()
    for seq in range(1, steps + 1):
        t0 = time.perf_counter()
        _send(write_fd, {"t": "step", "seq": seq, "kind": "tool", "name": "noop", "args": {}})
        _recv(read_fd)
        latencies.append(time.perf_counter() - t0)
    _send(write_fd, {"t": "finish", "lat": latencies, "cpu": time.process_time() - cpu})


if __name__ == "__main__":
    main()
