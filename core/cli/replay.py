"""``corral replay``, ``corral fork`` and ``corral diff``: past runs as test cases.

``replay`` runs an agent's code again, in its sandbox, against a run's journal: every
request is answered from it and nothing is executed, journaled or sent (docs/durability.md,
"Past runs as test cases"). ``fork`` starts a new run that keeps a run's first
steps and goes live from one of them. ``diff`` compares two runs step by step.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import sys
import time
from typing import Any

from corral.cli import ids
from corral.cli.common import (
    EXIT_FAILED,
    EXIT_NOT_FOUND,
    EXIT_OK,
    EXIT_UNAVAILABLE,
    EXIT_USAGE,
    Exit,
    HelpText,
    act,
    agent_argument,
    duration,
    json_argument,
    load,
    print_json,
    reader,
    send_or_foreground,
)
from corral.config import CorralConfig
from corral.config.units import format_duration
from corral.run.engine import ORIGINAL
from corral.states import RunState


def add_commands(sub: argparse._SubParsersAction[argparse.ArgumentParser], common: argparse.ArgumentParser) -> None:
    replay = sub.add_parser(
        "replay",
        parents=[common],
        help="run an agent's code again against a past run's journal (nothing is executed) and report divergence",
        description="Run the agent's current code, in its sandbox, against past runs' journals: every tool, "
        "model and state request is answered from the journal, nothing is executed, journaled or sent. "
        "Exit 0 when every run took the same path, 1 when one diverged.",
        epilog="examples:\n  corral replay 01a2b3\n  corral replay --agent digest --since 7d\n"
        "  corral replay 01a2b3 --pdb   # foreground: the debugger opens where it fails or diverges",
        formatter_class=HelpText,
    )
    replay.add_argument("run", nargs="?", help="run id (or a unique prefix or suffix of it)")
    agent_argument(replay, "--agent", help="replay this agent's runs (with --since) instead of one run")
    replay.add_argument(
        "--since", type=duration("--since 7d"), help='with --agent: runs created in the last ..., e.g. "7d"'
    )
    replay.add_argument("--pdb", action="store_true", help="in this process, under pdb (no daemon may be running)")
    replay.add_argument("--json", action="store_true", help="one JSON report per run")
    replay.set_defaults(func=cmd_replay)

    fork = sub.add_parser(
        "fork",
        parents=[common],
        help="start a new run that keeps a run's steps before --from and goes live from there",
        description="Start a new run of the same agent whose steps before --from are the original's (answered "
        "from its journal, free) and that goes live from step --from, with the original's input or --input. "
        "The new run records its parent; `corral trace` shows the fork point.",
        epilog='examples:\n  corral fork 01a2b3 --from 4\n  corral fork 01a2b3 --from 4 --input \'{"city": "Lyon"}\'',
        formatter_class=HelpText,
    )
    fork.add_argument("run", help="run id (or a unique prefix or suffix of it)")
    fork.add_argument("--from", dest="from_seq", type=int, required=True, help="the first step to run live")
    fork.add_argument("--input", help="the new run's input as JSON (default: the original's)")
    fork.add_argument("--json", action="store_true", help="print the new run as JSON")
    fork.set_defaults(func=cmd_fork)

    diff = sub.add_parser(
        "diff",
        parents=[common],
        help="compare two runs step by step and mark the first divergence",
        description="Compare two runs step by step (kind, name, arguments, result) and mark the first step "
        "where they differ.",
        epilog="examples:\n  corral diff 01a2b3 01a9f0\n  corral diff 01a2b3 01a9f0 --json",
        formatter_class=HelpText,
    )
    diff.add_argument("first", help="run id (or a unique prefix or suffix of it)")
    diff.add_argument("second", help="run id (or a unique prefix or suffix of it)")
    diff.add_argument("--json", action="store_true", help="the comparison as JSON")
    diff.set_defaults(func=cmd_diff)


# --------------------------------------------------------------------------- replay


def cmd_replay(args: argparse.Namespace) -> int:
    config = load(args)
    if (args.run is None) == (args.agent is None):
        raise Exit(EXIT_USAGE, "corral: replay needs a run id, or --agent NAME (with --since to limit it)")
    if args.since is not None and args.agent is None:
        raise Exit(EXIT_USAGE, "corral: --since goes with --agent; one run is named by its id")
    run_ids = [ids.run_id(config, args.run)] if args.run else _runs_of(config, args.agent, args.since)
    if args.pdb:
        if len(run_ids) != 1:
            raise Exit(EXIT_USAGE, "corral: --pdb debugs one run; name it")
        reports = [_debug(config, run_ids[0])]
    elif len(run_ids) == 1:
        reports = [_replay(config, run_ids[0])]
    else:  # a batch: one run that cannot be replayed (it started meanwhile) does not end it
        reports = []
        for run_id in run_ids:
            try:
                reports.append(_replay(config, run_id))
            except Exit as refused:
                reports.append(_unreplayed(run_id, args.agent, str(refused).removeprefix("corral: ")))
    if args.json:  # one document: the run's report, or the list of a batch's
        print_json(reports[0] if args.run else reports)
    for report in [] if args.json else reports:
        _show(report)
    if not args.json and len(reports) > 1:
        diverged = sum(not r["same"] for r in reports)
        print(f"{len(reports)} runs replayed: {len(reports) - diverged} same path, {diverged} diverged")
    return EXIT_OK if all(r["same"] for r in reports) else EXIT_FAILED


def _runs_of(config: CorralConfig, agent: str, since: float | None) -> list[str]:
    if agent not in config.agents:
        known = ", ".join(sorted(config.agents)) or "none"
        raise Exit(EXIT_NOT_FOUND, f"corral: no agent named {agent!r} in {config.path}; agents: {known}")
    after = time.time() - since if since is not None else 0.0
    store, records = reader(config)
    try:
        with store.read() as txn:
            runs = records.list_runs(txn, agent, limit=10_000)
    finally:
        store.close()
    chosen = [r["id"] for r in reversed(runs) if r["created"] >= after and r["state"] != RunState.RUNNING.value]
    if not chosen:
        window = f" in the last {format_duration(since)}" if since is not None else ""
        raise Exit(EXIT_NOT_FOUND, f"corral: agent {agent!r} has no run to replay{window}")
    return chosen


def _replay(config: CorralConfig, run_id: str) -> dict[str, Any]:
    """Through the daemon when one runs (it owns the store), else here."""
    reply = send_or_foreground(config, {"op": "replay", "run": run_id}, wait=True, refused=EXIT_NOT_FOUND)
    if reply is not None:
        report: dict[str, Any] = reply["report"]
        return report
    from corral.daemon.host import host

    with host(config, echo=None) as composed:
        engine = composed.engine
        engine.processes.prepare(config.home / "agents")

        async def go() -> dict[str, Any]:
            try:
                return (await engine.replay(run_id)).to_dict()
            except (KeyError, ValueError) as exc:
                raise Exit(EXIT_NOT_FOUND, f"corral: {str(exc).strip(chr(39))}") from None
            finally:
                await engine.models.close()

        return asyncio.run(go())


def _debug(config: CorralConfig, run_id: str) -> dict[str, Any]:
    """The replay in this process under pdb (:mod:`corral.run.debug`); needs the home to itself."""
    from corral.daemon.host import host
    from corral.errors import StoreLockedError
    from corral.run.debug import replay_here
    from corral.run.engine import replaying
    from corral.run.replay import ReplayReport, verdict
    from corral.run.replay import workdir as replay_workdir
    from corral.sandbox.policy import agent_env, prepare_workdir
    from corral.tools import tool_secret_names

    try:
        opened = host(config, echo=None)
        composed = opened.__enter__()
    except StoreLockedError:
        raise Exit(
            EXIT_UNAVAILABLE,
            "corral: --pdb runs in this process: stop the daemon first (`corral replay` without --pdb goes through it)",
        ) from None
    try:
        engine = composed.engine
        with engine.store.read() as txn:
            run = engine.records.get_run(txn, run_id)
            journal = {entry["seq"]: entry for entry in engine.records.steps(txn, run_id)}  # as stored
            snapshot = engine.records.get_snapshot(txn, run_id)
        if run is None:
            raise Exit(EXIT_NOT_FOUND, f"corral: no run {run_id}")
        agent = config.agents.get(run["agent"])
        if agent is None:
            raise Exit(EXIT_NOT_FOUND, f"corral: agent {run['agent']!r} is no longer in the config")
        if agent.command is not None:
            raise Exit(
                EXIT_USAGE,
                f"corral: --pdb debugs a Python agent's function in this process; agent {agent.name!r} runs a "
                f"command ({' '.join(agent.command)}), which pdb cannot step through. Replay it without --pdb "
                "(sandboxed, every request answered from the journal), or use the program's own debugger",
            )
        with replay_workdir(config.home, run_id) as workdir:
            prepare_workdir(workdir)
            agent = replaying(agent)
            prepared = engine.sandbox.prepare(agent, workdir)
            if prepared.refusal is not None:
                raise Exit(EXIT_FAILED, f"corral: {prepared.refusal['message']}")
            engine.logs.redaction.add(prepared.env)
            report = ReplayReport(run_id, agent.name, 0, len(journal))
            welcome = engine.welcome(run, agent, snapshot, {})
            for_tools = tool_secret_names(engine.plugins.tools, agent.tools)  # as in the sandbox: not the code's
            granted = {name: value for name, value in prepared.env.items() if name not in for_tools}
            env = {**agent_env(agent, workdir, engine.environ), **granted}
            print(
                f"corral: replaying run {run_id} of {agent.name!r} in this process, unsandboxed, under pdb",
                file=sys.stderr,
            )
            redact = engine.logs.redaction.redact
            max_body = config.frame_max_bytes // 2  # as the runtime's door (sandbox/runtime.py)
            outcome = replay_here(run, welcome, journal, report, redact, workdir, env, max_body)
        return verdict(report, run, outcome).to_dict()
    finally:
        opened.__exit__(None, None, None)


def _unreplayed(run_id: str, agent: str, why: str) -> dict[str, Any]:
    """The report of a run of a batch that could not be replayed."""
    return {
        "run_id": run_id,
        "agent": agent,
        "steps": 0,
        "journaled": 0,
        "same": False,
        "divergence": None,
        "reached_end": False,
        "ended": f"not replayed: {why}",
        "original": "",
        "notes": [],
    }


def _show(report: dict[str, Any]) -> None:
    head = f"run {report['run_id']} ({report['agent']}): "
    if report["same"]:
        print(
            head + f"same path ({report['steps']} of {report['journaled']} steps from the journal; {report['ended']})"
        )
    else:
        print(head + "DIVERGED" if report["divergence"] else head + "not the same")
        divergence = report["divergence"]
        if divergence:
            print(f"  at step {divergence['seq']}")
            print(f"    the journal has: {divergence['journal']}")
            print(f"    the code asked:  {divergence['asked']}")
        else:
            print(f"  the code: {report['ended']}")
            print(f"  the run:  {report['original']}")
    for note in report["notes"]:
        print(f"  note: {note}")


# --------------------------------------------------------------------------- fork


def cmd_fork(args: argparse.Namespace) -> int:
    config = load(args)
    run_id = ids.run_id(config, args.run)
    if args.from_seq < 1:
        raise Exit(EXIT_USAGE, f"corral: --from must be a step number of 1 or more, not {args.from_seq}")
    request: dict[str, Any] = {"op": "fork", "run": run_id, "from": args.from_seq}
    if args.input is not None:  # JSON null too: a new input of null
        request["input"] = json_argument(args.input, "--input", """'{"k": 1}'""")
    reply = act(config, request)
    if reply is None:
        from corral.daemon.host import host

        with host(config, echo=None) as composed:

            async def go() -> dict[str, Any]:
                try:
                    return await composed.engine.fork(run_id, args.from_seq, request.get("input", ORIGINAL))
                except (KeyError, ValueError) as exc:
                    raise Exit(EXIT_NOT_FOUND, f"corral: {str(exc).strip(chr(39))}") from None

            run = asyncio.run(go())
        where = "`corral up` runs it"
    else:
        run = reply["run"]
        where = "the daemon runs it"
    if args.json:
        print_json(run)
    else:
        print(f"run {run['id']} forked from {run_id} at step {args.from_seq} (queued; {where})")
    return EXIT_OK


# --------------------------------------------------------------------------- diff


def cmd_diff(args: argparse.Namespace) -> int:
    config = load(args)
    first, second = ids.run_id(config, args.first), ids.run_id(config, args.second)
    store, records = reader(config)
    try:
        with store.read() as txn:
            a, b = list(records.steps(txn, first)), list(records.steps(txn, second))
    finally:
        store.close()
    rows, diverged = compare(a, b)
    if args.json:
        print_json({"first": first, "second": second, "steps": rows, "diverged_at": diverged})
    else:
        print(f"{'SEQ':>4}  {first[-8:]:<40}  {second[-8:]:<40}")
        for row in rows:
            mark = ">>" if row["seq"] == diverged else ("  " if row["same"] else " ~")
            print(f"{mark}{row['seq']:>2}  {row['first']:<40.40}  {row['second']:<40.40}")
        differ = [str(row["seq"]) for row in rows if not row["same"]]
        if diverged is None and not differ:
            print("the same steps, with the same outcomes")
        elif diverged is None:
            print(f"the same requests; the outcomes differ at step {', '.join(differ)}")
        else:
            print(f"first divergence at step {diverged}")
    return EXIT_OK if diverged is None else EXIT_FAILED


def compare(a: list[dict[str, Any]], b: list[dict[str, Any]]) -> tuple[list[dict[str, Any]], int | None]:
    """Row per seq of either journal: each side in short, whether they agree (same request
    and same outcome); and the first seq where the requests differ (or one run has no step)."""
    by_seq = [{e["seq"]: e for e in a}, {e["seq"]: e for e in b}]
    rows, diverged = [], None
    for seq in sorted(set(by_seq[0]) | set(by_seq[1])):
        left, right = by_seq[0].get(seq), by_seq[1].get(seq)
        same_request = left is not None and right is not None and left["fp"] == right["fp"]
        same = same_request and _outcome(left) == _outcome(right)
        if not same_request and diverged is None:
            diverged = seq
        rows.append({"seq": seq, "first": _short(left), "second": _short(right), "same": same})
    return rows, diverged


def _outcome(entry: dict[str, Any] | None) -> Any:
    if entry is None:
        return None
    return (entry["status"], entry.get("ok"), json.dumps(entry.get("value"), sort_keys=True, default=str))


def _short(entry: dict[str, Any] | None) -> str:
    if entry is None:
        return "-"
    outcome = "ok" if entry.get("ok") else ("failed" if entry["status"] == "done" else entry["status"])
    return f"{entry['kind']} {entry['name']} -> {outcome}"
