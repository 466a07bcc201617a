"""What reading a long conversation's journal costs each reader, against what it stores.

A door agent (``benchmarks/agents/history_agent.py``) makes ``--requests`` requests, the
first carrying ``--history`` messages and each later one the one before and a message more,
under a foreground ``corral run`` against ``benchmarks/model_server.py``: stored, each step
holds what it added (core/store/conversations.py). Then each reader, in a process of its
own: ``corral trace RUN --json``, ``corral trace RUN``, ``corral trace RUN --step N --json``
(one step whole), ``corral diff RUN RUN``, and the console's run page served by a real
``corral up`` (the daemon's peak RSS before and after the page). Printed: bytes out,
seconds, peak RSS.

    python -m benchmarks.journal_readers                          # 100 requests of 20,000 messages
    python -m benchmarks.journal_readers --history 2000 --requests 40
    python -m benchmarks.journal_readers --quick                  # 10 requests of 200: a smoke run
    python -m benchmarks.journal_readers --root DIR --run ID      # read a journal written before
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import tempfile
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import httpx

from benchmarks import journal_growth, model_server
from benchmarks.journal_growth import environ


def write(root: Path, *, history: int, requests: int) -> str:
    """The journal, through a real run; returns the run's id."""
    with model_server.serving() as port:
        config = journal_growth.config(root, port, "history_agent:run")
        run = journal_growth.run_talker(root, config, {"history": history, "requests": requests})
    return str(run["id"])


def _timed(argv: list[str], env: dict[str, str], cwd: Path) -> dict[str, Any]:
    """``argv``'s bytes out, wall seconds and peak RSS (GNU time's %M, in kB)."""
    with tempfile.NamedTemporaryFile("w+") as times:
        began = time.monotonic()
        done = subprocess.run(
            ["/usr/bin/time", "-o", times.name, "-f", "%M", *argv], env=env, cwd=cwd, capture_output=True, timeout=3600
        )
        took = time.monotonic() - began
        rss_kb = int(Path(times.name).read_text().split()[-1])
    return {"bytes": len(done.stdout), "seconds": took, "rss_mb": rss_kb / 1024, "exit": done.returncode}


def _peak_mb(pid: int) -> float:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmHWM:"):
            return int(line.split()[1]) / 1024
    return 0.0


def page(root: Path, config: Path, run_id: str) -> dict[str, Any]:
    """The console's run page, served by ``corral up``: bytes, seconds, the daemon's peak RSS
    before and after."""
    served = root / "console.toml"
    served.write_text(config.read_text().replace("enabled = false", 'listen = "127.0.0.1:0"'))
    env = environ(root, served)
    daemon = subprocess.Popen(
        [sys.executable, "-m", "corral", "up"], env=env, cwd=root, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL
    )
    try:
        found: dict[str, Any] = {}
        for _ in range(300):
            if daemon.poll() is not None:
                raise SystemExit(f"corral up exited ({daemon.returncode}) before its console answered")
            asked = subprocess.run(
                [sys.executable, "-m", "corral", "console", "--json"], env=env, cwd=root, capture_output=True, text=True
            )
            if asked.returncode == 0:
                found = json.loads(asked.stdout)
                break
            time.sleep(0.2)
        before = _peak_mb(daemon.pid)
        with httpx.Client(base_url=found["url"], timeout=600) as http:
            http.get(found["login"])
            began = time.monotonic()
            shown = http.get(f"/runs/{run_id}")
            took = time.monotonic() - began
        return {"bytes": len(shown.content), "seconds": took, "rss_mb": _peak_mb(daemon.pid), "rss_before_mb": before}
    finally:
        daemon.terminate()
        daemon.wait(30)


def measure(root: Path, run_id: str, *, journal_bytes: int) -> dict[str, Any]:
    """Every reader of ``run_id``'s journal in ``root/home``."""
    config = root / "corral.toml"
    env = environ(root, config)
    corral = [sys.executable, "-m", "corral"]
    steps = json.loads(subprocess.run([*corral, "runs", "--json"], env=env, capture_output=True).stdout)
    last = next(run for run in steps if run["id"] == run_id)["steps"]
    readers = {
        "trace --json": [*corral, "trace", run_id, "--json"],
        "trace": [*corral, "trace", run_id],
        f"trace --step {last} --json": [*corral, "trace", run_id, "--step", str(last), "--json"],
        "diff RUN RUN": [*corral, "diff", run_id, run_id],
    }
    found = {name: _timed(argv, env, root) for name, argv in readers.items()}
    found["console /runs/RUN"] = page(root, config, run_id)
    return {"run": run_id, "journal_bytes": journal_bytes, "readers": found}


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--history", type=int, default=20_000, help="messages in the first request")
    parser.add_argument("--requests", type=int, default=100)
    parser.add_argument("--root", help="write (or, with --run, read) the corral home and config here")
    parser.add_argument("--run", help="measure this run in --root's store, written before")
    parser.add_argument("--quick", action="store_true", help="10 requests of 200 messages: a smoke run")
    parser.add_argument("--tmpdir", help="where the temporary root goes (default: the system temp dir)")
    parser.add_argument("--json", help="also write the results to this file")
    args = parser.parse_args(argv)
    if args.quick:
        args.history, args.requests = 200, 10
    if args.run and not args.root:
        parser.error("--run reads a journal written before: give its --root too")
    with tempfile.TemporaryDirectory(dir=args.tmpdir, prefix="corral-readers-bench-") as tmp:
        root = Path(args.root or tmp)
        root.mkdir(parents=True, exist_ok=True)
        run_id = args.run or write(root, history=args.history, requests=args.requests)
        env = environ(root, root / "corral.toml")
        record = json.loads(
            subprocess.run([sys.executable, "-m", "corral", "runs", "--json"], env=env, capture_output=True).stdout
        )
        stored = next(run for run in record if run["id"] == run_id)["journal_bytes"]
        results = measure(root, run_id, journal_bytes=stored)
    print(f"run {run_id}: journal {stored:,} bytes stored")
    print(f"{'reader':<28}{'bytes out':>14}{'seconds':>10}{'peak RSS MB':>13}")
    for name, got in results["readers"].items():
        print(f"{name:<28}{got['bytes']:>14,}{got['seconds']:>10.2f}{got['rss_mb']:>13.0f}")
    print(f"(the daemon's peak RSS before the page: {results['readers']['console /runs/RUN']['rss_before_mb']:.0f} MB)")
    if args.json:
        Path(args.json).write_text(json.dumps(results, indent=2))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
