"""Baseline "bare": a msgpack round trip over a pipe to a child plus one synced LMDB commit.

Per step the child sends a request and waits; this process puts one record (about the
size of a corral journal entry) and commits with ``sync=True`` (an fsync per commit,
corral's setting), then replies. That is the minimum any design with a separate agent
process and a durable journal on this disk pays for one step. The same child is also
the baseline for spawn-to-first-frame time and for an idle process's memory.
"""

from __future__ import annotations

import os
import selectors
import struct
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import lmdb
import msgpack
import psutil

HEADER = struct.Struct(">I")
CHILD = Path(__file__).with_name("bare_child.py")


class _Child:
    """One bare child with its two pipes."""

    def __init__(self, mode: str, steps: int) -> None:
        child_read, parent_write = os.pipe()
        parent_read, child_write = os.pipe()
        self.spawned = time.monotonic()
        self.process = subprocess.Popen(
            [sys.executable, "-I", "-u", str(CHILD), str(child_read), str(child_write), mode, str(steps)],
            stdin=subprocess.DEVNULL,
            pass_fds=(child_read, child_write),
            close_fds=True,
            start_new_session=True,
        )
        os.close(child_read)
        os.close(child_write)
        self.read_fd, self.write_fd = parent_read, parent_write

    def send(self, message: dict[str, Any]) -> None:
        body = msgpack.packb(message, use_bin_type=True)
        data = memoryview(HEADER.pack(len(body)) + body)
        while data:
            data = data[os.write(self.write_fd, data) :]

    def _read_exactly(self, n: int) -> bytes:
        chunks = bytearray()
        while len(chunks) < n:
            chunk = os.read(self.read_fd, n - len(chunks))
            if not chunk:
                raise RuntimeError("the bare child closed its pipe early")
            chunks += chunk
        return bytes(chunks)

    def recv(self) -> dict[str, Any]:
        (length,) = HEADER.unpack(self._read_exactly(HEADER.size))
        message: dict[str, Any] = msgpack.unpackb(self._read_exactly(length), raw=False)
        return message

    def close(self) -> None:
        os.close(self.write_fd)
        os.close(self.read_fd)
        try:
            self.process.wait(10)
        except subprocess.TimeoutExpired:
            self.process.kill()
            self.process.wait()


def _entry(seq: int) -> bytes:
    """A record shaped like a corral journal entry."""
    return msgpack.packb(
        {
            "seq": seq,
            "kind": "tool",
            "name": "noop",
            "args": {},
            "fp": "f" * 32,
            "status": "started",
            "attempt": 1,
            "started": time.time(),
            "executions": 1,
            "key": "k" * 32,
        },
        use_bin_type=True,
    )


def durable_steps(workdir: Path, steps: int, *, commit: bool = True) -> dict[str, Any]:
    """Time ``steps`` round trips seen from the child; with ``commit``, one synced commit each."""
    workdir.mkdir(parents=True, exist_ok=True)
    env = lmdb.open(str(workdir / "bare-lmdb"), map_size=256 * 2**20, sync=True, metasync=True, max_dbs=2)
    db = env.open_db(b"journal")
    child = _Child("steps", steps)
    commits: list[float] = []
    try:
        child.recv()  # hello
        cpu = time.process_time()
        for _ in range(steps):
            request = child.recv()
            if commit:
                t0 = time.perf_counter()
                with env.begin(write=True) as txn:
                    txn.put(b"run-1/%012d" % request["seq"], _entry(request["seq"]), db=db)
                commits.append(time.perf_counter() - t0)
            child.send({"t": "exec", "seq": request["seq"], "key": "k" * 32})
        cpu = time.process_time() - cpu
        finish = child.recv()
    finally:
        child.close()
        flags = env.flags()
        env.close()
    return {
        "lat": finish["lat"],
        "commit_lat": commits,
        "lmdb_flags": flags,
        "parent_cpu_s": cpu,
        "child_cpu_s": finish["cpu"],
    }


def group_steps(workdir: Path, children: int, steps: int) -> dict[str, Any]:
    """Group commit at its barest: ``children`` bare children step at once; each round this
    process reads every request that is waiting, puts one record per request (under the
    child's own key prefix, as corral's runs have theirs) in one synced commit, then
    replies to them all. Its throughput with many children over one child is the most
    group commit can give on this machine, whatever does the deciding."""
    workdir.mkdir(parents=True, exist_ok=True)
    env = lmdb.open(str(workdir / "bare-group-lmdb"), map_size=256 * 2**20, sync=True, metasync=True, max_dbs=2)
    db = env.open_db(b"journal")
    kids = [_Child("steps", steps) for _ in range(children)]
    selector = selectors.DefaultSelector()
    commits = 0
    try:
        for number, kid in enumerate(kids):
            kid.recv()  # hello; its first request follows at once
            selector.register(kid.read_fd, selectors.EVENT_READ, number)
        left = children * steps
        began = time.perf_counter()
        while left:
            waiting = [(key.data, kids[key.data].recv()) for key, _ in selector.select()]
            with env.begin(write=True) as txn:
                for number, request in waiting:
                    txn.put(b"run-%d/%012d" % (number, request["seq"]), _entry(request["seq"]), db=db)
            commits += 1
            for number, request in waiting:
                kids[number].send({"t": "exec", "seq": request["seq"], "key": "k" * 32})
                left -= 1
                if request["seq"] == steps:
                    selector.unregister(kids[number].read_fd)
        window = time.perf_counter() - began
        for kid in kids:
            kid.recv()  # its finish frame
    finally:
        selector.close()
        for kid in kids:
            kid.close()
        env.close()
    return {"children": children, "steps": children * steps, "window_s": window, "commits": commits}


def spawn_and_idle(samples: int = 5) -> dict[str, Any]:
    """Spawn-to-hello time of the bare child, and its memory while it blocks on the pipe."""
    child = _Child("idle", 0)
    try:
        hello = child.recv()
        first = hello["first"] - child.spawned
        arrived = time.monotonic() - child.spawned
        time.sleep(0.2)
        proc = psutil.Process(child.process.pid)
        rss, uss = [], []
        for _ in range(samples):
            info = proc.memory_full_info()
            rss.append(info.rss)
            uss.append(info.uss)
            time.sleep(0.05)
    finally:
        child.close()
    return {
        "spawn_to_first_s": first,
        "spawn_to_received_s": arrived,
        "rss": sorted(rss)[len(rss) // 2],
        "uss": sorted(uss)[len(uss) // 2],
    }
