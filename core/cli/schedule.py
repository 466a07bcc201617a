"""``corral pause``, ``resume``, ``cancel`` and ``reload``: acting on the schedule.

Each asks the daemon over the control socket. With no daemon running, ``pause``,
``resume`` and ``cancel`` act on the store directly (the daemon reads them when it
starts); ``reload`` needs a daemon.
"""

from __future__ import annotations

import argparse
import datetime as dt
import os
import time
import tomllib
from pathlib import Path
from typing import Any

from corral.cli import ids
from corral.cli.common import (
    EXIT_CONFIG,
    EXIT_NOT_FOUND,
    EXIT_OK,
    EXIT_UNAVAILABLE,
    EXIT_USAGE,
    Exit,
    act_or_here,
    agent_argument,
    agent_named,
    ask,
    described,
    load,
    print_json,
)
from corral.config import default_home, find_config, parse_duration


def add_commands(sub: argparse._SubParsersAction[argparse.ArgumentParser], common: argparse.ArgumentParser) -> None:
    pause = sub.add_parser("pause", parents=[common], help="stop an agent's triggers from starting runs")
    described(
        pause,
        "Stop an agent's triggers from starting runs: their fires are recorded as skipped, queued runs wait, a "
        "running run goes on; until `corral resume`, or by itself after --for or at --until. (`corral stop AGENT` "
        "also cancels its runs.)",
        [
            'corral pause digest --for 2h --reason "feed maintenance"',
            "corral pause digest --until 2027-01-04T07:00",
            "corral resume digest",
        ],
    )
    agent_argument(pause, "agent", help="the agent to pause")
    pause.add_argument("--reason", help="why, shown by `corral status` (default: paused with `corral pause`)")
    lasting = pause.add_mutually_exclusive_group()
    lasting.add_argument("--for", dest="duration", help='lift the pause by itself after this long, e.g. "2h"')
    lasting.add_argument("--until", help="lift the pause by itself at this time, e.g. 2027-01-04T07:00:00+01:00")
    pause.add_argument("--json", action="store_true", help="as JSON, raw values (times in epoch seconds)")
    pause.set_defaults(func=cmd_pause)

    resume = sub.add_parser("resume", parents=[common], help="lift an agent's pause (and a no-progress slow-down)")

    described(
        resume,
        "Lift an agent's pause (or stop) and a no-progress slow-down: its triggers fire again.",
        ["corral resume digest"],
    )
    agent_argument(resume, "agent", help="the agent to resume")
    resume.add_argument("--json", action="store_true", help="as JSON, raw values (times in epoch seconds)")
    resume.set_defaults(func=cmd_resume)

    cancel = sub.add_parser("cancel", parents=[common], help="end a run as cancelled, killing its processes")

    described(
        cancel,
        "End an unfinished run as cancelled, its journal kept: a running run's whole process tree is killed, a "
        "queued, interrupted or held one ends at once.",
        ["corral cancel 01a2b3c4", 'corral cancel "$RUN" --json'],
    )
    cancel.add_argument("run", help="run id (or a unique prefix or suffix of it)")
    cancel.add_argument("--json", action="store_true", help="as JSON, raw values (times in epoch seconds)")
    cancel.set_defaults(func=cmd_cancel)

    reload = sub.add_parser("reload", parents=[common], help="make the daemon read its config again (as SIGHUP)")

    described(
        reload,
        "Make the daemon read its config file again, as SIGHUP does: new and changed agents and triggers take effect,"
        " removed ones stop; an invalid file is refused (exit 3) and the old config stays in force.",
        ["corral reload", "corral reload --json"],
    )
    reload.add_argument("--json", action="store_true", help="as JSON, raw values (times in epoch seconds)")
    reload.set_defaults(func=cmd_reload)


