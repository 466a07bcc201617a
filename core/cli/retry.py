"""``corral retry RUN``: queue again a run that failed for a passing reason.

A run whose model endpoint stayed down past every retry, or whose budget was spent,
fails "resumable", as does one that stopped on a model that was not configured: its
journal keeps every finished step. Once the cause is gone (the endpoint is back, the
budget raised or renewed, the model configured), ``corral retry`` queues it; finished
steps replay from the journal free, and the call it stopped at is made now.
"""

from __future__ import annotations

import argparse
from typing import Any

from corral.cli import ids
from corral.cli.common import (
    EXIT_NOT_FOUND,
    EXIT_OK,
    Exit,
    act,
    described,
    foreground,
    load,
    print_json,
    report_run,
)


def add_commands(sub: argparse._SubParsersAction[argparse.ArgumentParser], common: argparse.ArgumentParser) -> None:
    retry = sub.add_parser(
        "retry",
        parents=[common],
        help="queue again a run that failed resumable (model down or not configured, budget spent)",
    )
    described(
        retry,
        "Queue again a run that failed for a passing reason (its model endpoint down past every retry, its budget "
        "spent, its model not configured): its finished steps replay free from the journal and the call it stopped "
        "at is made now. Through the daemon, else in the foreground.",
        ["corral retry 01a2b3c4", "corral retry b3c4 --wait"],
    )
    retry.add_argument("run", help="run id (or a unique prefix or suffix of it)")
    retry.add_argument("--wait", action="store_true", help="wait for the run to end; exit 1 if it failed")
    retry.add_argument("--json", action="store_true", help="as JSON, raw values (times in epoch seconds)")
    retry.set_defaults(func=cmd_retry)


def cmd_retry(args: argparse.Namespace) -> int:
    config = load(args)
    run_id = ids.run_id(config, args.run)
    request = {"op": "retry", "run": run_id, "wait": args.wait}
    reply = act(config, request, wait=args.wait)
    if reply is not None:
        if not args.json and not args.wait:
            print(f"run {run_id} queued again; the daemon resumes it from its journal")
            return EXIT_OK
        if args.json and not args.wait:
            print_json(reply["run"])
            return EXIT_OK
        return report_run(reply["run"], args, waited=True)

    async def start(engine: Any) -> str:
        try:
            return str((await engine.retry(run_id))["id"])
        except (KeyError, ValueError) as exc:
            raise Exit(EXIT_NOT_FOUND, f"corral: {str(exc).strip(chr(39))}") from None

    return report_run(foreground(config, start), args, waited=True)
