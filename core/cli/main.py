"""``corral``: argument parsing, the core commands, and the registry of command modules.

Exit codes are listed in :mod:`corral.cli.common`. A feature with its own commands keeps
them in its own module under ``corral.cli`` with an ``add_commands(sub, common)`` function,
named in :data:`COMMAND_MODULES`.
"""

from __future__ import annotations

import argparse
import asyncio
import importlib
import json
import os
import sys
import time
from collections.abc import Sequence
from typing import Any

from corral import __version__
from corral.cli import ids
from corral.cli.common import (
    EXIT_CONFIG,
    EXIT_FAILED,
    EXIT_INTERNAL,
    EXIT_INTERRUPTED,
    EXIT_NOT_FOUND,
    EXIT_OK,
    EXIT_UNAVAILABLE,
    EXIT_USAGE,
    Exit,
    Parser,
    act,
    duration,
    foreground,
    internal_error,
    json_argument,
    load,
    print_json,
    reader,
    report_run,
    send_or_foreground,
    whole,
)
from corral.cli.extensions import add_plugin_commands
from corral.config import find_config
from corral.errors import ConfigError, ControlError, CorralError, StoreLockedError
from corral.run.budget import spent_today

COMMAND_MODULES: tuple[str, ...] = (
    "spend",
    "retry",
    "approvals",
    "secrets",
    "doctor",
    "schedule",
    "alerts",
    "replay",
    "console",
)
"""Modules under ``corral.cli`` that add their own commands, in the order ``--help`` lists them."""

CHECK_TIMEOUT = 10.0
"""Seconds ``corral check`` gives each agent's module to import (``--timeout``)."""

# --------------------------------------------------------------------------- up / run


def cmd_up(args: argparse.Namespace) -> int:
    from corral.daemon.host import host

    config = load(args)
    with host(config, echo=sys.stderr) as composed:
        from corral.daemon.root import Daemon

        return asyncio.run(Daemon(composed).serve())


def cmd_run(args: argparse.Namespace) -> int:
    config = load(args)
    if args.agent not in config.agents:
        known = ", ".join(sorted(config.agents)) or "none"
        raise Exit(EXIT_NOT_FOUND, f"corral: no agent named {args.agent!r} in {config.path}; agents: {known}")
    request: dict[str, Any] = {"op": "run", "agent": args.agent, "wait": args.wait}
    if args.input is not None:
        request["input"] = json_argument(args.input, "--input", """'{"k": 1}'""")
    reply = send_or_foreground(config, request, wait=args.wait)
    if reply is not None:
        return report_run(reply["run"], args, waited=args.wait)
    agent = config.agents[args.agent]

    async def start(engine: Any) -> str:
        return (await engine.create_run(agent.name, request.get("input", agent.input), trigger="cli"))["id"]

    return report_run(foreground(config, start), args, waited=True)


def cmd_release(args: argparse.Namespace) -> int:
    config = load(args)
    run_id = ids.run_id(config, args.run)
    value = None
    if args.value is not None:
        value = json_argument(args.value, "--value", """'"charged by hand"'""")
    request = {"op": "release", "run": run_id, "happened": args.happened, "value": value}
    reply = act(config, request)
    if reply is not None:
        if args.json:
            print_json(reply["run"])
        else:
            print(f"run {run_id} released; the daemon resumes it")
        return EXIT_OK

    async def start(engine: Any) -> str:
        try:
            return (await engine.release(run_id, args.happened, value))["id"]
        except (KeyError, ValueError) as exc:
            raise Exit(EXIT_NOT_FOUND, f"corral: {str(exc).strip(chr(39))}") from None

    return report_run(foreground(config, start), args, waited=True)


# --------------------------------------------------------------------------- read-only views