def _until(args: argparse.Namespace) -> float | None:
    """When the pause lifts by itself: a moment ahead, and one a date can show."""
    now = time.time()
    if args.duration is not None:
        try:
            seconds = parse_duration(args.duration)
        except ValueError as exc:
            raise Exit(EXIT_USAGE, f"corral: --for: {exc}") from None
        if seconds <= 0:
            raise Exit(EXIT_USAGE, f"corral: --for {args.duration}: a pause must last more than zero, e.g. --for 2h")
        given, until = f"--for {args.duration}", now + seconds
    elif args.until is not None:
        try:
            moment = dt.datetime.fromisoformat(args.until)
        except ValueError:
            raise Exit(
                EXIT_USAGE, f"corral: --until {args.until!r} is not a date and time, e.g. 2027-01-04T07:00"
            ) from None
        given, until = f"--until {args.until}", (moment if moment.tzinfo else moment.astimezone()).timestamp()
    else:
        return None
    try:
        shown = dt.datetime.fromtimestamp(until).astimezone()
    except (OverflowError, ValueError, OSError):
        raise Exit(
            EXIT_USAGE, f"corral: {given} is too far ahead; leave it out to pause until `corral resume`"
        ) from None
    if until <= now:
        raise Exit(
            EXIT_USAGE,
            f"corral: {given} ({shown:%Y-%m-%d %H:%M:%S %Z}) is in the past; give a time after now "
            f"({dt.datetime.now().astimezone():%Y-%m-%d %H:%M:%S %Z})",
        )
    return until


def cmd_pause(args: argparse.Namespace) -> int:
    config = load(args)
    agent_named(config, args.agent)
    until = _until(args)
    reason = args.reason or "paused with `corral pause`"
    request = {"op": "pause", "agent": args.agent, "reason": reason, "until": until}

    async def offline(engine: Any) -> dict[str, Any]:
        try:
            await engine.pause_agent(args.agent, reason, until)
        except ValueError as exc:
            raise Exit(EXIT_USAGE, f"corral: {exc}") from None
        return {"agent": args.agent, "pause": engine.paused(args.agent)}

    reply = act_or_here(config, request, offline)
    if args.json:
        print_json({"agent": args.agent, "pause": reply["pause"]})
    else:
        from corral.cli import views

        lifts = f" until {views.when(until)}" if until else "; `corral resume` lifts it"
        print(f"{args.agent} paused{lifts}")
    return EXIT_OK


def cmd_resume(args: argparse.Namespace) -> int:
    from corral.cli.lifecycle import lift

    return lift(args, "resume")


def cmd_cancel(args: argparse.Namespace) -> int:
    config = load(args)
    run_id = ids.run_id(config, args.run)

    async def offline(engine: Any) -> dict[str, Any]:
        try:
            return {"run": await engine.cancel(run_id)}
        except KeyError:
            raise Exit(EXIT_NOT_FOUND, f"corral: no run {run_id}; `corral runs` lists them") from None
        except ValueError as exc:
            raise Exit(EXIT_NOT_FOUND, f"corral: {exc}") from None

    run = act_or_here(config, {"op": "cancel", "run": run_id}, offline)["run"]
    if args.json:
        print_json(run)
    elif run["state"] == "cancelled":
        print(f"run {run['id']} cancelled")
    else:
        print(f"run {run['id']} is being cancelled: its processes are killed and it ends as cancelled")
    return EXIT_OK


def _socket(args: argparse.Namespace) -> Path:
    """The daemon's socket, found even when the config file is now invalid (that is when
    ``reload`` must reach the daemon, to be told so and keep the old config)."""
    try:
        return load(args).socket_path
    except Exit:
        path = find_config(args.config)
    if os.environ.get("CORRAL_HOME"):
        return default_home() / "corral.sock"
    try:
        home = tomllib.loads(path.read_text()).get("corral", {}).get("home")
    except (OSError, UnicodeDecodeError, tomllib.TOMLDecodeError, AttributeError):
        home = None
    if isinstance(home, str) and home:
        return path.resolve().parent / Path(home).expanduser() / "corral.sock"
    return default_home() / "corral.sock"


def cmd_reload(args: argparse.Namespace) -> int:
    from corral.errors import DaemonUnavailable

    try:
        reply = ask(_socket(args), {"op": "reload"}, refused=EXIT_CONFIG, timeout=60)[-1]
    except DaemonUnavailable as exc:
        raise Exit(EXIT_UNAVAILABLE, f"corral: {exc}; there is no daemon to reload") from None
    if args.json:
        print_json(reply["changes"])
        return EXIT_OK
    changes = reply["changes"]
    summary = ", ".join(f"{len(changes[k])} {k}" for k in ("added", "changed", "removed"))
    models = changes.get("models") or []
    print(f"config reloaded: schedules {summary}; models changed: {', '.join(models) or 'none'}")
    return EXIT_OK
