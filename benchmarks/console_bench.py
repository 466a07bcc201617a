"""The console's cost to the daemon, and the runs page on a large store.

``python -m benchmarks.console_bench [--quick]``

1. Console on against off, in the same run: corral's single-agent steps and its 8-agent
   steps with the console serving a logged-in viewer that follows the measured run's page
   live (``benchmarks/console_viewer.py``, a process of its own making the requests
   ``console.js`` makes: the page, ``/live?run=ID``, and the page's fragment a second after
   a notice), and with no console at all. Rounds alternate (off, on, on, off, ...),
   each in a fresh corral home and host, as the telemetry benchmark does.
2. The runs page (``GET /runs``, with its filters and a deep page) on a store holding
   100,000 runs of 10 agents, p50 and p99 over repeated requests from another process's
   distance (a client thread; the console serves on its own event loop).
"""

from __future__ import annotations

import argparse
import asyncio
import json
import socket
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import httpx

if __package__ in (None, ""):  # run as a file: make the repository root importable
    sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from benchmarks import corral_bench  # noqa: E402
from benchmarks.stats import Row, percentile, summary, table  # noqa: E402
from corral.config import load_config  # noqa: E402
from corral.config.console import ConsoleConfig  # noqa: E402
from corral.console import Console  # noqa: E402
from corral.console.app import FRAGMENT  # noqa: E402
from corral.console.guard import COOKIE  # noqa: E402
from corral.console.reads import StoreView  # noqa: E402
from corral.daemon.host import host  # noqa: E402
from corral.observe.logs import log_path  # noqa: E402
from corral.store import Records, Store, Writer  # noqa: E402

REPO = Path(__file__).resolve().parent.parent
WARMUP = 20
LISTEN = ConsoleConfig(listen="127.0.0.1:0")


async def _refuse(request: dict[str, Any], reply: Callable[[dict[str, Any]], Awaitable[None]]) -> None:
    await reply({"ok": False, "error": "the benchmark's console takes no actions"})


class _Viewer:
    """The viewer process, driven from the event loop without blocking it (the console it
    talks to serves on that same loop)."""

    def __init__(self, login: str) -> None:
        self.process = subprocess.Popen(
            [sys.executable, "-m", "benchmarks.console_viewer"],
            cwd=REPO,
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            text=True,
        )
        self._login = login

    async def _say(self, line: str) -> str:
        assert self.process.stdin is not None and self.process.stdout is not None
        self.process.stdin.write(line + "\n")
        self.process.stdin.flush()
        return await asyncio.get_running_loop().run_in_executor(None, self.process.stdout.readline)

    async def start(self) -> None:
        await self._say(self._login)

    async def watch(self, runs: list[str]) -> None:
        await self._say(f"RUN {runs[0]}")

    async def stop(self) -> tuple[int, int, float]:
        pages, notices, cpu = (await self._say("STOP")).split()
        await asyncio.get_running_loop().run_in_executor(None, self.process.wait, 10)
        return int(pages), int(notices), float(cpu)


def _round(root: Path, on: bool, steps: int, concurrent_steps: int, agents: int) -> dict[str, Any]:
    """One single-agent and one ``agents``-agent measurement in a fresh host, console ``on`` or not."""
    config = load_config(corral_bench.write_config(root, agents), environ={})
    with host(config, echo=None) as composed:
        engine = composed.engine
        processes = corral_bench.TimedProcessControl()
        engine.processes = processes
        protections = processes.prepare()

        async def go() -> dict[str, Any]:
            viewer = None
            console = None
            if on:
                console = Console(
                    LISTEN,
                    lambda: StoreView(engine.store, engine.records, config),
                    _refuse,
                    protections,
                    composed.logs.logger(None),
                )
                assert await console.start(), "the benchmark's console could not listen"
                composed.events.subscribe("console", console.hub.observe)
                viewer = _Viewer(console.login_url())
                await viewer.start()
            watch = viewer.watch if viewer is not None else None
            out = {
                "single": await corral_bench.measure_steps(engine, 1, steps, watch),
                "multi": await corral_bench.measure_steps(engine, agents, concurrent_steps, watch),
            }
            if viewer is not None and console is not None:
                out["pages"], out["notices"], out["viewer_cpu"] = await viewer.stop()
                await console.stop()
            return out

        return asyncio.run(go())


