"""``corral approvals``, ``corral approve ID``, ``corral deny ID --reason TEXT``.

The list is read from the store (works with the daemon down). A decision goes through
the daemon when it runs, which resumes the run at once; with no daemon, the decision is
recorded and the run resumed here in the foreground, through the same engine.
"""

from __future__ import annotations

import argparse
import sys
import time
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
    not_blank,
    print_json,
    reader,
    report_run,
)
from corral.run.approvals import PENDING, ApprovalError, Approvals
from corral.store import Records


def add_commands(sub: argparse._SubParsersAction[argparse.ArgumentParser], common: argparse.ArgumentParser) -> None:
    listing = sub.add_parser("approvals", parents=[common], help="tool calls waiting for a human's approval")
    described(
        listing,
        "Tool calls a guardrail holds for a human's approval, oldest first (--all: decided and expired ones too), "
        "with the tool, its arguments and when the request expires. Works with the daemon down.",
        ["corral approvals", "corral approvals --all --json"],
    )
    listing.add_argument("--all", action="store_true", help="decided and expired requests too")
    listing.add_argument("--json", action="store_true", help="as JSON, raw values (times in epoch seconds)")
    listing.set_defaults(func=cmd_approvals)
    approve = sub.add_parser("approve", parents=[common], help="approve one waiting tool call; its run resumes")
    described(
        approve,
        "Approve one waiting tool call: its run resumes and the call runs once. Through the daemon, else the run "
        "resumes here in the foreground.",
        ["corral approve 2b64", "corral approvals && corral approve 2b641280b3"],
    )
    approve.add_argument("id", help="approval id (or a unique prefix or suffix of it), as `corral approvals` shows")
    approve.add_argument("--json", action="store_true", help="as JSON, raw values (times in epoch seconds)")
    approve.set_defaults(func=cmd_decide, approve=True, reason="")
    deny = sub.add_parser("deny", parents=[common], help="deny one waiting tool call; the agent sees the reason")
    described(
        deny,
        "Deny one waiting tool call: the agent (or its model) gets a tool error with the reason, and its run goes on.",
        ['corral deny 2b64 --reason "not on a Friday"'],
    )
    deny.add_argument("id", help="approval id (or a unique prefix or suffix of it), as `corral approvals` shows")
    deny.add_argument(
        "--reason",
        required=True,
        type=not_blank("--reason", "say why: the agent (or its model) reads it"),
        help="why; the agent (or its model) reads it as the tool's error",
    )
    deny.add_argument("--json", action="store_true", help="as JSON, raw values (times in epoch seconds)")
    deny.set_defaults(func=cmd_decide, approve=False)


def cmd_approvals(args: argparse.Namespace) -> int:
    from corral.cli import views

    config = load(args)
    store, _ = reader(config)
    try:
        with store.read() as txn:
            approvals = Approvals(Records(store.dbs))
            records = approvals.all(txn) if args.all else approvals.pending(txn)
    finally:
        store.close()
    records.sort(key=lambda r: r["created"])
    if args.json:
        print_json(records)
        return EXIT_OK
    if not records:
        print("no approval requests waiting" if not args.all else "no approval requests")
        return EXIT_OK
    now = time.time()
    rows = [
        [
            r["id"],
            r["agent"],
            r["tool"],
            views.short(r["args"], 50),
            r["state"] if r["state"] != PENDING or now < r["expires"] else "expiring",
            views.when(r["created"]),
            views.when(r["expires"]),
            r["run_id"],
        ]
        for r in records
    ]
    print(views.table(rows, ["ID", "AGENT", "TOOL", "ARGS", "STATE", "ASKED", "EXPIRES", "RUN"]))
    if not args.all:
        print("\ncorral approve ID   or   corral deny ID --reason TEXT", file=sys.stderr)
    return EXIT_OK


def cmd_decide(args: argparse.Namespace) -> int:
    config = load(args)
    op = "approve" if args.approve else "deny"
    approval_id = ids.approval_id(config, args.id)
    request = {"op": op, "id": approval_id, "reason": args.reason}
    reply = act(config, request)
    if reply is not None:
        record = reply["approval"]
        if args.json:
            print_json(record)
        else:
            print(f"approval {approval_id} {record['state']}; the daemon resumes run {record['run_id']}")
        return EXIT_OK

    async def start(engine: Any) -> str:
        try:
            record, run = await engine.decide_approval(approval_id, args.approve, args.reason)
        except ApprovalError as exc:
            # with no daemon, nothing has expired a request past its time: do it, and resume its run
            request = await engine.writer.run(lambda txn: engine.approvals.get(txn, approval_id))
            resumed = [r for r in await engine.expire_approvals() if request and r["id"] == request["run_id"]]
            if not resumed:
                raise Exit(EXIT_NOT_FOUND, f"corral: {exc}") from None
            print(f"corral: {exc}; its run resumes with the call denied", file=sys.stderr)
            return str(resumed[0]["id"])
        if run is None:
            raise Exit(EXIT_OK, f"approval {approval_id} {record['state']}; its run is no longer on hold")
        print(f"approval {approval_id} {record['state']}", file=sys.stderr)
        return str(run["id"])

    return report_run(foreground(config, start), args, waited=True)