def cmd_status(args: argparse.Namespace) -> int:
    from corral.cli import views
    from corral.schedule.status import agent_status, triggers_label
    from corral.schedule.timeline import Jump, JumpKind, read_last_jump
    from corral.store import StoreLock

    config = load(args)
    store, records = reader(config)
    with store.read() as txn:
        agents = {name: (records.list_runs(txn, name, limit=1) or [None])[0] for name in config.agents}
        active = records.active_runs(txn)
        today = spent_today(txn, store.dbs["spend"], time.time(), config.zone)
        schedules = agent_status(store, records, txn, config, time.time())
        jump = read_last_jump(store, txn)
    holder = StoreLock(config.home).holder()  # after the read: runs it shows running were not left by a dead one
    if holder is None:
        agents = {name: views.unheld(last) for name, last in agents.items()}
        active = [views.unheld(run) for run in active]
        for info in schedules.values():
            if info["state"] == "running":
                info["state"] = "interrupted"
    status = {
        "daemon": {"running": holder is not None, "pid": holder},
        "home": str(config.home),
        "store": store.size(),
        "agents": {
            name: {
                "last_run": last,
                "every": config.agents[name].every,
                "spent_today": today.get(name),
                **schedules[name],
            }
            for name, last in agents.items()
        },
        "spent_today": today.get(""),
        "active_runs": active,
        "clock": jump,
    }
    store.close()
    if args.json:
        print_json(status)
        return EXIT_OK
    print(f"daemon   {f'running (pid {holder})' if holder else 'not running'}")
    print(f"home     {config.home}")
    size = status["store"]
    print(f"store    {views.size(size['file_bytes'])} on disk, {views.size(size['used_bytes'])} used")
    if jump is not None:
        last = Jump(JumpKind(jump["kind"]), jump["at"], jump["jump"])
        print(f"clock    {last.describe()} (noticed {views.when(last.at)})")
    rows = []
    for name, last in agents.items():
        rows.append(
            [
                name,
                schedules[name]["state"],
                triggers_label(config.agents[name]),
                views.when(schedules[name]["next_fire"]),
                views.state(last) if last else "-",
                views.when(last.get("ended") or last.get("created")) if last else "-",
                last["id"] if last else "-",
                str(schedules[name]["queue_depth"]),
                views.spent(today.get(name)),
            ]
        )
    print()
    headers = ["AGENT", "STATE", "TRIGGER", "NEXT", "LAST", "WHEN", "RUN", "QUEUED", "SPENT TODAY"]
    print(views.table(rows, headers) if rows else "no agents configured")
    for name, info in schedules.items():
        if info["pause"]:
            until = info["pause"]["until"]
            lifts = f", until {views.when(until)}" if until else "; `corral resume` lifts it"
            print(f"{name} paused since {views.when(info['pause']['since'])}{lifts}: {info['pause']['reason']}")
    if today.get(""):
        print(f"\nmodel spend today, all agents: {views.spent(today[''])}")
    if active:
        print()
        print("unfinished runs:")
        print(views.runs_table(active))
    return EXIT_OK


def cmd_runs(args: argparse.Namespace) -> int:
    from corral.cli import views
    from corral.store import StoreLock

    config = load(args)
    store, records = reader(config)
    with store.read() as txn:
        runs = records.list_runs(txn, args.agent, limit=args.limit)
    store.close()
    if StoreLock(config.home).holder() is None:
        runs = [views.unheld(run) for run in runs]
    if args.agent is not None and args.agent not in config.agents and not runs:  # a removed agent keeps its runs
        known = ", ".join(sorted(config.agents)) or "none"
        raise Exit(EXIT_NOT_FOUND, f"corral: no agent named {args.agent!r} in {config.path}; agents: {known}")
    if args.json:
        print_json(runs)
    else:
        print(views.runs_table(runs))
    return EXIT_OK


def cmd_trace(args: argparse.Namespace) -> int:
    from corral.cli import trace
    from corral.cli.alerts import alerts_of_run, outcome
    from corral.cli.tree import trace_tree
    from corral.observe.logview import printable

    config = load(args)
    run_id = ids.run_id(config, args.run)
    store, records = reader(config)
    try:
        with store.read() as txn:
            run = records.get_run(txn, run_id)
            if run is None:  # removed by retention since
                raise Exit(EXIT_NOT_FOUND, f"corral: run {run_id} is gone; `corral runs` lists them")
            steps = list(records.steps(txn, run_id))
        alerts = alerts_of_run(store, run)
    finally:
        store.close()
    if args.step is not None:
        step = trace.find_step(run, steps, args.step)
        step = trace.redactor(config, run["agent"]).redact(step)
        if args.json:
            print_json(step)
        else:
            print(trace.whole(step, run))
    elif args.json:
        print_json({"run": run, "steps": steps, "alerts": alerts})
    elif args.tree:
        print(trace_tree(run, steps, alerts))
    else:
        print(trace.trace_text(run, steps))
        for record in alerts:
            title = printable(record["alert"]["title"])
            print(f"alert {record['alert']['severity']}: {title} ({outcome(record)})")
    return EXIT_OK