def console_on_off(root: Path, *, steps: int, concurrent_steps: int, agents: int, rounds: int) -> dict[str, Any]:
    """``rounds`` rounds each way, alternating; pooled per side."""
    measured: dict[str, list[dict[str, Any]]] = {"off": [], "on": []}
    for i in range(rounds):
        for mode in ("off", "on") if i % 2 == 0 else ("on", "off"):
            measured[mode].append(_round(root / f"{mode}-{i}", mode == "on", steps, concurrent_steps, agents))
    out: dict[str, Any] = {}
    for mode, runs in measured.items():
        out[mode] = {
            "single": corral_bench.pool([r["single"] for r in runs]),
            "multi": corral_bench.pool([r["multi"] for r in runs]),
            "single_p50_rounds": [summary(r["single"]["lat"], WARMUP)["p50_ms"] for r in runs],
            "multi_rate_rounds": [r["multi"]["steps_per_s"] for r in runs],
            "pages": sum(r.get("pages", 0) for r in runs),
            "notices": sum(r.get("notices", 0) for r in runs),
            "viewer_cpu_s": sum(r.get("viewer_cpu", 0.0) for r in runs),
        }
    return out


# ---------------------------------------------------------------------- the runs page


STATES = ("succeeded",) * 90 + ("failed",) * 8 + ("cancelled",) * 2
PROTECTIONS = ["bwrap", "caps:none", "landlock:fs", "ns:net", "ns:pid", "rlimit:cpu_seconds", "seccomp", "session"]


def fill(store: Store, runs: int, agents: int) -> list[str]:
    """``runs`` finished runs of ``agents`` agents, one a second up to now, written as the
    daemon writes them (``Records.put_run``: the run, the agent index); their ids."""
    writer = Writer(store)
    records = Records(store.dbs)
    now = time.time()
    ids: list[str] = []
    try:
        batch: list[dict[str, Any]] = []
        for i in range(runs):
            created = now - (runs - i)
            run_id = f"{int(created * 1000):012x}{i:08x}"
            ids.append(run_id)
            batch.append(
                {
                    "id": run_id,
                    "agent": f"bench-{i % agents + 1}",
                    "state": STATES[i % len(STATES)],
                    "trigger": "interval" if i % 3 else "cron",
                    "attempt": 1,
                    "created": created,
                    "started": created + 0.01,
                    "ended": created + 0.5,
                    "input": {"topic": "durable agents", "n": i},
                    "result": {"count": i, "lines": i % 50},
                    "applied": PROTECTIONS,
                }
            )
            if len(batch) == 5000 or i == runs - 1:
                writer.call(lambda txn, batch=batch: [records.put_run(txn, run) for run in batch])
                batch = []
    finally:
        writer.close()
    return ids


LONG_STEPS = 1000
LOG_MB = 10
"""The long run followed live: its steps, and its agent's log (a whole file before rotation)."""


def fill_long_run(store: Store, records: Records, log_dir: Path, last: str) -> str:
    """A running run of :data:`LONG_STEPS` tool steps, newest in the store, whose agent's log
    holds :data:`LOG_MB` MB of earlier runs' lines and then one line per step of its own; its id."""
    run_id = f"{last[:12]}{int(last[12:], 16) + 1:08x}"
    now = time.time()
    writer = Writer(store)
    try:
        run = {"id": run_id, "agent": "bench-1", "state": "running", "trigger": "interval", "attempt": 1}
        run.update(created=now - 60, started=now - 59, input={"steps": LONG_STEPS}, applied=PROTECTIONS)
        steps = [
            {"seq": seq, "attempt": 1, "kind": "tool", "name": "count", "status": "done", "ok": True}
            | {
                "args": {"n": seq},
                "value": {"count": seq},
                "started": now - 59 + seq / 100,
                "ended": now - 59 + seq / 99,
            }
            for seq in range(1, LONG_STEPS + 1)
        ]
        writer.call(lambda txn: [records.put_run(txn, run), *(records.put_step(txn, run_id, s) for s in steps)])
    finally:
        writer.close()
    line = '{{"timestamp": "2026-12-06T10:00:00.000Z", "level": "info", "event": "tool done", "agent": "bench-1", '
    line += '"run_id": "{run}", "trace_id": "5f2c0d7a9b3e4c1d8a6f0e2b7c9d1a3e", '
    line += '"seq": {seq}, "tool": "count", "took_ms": 0.4}}\n'
    log_dir.mkdir(parents=True, exist_ok=True)
    with open(log_path(log_dir, "bench-1"), "w") as log:
        written, n = 0, 0
        while written < LOG_MB * 2**20:
            n += 1
            written += log.write(line.format(run=f"{n // 1000:020x}", seq=n % 1000))
        for seq in range(1, LONG_STEPS + 1):
            log.write(line.format(run=run_id, seq=seq))
    return run_id


