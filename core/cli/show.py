"""``corral runs``, ``corral trace RUN`` and ``corral logs``: what the store and the logs say
about runs, filtered as an operator asks.

All read-only (the store opened read-only, the log files read), so they work with the
daemon down.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
from typing import Any

from corral.cli import ids
from corral.cli.common import (
    EXIT_NOT_FOUND,
    EXIT_OK,
    EXIT_USAGE,
    Exit,
    agent_argument,
    command,
    load,
    not_blank,
    print_json,
    reader,
    whole,
)
from corral.cli.moments import moment, window
from corral.states import RunState


def add_commands(sub: Any, common: argparse.ArgumentParser) -> None:
    runs = command(
        sub,
        common,
        "runs",
        "recent runs, newest first, filtered by agent, state, trigger and time",
        description="Recent runs, newest first: state, trigger, attempts, when, how long, model spend, and why "
        "one failed or is held. The filters combine; -n counts the runs that pass them. Works with the daemon down.",
        examples=[
            "corral runs",
            "corral runs digest -n 5",
            "corral runs --state failed --since 2h",
            "corral runs --agent digest --trigger cron --since 2027-01-04T07:00",
        ],
    )
    agent_argument(runs, "agent", nargs="?", help="only this agent's runs (as --agent)")
    agent_argument(runs, "--agent", dest="agent_option", metavar="AGENT", help="only this agent's runs")
    state = runs.add_argument(
        "--state",
        type=_states,
        help=f"only runs in these states, comma-separated: {', '.join(RunState)}",
    )
    state.completer = lambda prefix, **_: [s.value for s in RunState if s.value.startswith(prefix)]  # type: ignore[attr-defined]
    runs.add_argument("--trigger", help="only runs started by this trigger kind: cli, interval, cron, once, file, ...")
    runs.add_argument("--since", type=moment("--since"), help="only runs created since: 2h (ago), or a date and time")
    runs.add_argument("--until", type=moment("--until"), help="only runs created until: 30m (ago), or a date and time")
    runs.add_argument("--limit", "-n", type=whole(1, "-n 20"), default=20, help="how many at most (default 20)")
    runs.add_argument("--json", action="store_true", help="the run records as JSON, times as epoch seconds")
    runs.set_defaults(func=cmd_runs)

    trace = command(
        sub,
        common,
        "trace",
        "a run's journal, step by step",
        description="A run and its journal: one line per step (a model call with its model, last message, "
        "answer, tools asked for, tokens and cost), then the alerts raised about it. --step N prints one step "
        "whole; --tree draws the run's timeline. Works with the daemon down.",
        examples=[
            "corral trace 01a2b3c4",
            "corral trace b3c4 --step 2     # the whole prompt and response of step 2",
            "corral trace b3c4 --tree",
            "corral trace b3c4 --json",
        ],
    )
    trace.add_argument("run", help="run id (or a unique prefix or suffix of it)")
    shown = trace.add_mutually_exclusive_group()
    shown.add_argument("--tree", action="store_true", help="the whole timeline as a tree, with its alerts")
    shown.add_argument(
        "--step",
        type=whole(1, "--step 3"),
        metavar="N",
        help="step N whole: a model step's full prompt and response, a tool's arguments and result (redacted)",
    )
    trace.add_argument("--json", action="store_true", help="the run, its steps and alerts as JSON")
    trace.set_defaults(func=cmd_trace)

    logs = command(
        sub,
        common,
        "logs",
        "an agent's log (the daemon's without AGENT), filtered; -f follows it",
        description="The last events of an agent's log, or of the daemon's without AGENT, across rotated files, "
        "one line each (raw JSON with --json). The filters combine, and -n counts the events that pass them; "
        "-f keeps following like tail -F. Works with the daemon down.",
        examples=[
            "corral logs -f digest",
            "corral logs --level warning --since 1h",
            "corral logs digest --run b3c4 --event 'alert *'",
            "corral logs --since 2027-01-04T07:00 --until 2027-01-04T08:00 --json",
        ],
    )
    agent_argument(logs, "agent", nargs="?", help="the agent whose log to read (default: the daemon's)")
    logs.add_argument("-f", "--follow", action="store_true", help="keep printing new events until Ctrl-C")
    logs.add_argument(
        "-n",
        "--lines",
        type=whole(0, "-n 50"),
        default=50,
        help="the last N events that pass the filters (default 50; 0 with -f: new ones only)",
    )
    logs.add_argument("--run", help="only this run (its id, or a unique prefix or suffix)")
    logs.add_argument(
        "--level",
        choices=("debug", "info", "warning", "error", "critical"),
        help="minimum level: debug, info, warning, error, critical",
    )
    logs.add_argument(
        "--event",
        type=not_blank("--event", "give an event name or glob, e.g. 'alert *'"),
        help="event name or glob, e.g. 'alert *'",
    )
    logs.add_argument("--since", type=moment("--since"), help="only events since: 2h (ago), or a date and time")
    logs.add_argument("--until", type=moment("--until"), help="only events until: 30m (ago), or a date and time")
    logs.add_argument("--json", action="store_true", help="raw JSON lines")
    logs.set_defaults(func=cmd_logs)


def _states(text: str) -> frozenset[str]:
    """``--state``: one or more run states, comma-separated."""
    given = [part.strip() for part in text.split(",") if part.strip()]
    unknown = [part for part in given if part not in set(RunState)]
    if not given or unknown:
        raise argparse.ArgumentTypeError(
            f"{', '.join(map(repr, unknown or [text]))} is not a run state; use {', '.join(RunState)}, "
            "e.g. --state failed,abandoned"
        )
    return frozenset(given)


def cmd_runs(args: argparse.Namespace) -> int:
    from corral.cli import views
    from corral.store import StoreLock

    window(args.since, args.until)
    config = load(args)
    agent = _one_agent(args.agent, args.agent_option)
    since, until = args.since.at if args.since else None, args.until.at if args.until else None
    unheld = StoreLock(config.home).holder() is None
    store, records = reader(config)
    runs: list[dict[str, Any]] = []
    try:
        with store.read() as txn:
            for run in records.runs_newest_first(txn, agent):
                if since is not None and run.get("created", 0) < since:
                    break  # newest first: every later one is older still
                shown = views.unheld(run) if unheld else run
                if until is not None and run.get("created", 0) > until:
                    continue
                if args.state and shown["state"] not in args.state:
                    continue
                if args.trigger and run.get("trigger") != args.trigger:
                    continue
                runs.append(shown)
                if len(runs) >= args.limit:
                    break
            known = agent is None or agent in config.agents or bool(agent and records.agent_run_ids(txn, agent))
    finally:
        store.close()
    if not known:  # a removed agent keeps its runs
        agents = ", ".join(sorted(config.agents)) or "none"
        raise Exit(EXIT_NOT_FOUND, f"corral: no agent named {agent!r} in {config.path}; agents: {agents}")
    if args.json:
        print_json(runs)
    elif runs:
        print(views.runs_table(runs))
    else:
        print(_none(args, agent))
    return EXIT_OK


def _one_agent(positional: str | None, option: str | None) -> str | None:
    if positional is not None and option is not None and positional != option:
        raise Exit(EXIT_USAGE, f"corral: two agents given ({positional!r} and --agent {option!r}); give one")
    return positional if positional is not None else option


def _none(args: argparse.Namespace, agent: str | None) -> str:
    """What ``corral runs`` says when nothing passes its filters."""
    filters = [f"of {agent}" if agent else ""]
    filters += [f"in state {' or '.join(sorted(args.state))}" if args.state else ""]
    filters += [f"started by {args.trigger}" if args.trigger else ""]
    filters += [args.since.since() if args.since else "", args.until.until() if args.until else ""]
    said = " ".join(part for part in filters if part)
    return f"no runs {said}" if said else "no runs yet"


def cmd_trace(args: argparse.Namespace) -> int:
    from corral.cli import trace
    from corral.cli.alerts import alerts_of_run, outcome
    from corral.cli.tree import trace_tree
    from corral.observe.logview import printable
    from corral.store import conversations

    config = load(args)
    run_id = ids.run_id(config, args.run)
    store, records = reader(config)
    try:
        with store.read() as txn:
            run = records.get_run(txn, run_id)
            if run is None:  # removed by retention since
                raise Exit(EXIT_NOT_FOUND, f"corral: run {run_id} is gone; `corral runs` lists them")
            steps = list(records.steps(txn, run_id))  # as stored: a conversation is not repeated per step
            step = records.get_step(txn, run_id, args.step) if args.step is not None else None
        alerts = alerts_of_run(store, run)
    finally:
        store.close()
    if args.step is not None:
        if step is None:
            raise trace.no_step(run, steps, args.step)
        step = trace.redactor(config, run["agent"]).redact(step)
        if args.json:
            print_json(step)
        else:
            print(trace.whole(step, run))
    elif args.json:
        print_json({"run": run, "steps": [conversations.spelled(step) for step in steps], "alerts": alerts})
    elif args.tree:
        print(trace_tree(run, steps, alerts))
    else:
        print(trace.trace_text(run, steps))
        for record in alerts:
            title = printable(record["alert"]["title"])
            print(f"alert {record['alert']['severity']}: {title} ({outcome(record)})")
    return EXIT_OK


def cmd_logs(args: argparse.Namespace) -> int:
    from collections import deque

    from corral.observe import logview
    from corral.observe.logs import log_path

    config = load(args)
    if args.agent is not None and args.agent not in config.agents:
        raise Exit(EXIT_NOT_FOUND, f"corral: no agent named {args.agent!r}; agents: {', '.join(sorted(config.agents))}")
    if args.follow and args.until is not None:
        raise Exit(EXIT_USAGE, "corral: -f follows new events and --until ends them in the past; give one of them")
    window(args.since, args.until)
    path = log_path(config.log_dir, args.agent)
    run_id = None if args.run is None else ids.run_id(config, args.run)
    try:
        wanted = logview.Filter(
            run=run_id,
            min_level=args.level,
            event=args.event,
            since=args.since.at if args.since else None,
            until=args.until.at if args.until else None,
        )
    except ValueError as exc:
        raise Exit(EXIT_USAGE, f"corral: {exc}") from None
    color = sys.stdout.isatty() and not os.environ.get("NO_COLOR")

    def show(event: dict[str, Any]) -> None:
        text = logview.printable_json(json.dumps(event, ensure_ascii=False)) if args.json else None
        print(text if text is not None else logview.render(event, color=color), flush=True)

    if wanted.narrows:  # the last N that pass, wherever they are in the files
        last = deque((event for event in logview.read_events(path) if wanted.matches(event)), maxlen=args.lines)
    else:
        last = deque(logview.read_events(path, last=args.lines))
    for event in last:
        show(event)
    if args.follow:
        try:
            for event in logview.follow(path):
                if wanted.matches(event):
                    show(event)
        except KeyboardInterrupt:
            pass
    return EXIT_OK