def cmd_logs(args: argparse.Namespace) -> int:
    from corral.observe import logview
    from corral.observe.logs import log_path

    config = load(args)
    if args.agent is not None and args.agent not in config.agents:
        raise Exit(EXIT_NOT_FOUND, f"corral: no agent named {args.agent!r}; agents: {', '.join(sorted(config.agents))}")
    path = log_path(config.log_dir, args.agent)
    run_id = None if args.run is None else ids.run_id(config, args.run)
    try:
        wanted = logview.Filter(run=run_id, min_level=args.level, event=args.event)
    except ValueError as exc:
        raise Exit(EXIT_USAGE, f"corral: {exc}") from None
    color = sys.stdout.isatty() and not os.environ.get("NO_COLOR")

    def show(event: dict[str, Any]) -> None:
        if wanted.matches(event):
            print(
                logview.printable_json(json.dumps(event, ensure_ascii=False))
                if args.json
                else logview.render(event, color=color),
                flush=True,
            )

    for event in logview.read_events(path, last=args.lines):
        show(event)
    if args.follow:
        try:
            for event in logview.follow(path):
                show(event)
        except KeyboardInterrupt:
            pass
    return EXIT_OK


def cmd_check(args: argparse.Namespace) -> int:
    from corral.cli import views
    from corral.config.check import check_file

    report = check_file(find_config(args.config), os.environ, args.timeout)
    if report.invalid:
        print("corral: invalid config:", *report.invalid, *report.problems, sep="\n", file=sys.stderr)
    else:
        for problem in report.problems:
            print(problem, file=sys.stderr)
    if report.fires:
        rows = [
            [
                fires.agent,
                fires.trigger,
                views.zone_name(fires.zone),
                ", ".join(views.when_in(t, fires.zone) for t in fires.times) or "never again",
            ]
            for fires in report.fires
        ]
        print(views.table(rows, ["AGENT", "TIMED TRIGGER", "ZONE", "NEXT THREE FIRE TIMES"]))
    if report.invalid:
        return EXIT_CONFIG
    if report.problems:
        return EXIT_FAILED
    print(f"{find_config(args.config)}: ok ({report.agents} agents)")
    return EXIT_OK


# --------------------------------------------------------------------------- parser