PAGES = {
    "newest": "/runs",
    "one agent": "/runs?agent=bench-3",
    "state failed": "/runs?state=failed",
    "since 1h": "/runs?since=1h",
    "deep page": "/runs?before={middle}",
    "rare state": "/runs?state=queued",
}
"""The requests timed: the first page, each filter, and a page from the middle of the store.
``rare state`` matches nothing: the walk stops after 5,000 runs and offers the next page."""


def runs_page(root: Path, *, runs: int, agents: int, requests: int) -> dict[str, Any]:
    """p50/p99 of each runs page on a store of ``runs`` runs, through the real console."""
    config = load_config(corral_bench.write_config(root, agents), environ={})
    store = Store.open(root / "store", map_mb=256)
    try:
        began = time.monotonic()
        ids = fill(store, runs, agents)
        filled = time.monotonic() - began
        records = Records(store.dbs)
        long_run = fill_long_run(store, records, config.log_dir, ids[-1])
        ready = threading.Event()
        loop = asyncio.new_event_loop()
        box: dict[str, Any] = {}

        async def serve() -> None:
            console = Console(LISTEN, lambda: StoreView(store, records, config), _refuse, [], _Quiet())
            assert await console.start()
            box["console"] = console
            ready.set()
            while not box.get("stop"):
                await asyncio.sleep(0.05)
            await console.stop()

        thread = threading.Thread(target=loop.run_until_complete, args=(serve(),), daemon=True)
        thread.start()
        ready.wait(30)
        console: Console = box["console"]
        timings: dict[str, dict[str, float]] = {}
        with httpx.Client(base_url=console.url, timeout=30) as http:
            http.get(console.login_url())
            cookie = str(http.cookies.get(COOKIE))
        with _Connection(console.url, cookie) as browser:
            for name, path in PAGES.items():
                url = path.format(middle=ids[len(ids) // 2])
                browser.get(url)  # warm: first read of those pages from disk
                took = []
                for _ in range(requests):
                    t0 = time.perf_counter()
                    body = browser.get(url)
                    took.append(time.perf_counter() - t0)
                timings[name] = {
                    "p50_ms": percentile(took, 50) * 1000,
                    "p99_ms": percentile(took, 99) * 1000,
                    "bytes": len(body),
                }
            browser.get(f"/runs/{long_run}", fragment=True)
            took = []
            for _ in range(requests):
                t0 = time.perf_counter()
                browser.get(f"/runs/{long_run}", fragment=True)
                took.append(time.perf_counter() - t0)
            refetch = {"p50_ms": percentile(took, 50) * 1000, "p99_ms": percentile(took, 99) * 1000}
        box["stop"] = True
        thread.join(10)
        return {
            "runs": runs,
            "agents": agents,
            "fill_s": filled,
            "store_mb": store.size()["used_bytes"] / 2**20,
            "pages": timings,
            "run_refetch": refetch,
        }
    finally:
        store.close()


class _Connection:
    """One kept-alive connection sending each request in one write with ``TCP_NODELAY``, as
    a browser does. (httpx and curl on loopback wait about 40 ms per request here, before
    the console answers in well under one: an interplay of their writes with delayed
    acknowledgements, not the server's time, so they would measure the wrong thing.)"""

    def __init__(self, url: str, cookie: str) -> None:
        parts = urlsplit(url)
        self.host = parts.netloc
        self.cookie = cookie
        self.sock = socket.create_connection((parts.hostname, parts.port))
        self.sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        self.buffer = b""

    def __enter__(self) -> _Connection:
        return self

    def __exit__(self, *exc: object) -> None:
        self.sock.close()

    def get(self, path: str, fragment: bool = False) -> bytes:
        """The body of ``GET path`` (the live script's refetch with ``fragment``); raises on
        any status but 200."""
        live = f"{FRAGMENT}: 1\r\n" if fragment else ""
        request = f"GET {path} HTTP/1.1\r\nHost: {self.host}\r\nCookie: {COOKIE}={self.cookie}\r\n{live}\r\n"
        self.sock.sendall(request.encode())
        while b"\r\n\r\n" not in self.buffer:
            self._read()
        head, self.buffer = self.buffer.split(b"\r\n\r\n", 1)
        lines = head.decode("latin-1").split("\r\n")
        if lines[0].split()[1] != "200":
            raise RuntimeError(f"GET {path}: {lines[0]}")
        length = next(int(line.split(":", 1)[1]) for line in lines if line.lower().startswith("content-length:"))
        while len(self.buffer) < length:
            self._read()
        body, self.buffer = self.buffer[:length], self.buffer[length:]
        return body

    def _read(self) -> None:
        data = self.sock.recv(1 << 16)
        if not data:
            raise RuntimeError("the console closed the connection")
        self.buffer += data


class _Quiet:
    """A logger for the console that says nothing (the benchmark prints its own table)."""

    def __getattr__(self, name: str) -> Callable[..., None]:
        return lambda *args, **kwargs: None


# ---------------------------------------------------------------------- the command


def rows(onoff: dict[str, Any], page: dict[str, Any]) -> list[Row]:
    off, on = onoff["off"], onoff["on"]
    off_p50 = sorted(off["single_p50_rounds"])[len(off["single_p50_rounds"]) // 2]
    on_p50 = sorted(on["single_p50_rounds"])[len(on["single_p50_rounds"]) // 2]
    out = [
        Row("step p50, console open", on_p50, off_p50, "console off", "<= 1.05x", on_p50 <= 1.05 * off_p50, "ms"),
        Row(
            f"{on['multi']['agents']}-agent steps/s, console open",
            on["multi"]["steps_per_s"],
            off["multi"]["steps_per_s"],
            "console off",
            ">= 0.95x",
            on["multi"]["steps_per_s"] >= 0.95 * off["multi"]["steps_per_s"],
            "/s",
        ),
        Row(
            "daemon CPU per step, console open",
            1e6 * on["single"]["daemon_cpu_s"] / on["single"]["steps"],
            1e6 * off["single"]["daemon_cpu_s"] / off["single"]["steps"],
            "console off",
            unit="us",
        ),
        Row(
            f"daemon CPU per step, {on['multi']['agents']} agents, console open",
            1e6 * on["multi"]["daemon_cpu_s"] / (on["multi"]["steps"] * on["multi"]["agents"]),
            1e6 * off["multi"]["daemon_cpu_s"] / (off["multi"]["steps"] * off["multi"]["agents"]),
            "console off",
            unit="us",
        ),
    ]
    refetch = page["run_refetch"]
    out.append(
        Row(f"run page refetch p50 ({LONG_STEPS:,} steps, {LOG_MB} MB log)", refetch["p50_ms"], None, "", unit="ms")
    )
    for name, t in page["pages"].items():
        target = "< 200 ms"
        out.append(
            Row(
                f"runs page p50, {name} ({page['runs']:,} runs)", t["p50_ms"], None, "", target, t["p50_ms"] < 200, "ms"
            )
        )
    return out


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="a smoke run: small sizes, numbers mean little")
    parser.add_argument("--rounds", type=int, default=4, help="rounds each way (default 4)")
    parser.add_argument("--runs", type=int, default=100_000, help="runs in the runs page's store (default 100,000)")
    parser.add_argument("--json", help="also write the raw results to this file")
    parser.add_argument("--tmpdir", help="where the stores go (default: the system temp dir)")
    args = parser.parse_args(argv)
    steps, concurrent, rounds, runs, requests = (1000, 400, args.rounds, args.runs, 40)
    if args.quick:
        steps, concurrent, rounds, runs, requests = (100, 40, 2, 5000, 5)
    with tempfile.TemporaryDirectory(dir=args.tmpdir, prefix="corral-console-bench-") as tmp:
        print(
            f"console off/on: {rounds} rounds each way of {steps} steps x 1 agent and {concurrent} x 8 ...", flush=True
        )
        onoff = console_on_off(Path(tmp) / "onoff", steps=steps, concurrent_steps=concurrent, agents=8, rounds=rounds)
        print(f"runs page: a store of {runs:,} runs, {requests} requests a page ...", flush=True)
        page = runs_page(Path(tmp) / "runs", runs=runs, agents=10, requests=requests)
    print(table(rows(onoff, page)))
    on = onoff["on"]
    print(
        f"\nthe viewer fetched {on['pages']} pages and heard {on['notices']} notices, using "
        f"{on['viewer_cpu_s']:.2f} CPU-seconds; step p50 per round (ms): "
        f"off {[round(v, 3) for v in onoff['off']['single_p50_rounds']]}, "
        f"on {[round(v, 3) for v in on['single_p50_rounds']]}; 8-agent steps/s per round: "
        f"off {[round(v) for v in onoff['off']['multi_rate_rounds']]}, on {[round(v) for v in on['multi_rate_rounds']]}"
    )
    for mode in ("off", "on"):
        multi = onoff[mode]["multi"]
        per_step = {
            name: round(1e6 * used / (multi["steps"] * multi["agents"]))
            for name, used in sorted(multi["daemon_threads_cpu_s"].items(), key=lambda item: -item[1])
        }
        print(f"daemon CPU per step by thread, 8 agents, console {mode} (us): {per_step}")
    print(f"runs store: {page['runs']:,} runs written in {page['fill_s']:.1f} s, {page['store_mb']:.0f} MiB used")
    if args.json:
        Path(args.json).write_text(json.dumps({"console": onoff, "runs_page": page}, indent=2, default=str))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
