"""``corral``: argument parsing, the core commands, and the registry of command modules.

Exit codes are listed in :mod:`corral.cli.common`. A feature with its own commands keeps
them in its own module under ``corral.cli`` with an ``add_commands(sub, common)`` function,
named in :data:`COMMAND_MODULES`.
"""

from __future__ import annotations

import argparse
import asyncio
import importlib
import os
import sys
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
    Exit,
    Parser,
    act,
    agent_argument,
    agent_named,
    command,
    described,
    duration,
    foreground,
    internal_error,
    json_argument,
    load,
    print_json,
    report_run,
    send_or_foreground,
)
from corral.cli.extensions import add_plugin_commands
from corral.config import CorralConfig, find_config
from corral.errors import ConfigError, ControlError, CorralError, StoreLockedError

COMMAND_MODULES: tuple[str, ...] = (
    "starter",
    "status",
    "show",
    "tools",
    "state",
    "lifecycle",
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
    agent_named(config, args.agent)
    request: dict[str, Any] = {"op": "run", "agent": args.agent, "wait": args.wait or args.follow}
    if args.input is not None:
        request["input"] = json_argument(args.input, "--input", """'{"k": 1}'""")
    agent = config.agents[args.agent]

    async def start(engine: Any) -> str:
        return str((await engine.create_run(agent.name, request.get("input", agent.input), trigger="cli"))["id"])

    if args.follow:
        return _run_followed(config, args, request, start)
    reply = send_or_foreground(config, request, wait=args.wait)
    if reply is not None:
        return report_run(reply["run"], args, waited=args.wait)
    return report_run(foreground(config, start), args, waited=True)


def _run_followed(config: CorralConfig, args: argparse.Namespace, request: dict[str, Any], start: Any) -> int:
    """``corral run --follow``: the run's log lines live (:mod:`corral.cli.follow`), then its end."""
    from corral.cli.follow import RunFollower, printer
    from corral.observe.logs import log_path

    color = sys.stdout.isatty() and not os.environ.get("NO_COLOR")
    with RunFollower(log_path(config.log_dir, args.agent), printer(args.json, color)) as follower:

        def queued(answer: dict[str, Any]) -> None:
            if isinstance(answer.get("run"), dict):
                follower.following(answer["run"]["id"])

        reply = send_or_foreground(config, request, wait=True, each=queued)
        if reply is not None:
            run = reply["run"]
        else:

            async def started(engine: Any) -> str:
                run_id = str(await start(engine))
                follower.following(run_id)
                return run_id

            run = foreground(config, started)
        follower.ended()
    return report_run(run, args, waited=True, lines=True)


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
    config_help = (
        "config file (default: $CORRAL_CONFIG, else <home>/corral.toml; the home is $CORRAL_HOME, else ~/.corral)"
    )
    p.add_argument("--config", "-c", help=config_help)
    # accepted after the command too (`corral up --config FILE`); SUPPRESS keeps the global value
    common = argparse.ArgumentParser(add_help=False)
    common.add_argument("--config", "-c", default=argparse.SUPPRESS, help=config_help)
    sub = p.add_subparsers(dest="command", required=True, metavar="COMMAND")

    command(
        sub,
        common,
        "up",
        "run the daemon in the foreground",
        description="Run the daemon in the foreground (supervisord or launchd keep it alive): it resumes what a "
        "crash interrupted, fires the agents' triggers, serves the control socket, and logs to <home>/logs, "
        "echoing the daemon's log on stderr. SIGTERM or Ctrl-C (or `corral stop`) stops it gracefully, SIGHUP "
        "(or `corral reload`) reads the config again. The home is $CORRAL_HOME, else [corral] home, else ~/.corral.",
        examples=["corral up", "corral up --config examples/corral.toml", "CORRAL_HOME=/srv/corral corral up"],
    ).set_defaults(func=cmd_up)

    run = command(
        sub,
        common,
        "run",
        "start a run of an agent now (--wait for its end, --follow to watch it)",
        description="Start a run of AGENT now: through the daemon when one runs, else here in the foreground "
        "(waiting for its end). --wait prints the run's id on stderr at once, then its result (or its error, "
        "exit 1); --follow prints its steps and log lines as they happen, then the same. Ctrl-C stops the waiting "
        "(the daemon's run goes on) or the foreground run (left interrupted for the next `corral up`).",
        examples=[
            "corral run digest",
            "corral run digest --wait",
            "corral run digest --follow",
            """corral run digest --input '{"topic": "durable agents"}' --wait --json""",
        ],
    )
    agent_argument(run, "agent", help="the agent to run")
    run.add_argument("--input", help="JSON payload, available to the agent as ctx.input (default: its input)")
    watching = run.add_mutually_exclusive_group()
    watching.add_argument("--wait", action="store_true", help="wait for the run to end; exit 1 if it failed")
    watching.add_argument(
        "--follow", "-f", action="store_true", help="print its steps and log lines live until it ends; as --wait"
    )
    run.add_argument("--json", action="store_true", help="the run as JSON (with --follow: JSON lines)")
    run.set_defaults(func=cmd_run)

    release = sub.add_parser(
        "release", parents=[common], help="resume a run on hold after checking its interrupted step"
    )

    described(
        release,
        "Resume a run held because a crash interrupted a non-idempotent step: say whether that step took effect "
        "(--happened, with its --value) or not (--not-happened: it runs again). Through the daemon, else in the "
        "foreground.",
        ["corral release b3c4 --happened --value '\"charged by hand\"'", "corral release b3c4 --not-happened"],
    )
    release.add_argument("run", help="run id (or a unique prefix or suffix of it)")
    verdict = release.add_mutually_exclusive_group(required=True)
    verdict.add_argument("--happened", action="store_true", help="the step took effect: record it, never re-run it")
    verdict.add_argument(
        "--not-happened", dest="happened", action="store_false", help="the step had no effect: run it again"
    )
    release.add_argument("--value", help="with --happened: the step's result as JSON (default null)")
    release.add_argument("--json", action="store_true", help="as JSON, raw values (times in epoch seconds)")
    release.set_defaults(func=cmd_release)

    check = sub.add_parser(
        "check",
        parents=[common],
        help="validate the config, plugins and agents' entries; show timed triggers' next fire times",
    )

    described(
        check,
        "Validate the config, plugins and agents in one pass: every format problem, unknown tools, alert sinks that "
        "cannot be built, and each agent's module imported in a throwaway process (its entry function must exist and "
        "take ctx); then each timed trigger's next three fire times with its zone. Exit 3 with format problems, 1 "
        "with others.",
        ["corral check", "corral check --config ~/.corral/corral.toml --timeout 30s"],
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
    from corral.cli.starter import complete

    everything = parser(argv)
    complete(everything)  # the shell asking for completions: answered, and exits
    args = everything.parse_args(argv)
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