def parser(argv: Sequence[str] | None = None) -> argparse.ArgumentParser:
    """Every command, plugins' included (``argv`` locates the config that names drop-ins)."""
    # typed as argparse's own, so command modules keep their signatures; subcommands get Parser at run time
    p: argparse.ArgumentParser = Parser(prog="corral", description="A supervisor for always-on AI agents.")
    p.add_argument("--version", action="version", version=f"corral {__version__}")
    config_help = "config file (default: $CORRAL_CONFIG, else $CORRAL_HOME/corral.toml)"
    p.add_argument("--config", "-c", help=config_help)
    # accepted after the command too (`corral up --config FILE`); SUPPRESS keeps the global value
    common = argparse.ArgumentParser(add_help=False)
    common.add_argument("--config", "-c", default=argparse.SUPPRESS, help=config_help)
    sub = p.add_subparsers(dest="command", required=True, metavar="COMMAND")

    sub.add_parser("up", parents=[common], help="run the daemon in the foreground").set_defaults(func=cmd_up)

    run = sub.add_parser("run", parents=[common], help="start a run of an agent now")
    run.add_argument("agent")
    run.add_argument("--input", help="JSON payload, available to the agent as ctx.input")
    run.add_argument("--wait", action="store_true", help="wait for the run to end; exit 1 if it failed")
    run.add_argument("--json", action="store_true")
    run.set_defaults(func=cmd_run)

    status = sub.add_parser("status", parents=[common], help="daemon, agents, unfinished runs, store size")
    status.add_argument("--json", action="store_true")
    status.set_defaults(func=cmd_status)

    runs = sub.add_parser("runs", parents=[common], help="recent runs, newest first")
    runs.add_argument("agent", nargs="?")
    runs.add_argument("--limit", "-n", type=whole(1, "-n 20"), default=20, help="how many (default 20)")
    runs.add_argument("--json", action="store_true")
    runs.set_defaults(func=cmd_runs)

    trace = sub.add_parser("trace", parents=[common], help="a run's journal, step by step")
    trace.add_argument("run", help="run id (or a unique prefix or suffix of it)")
    shown = trace.add_mutually_exclusive_group()
    shown.add_argument("--tree", action="store_true", help="the whole timeline as a tree, with its alerts")
    shown.add_argument(
        "--step",
        type=whole(1, "--step 3"),
        metavar="N",
        help="step N whole: a model step's full prompt and response, a tool's arguments and result (redacted)",
    )
    trace.add_argument("--json", action="store_true")
    trace.set_defaults(func=cmd_trace)

    logs = sub.add_parser("logs", parents=[common], help="an agent's log (the daemon's without AGENT)")
    logs.add_argument("agent", nargs="?")
    logs.add_argument("-f", "--follow", action="store_true")
    logs.add_argument(
        "-n",
        "--lines",
        type=whole(0, "-n 50"),
        default=50,
        help="the last N events (default 50; 0 with -f: new ones only)",
    )
    logs.add_argument("--run", help="only this run (its id, or a unique prefix or suffix)")
    logs.add_argument("--level", help="minimum level: debug, info, warning, error")
    logs.add_argument("--event", help="event name or glob")
    logs.add_argument("--json", action="store_true", help="raw JSON lines")
    logs.set_defaults(func=cmd_logs)

    release = sub.add_parser(
        "release", parents=[common], help="resume a run on hold after checking its interrupted step"
    )
    release.add_argument("run", help="run id (or a unique prefix or suffix of it)")
    verdict = release.add_mutually_exclusive_group(required=True)
    verdict.add_argument("--happened", action="store_true", help="the step took effect: record it, never re-run it")
    verdict.add_argument(
        "--not-happened", dest="happened", action="store_false", help="the step had no effect: run it again"
    )
    release.add_argument("--value", help="with --happened: the step's result as JSON (default null)")
    release.add_argument("--json", action="store_true")
    release.set_defaults(func=cmd_release)

    check = sub.add_parser(
        "check",
        parents=[common],
        help="validate the config, plugins and agents' entries; show timed triggers' next fire times",
    )
    check.add_argument(
        "--timeout",
        type=duration("--timeout 30s"),
        default=CHECK_TIMEOUT,
        help=f"how long each agent's module may take to import (default {CHECK_TIMEOUT:g}s)",
    )
    check.set_defaults(func=cmd_check)
    for name in COMMAND_MODULES:
        importlib.import_module(f"corral.cli.{name}").add_commands(sub, common)
    add_plugin_commands(sub, common, argv)
    return p


def main(argv: Sequence[str] | None = None) -> int:
    args = parser(argv).parse_args(argv)
    try:
        code = _command(args)
    except KeyboardInterrupt:  # Ctrl-C where no command handles it: it stops, and says no more
        print("\ncorral: interrupted", file=sys.stderr)
        code = EXIT_INTERRUPTED
    except Exception as exc:  # a bug, ours or a plugin's: one line here, the traceback in corral.log
        print(internal_error(exc, args, sys.argv[1:] if argv is None else argv), file=sys.stderr)
        code = EXIT_INTERNAL
    sys.exit(code)


def _command(args: argparse.Namespace) -> int:
    """Run the command; every error a user can cause becomes its message and exit code."""
    try:
        code: int = args.func(args)
    except BrokenPipeError:  # `corral runs | head`: the reader left; that is not an error
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        code = EXIT_OK
    except Exit as exc:
        if str(exc):
            print(exc, file=sys.stderr)
        code = exc.code
    except ConfigError as exc:
        print(f"corral: invalid config:\n{exc}", file=sys.stderr)
        code = EXIT_CONFIG
    except StoreLockedError as exc:
        print(f"corral: {exc}", file=sys.stderr)
        code = EXIT_UNAVAILABLE
    except ControlError as exc:
        print(f"corral: the daemon refused: {exc}", file=sys.stderr)
        code = EXIT_FAILED
    except CorralError as exc:
        print(f"corral: {exc}", file=sys.stderr)
        code = EXIT_UNAVAILABLE
    return code
