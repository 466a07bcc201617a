"""What every ``corral`` command shares: exit codes, loading the config, printing JSON,
opening the store read-only.

Exit codes: 0 success; 1 the run failed or ``check`` found problems; 2 usage error;
3 invalid config; 4 daemon or store unavailable (locked, not answering, no store);
5 no such run or agent.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import sys
from typing import Any

from corral import control
from corral.config import CorralConfig, find_config, load_config
from corral.errors import ConfigError, ControlError, DaemonUnavailable, StoreError

EXIT_OK, EXIT_FAILED, EXIT_USAGE, EXIT_CONFIG, EXIT_UNAVAILABLE, EXIT_NOT_FOUND = 0, 1, 2, 3, 4, 5


class Exit(Exception):
    """Leave with a message on stderr and an exit code."""

    def __init__(self, code: int, message: str = "") -> None:
        self.code = code
        super().__init__(message)


def load(args: argparse.Namespace) -> CorralConfig:
    try:
        return load_config(find_config(args.config))
    except ConfigError as exc:
        raise Exit(EXIT_CONFIG, f"corral: invalid config:\n{exc}") from None


def print_json(value: Any) -> None:
    """Readable JSON whose controls a terminal would act on (bidi overrides included) are escaped."""
    from corral.logview import printable_json

    print(printable_json(json.dumps(value, indent=2, default=str, ensure_ascii=False)))


def reader(config: CorralConfig) -> Any:
    from corral.store import Records, Store

    try:
        store = Store.open(config.home / "store", readonly=True)
    except StoreError as exc:
        raise Exit(EXIT_UNAVAILABLE, f"corral: {exc}") from None
    return store, Records(store.dbs)


def send_or_foreground(config: CorralConfig, request: dict[str, Any], wait: bool) -> dict[str, Any] | None:
    """Ask the daemon; None when no daemon holds the home (the caller runs it here)."""
    try:
        return list(control.request(config.socket_path, request, timeout=None if wait else 10))[-1]
    except DaemonUnavailable as exc:
        from corral.store import StoreLock

        holder = StoreLock(config.home).holder()
        if holder is not None:
            raise Exit(EXIT_UNAVAILABLE, f"corral: the daemon (pid {holder}) holds {config.home} but: {exc}") from None
        return None


def act(config: CorralConfig, request: dict[str, Any], wait: bool = False) -> dict[str, Any] | None:
    """:func:`send_or_foreground` for an op on a named run, agent or approval: the daemon
    refuses one that does not exist or cannot be acted on, which exits 5 with its reason."""
    try:
        return send_or_foreground(config, request, wait)
    except ControlError as exc:
        raise Exit(EXIT_NOT_FOUND, f"corral: {exc}") from None


def foreground(config: CorralConfig, start: Any) -> dict[str, Any]:
    """No daemon: drive one run here, through the same engine, then return its end state."""
    from corral.host import host

    with host(config, echo=None) as engine:
        engine.processes.prepare(config.home / "agents")

        async def go() -> dict[str, Any]:
            run_id = await start(engine)
            print(f"run {run_id} running in the foreground (no daemon running)", file=sys.stderr)
            try:
                async with engine.alerting.running(daemon=False):  # its alerts go out before it exits
                    return await engine.execute(run_id)
            finally:
                await engine.close_models()

        return asyncio.run(go())


def report_run(run: dict[str, Any], args: argparse.Namespace, *, waited: bool) -> int:
    from corral.logview import printable, printable_json

    if getattr(args, "json", False):
        print_json(run)
    elif not waited:
        print(f"run {run['id']} queued for {run['agent']}")
    else:
        print(f"run {run['id']} {run['state']}")
        if run["state"] == "succeeded":
            print(printable_json(json.dumps(run.get("result"), default=str, ensure_ascii=False)))
        elif run.get("error"):
            print(f"error: {printable(str(run['error'].get('message')))}", file=sys.stderr)
    if not waited:
        return EXIT_OK
    return EXIT_OK if run["state"] == "succeeded" else EXIT_FAILED
