"""``corral stop [AGENT]``, ``corral start AGENT``, ``corral restart AGENT``: the daemon and
its agents stopped and started as supervisorctl users expect.

``corral stop`` with no agent stops the daemon gracefully through its control socket (as
SIGTERM: in-flight steps finish and are journaled within ``grace_seconds``) and waits for it
to exit. With an agent, it and ``start``/``restart`` act on that agent
(:mod:`corral.daemon.lifecycle`): through the daemon when one runs, else on the store here
(``restart`` then runs the new run in the foreground, as ``corral run`` does).
"""

from __future__ import annotations

import argparse
import sys
import time
from typing import Any

from corral.cli.common import (
    EXIT_INTERRUPTED,
    EXIT_OK,
    EXIT_UNAVAILABLE,
    EXIT_USAGE,
    Exit,
    act_or_here,
    agent_argument,
    agent_named,
    ask,
    command,
    foreground,
    load,
    print_json,
    report_run,
    send_or_foreground,
)
from corral.config import CorralConfig

STOP_WAIT_EXTRA = 30.0
"""How long ``corral stop`` waits for the daemon beyond its ``grace_seconds``."""


def add_commands(sub: Any, common: argparse.ArgumentParser) -> None:
    stop = command(
        sub,
        common,
        "stop",
        "stop the daemon gracefully; with AGENT, stop that agent (triggers off, its runs cancelled)",
        description="Without AGENT: stop the daemon as SIGTERM does (no new runs; in-flight steps finish and are "
        "journaled within grace_seconds, then agents still running are killed and resume at the next start), "
        "and wait until it has exited. With AGENT: its triggers stop firing and its unfinished runs end "
        "cancelled (journals kept), until `corral start AGENT`; it stays stopped across daemon restarts.",
        examples=[
            "corral stop                       # the daemon",
            'corral stop digest --reason "the feed is down"',
            "corral start digest",
        ],
    )
    agent_argument(stop, "agent", nargs="?", help="the agent to stop (none: the daemon)")
    stop.add_argument(
        "--reason", help="with AGENT: why, shown by `corral status` (default: stopped with `corral stop`)"
    )
    stop.add_argument("--json", action="store_true", help="the daemon's answer as JSON")
    stop.set_defaults(func=cmd_stop)

    start = command(
        sub,
        common,
        "start",
        "start a stopped agent again: its triggers fire again",
        description="Lift an agent's stop (or pause, or no-progress slow-down): its triggers fire again. It "
        "starts no run by itself (`corral run AGENT` does, `corral restart AGENT` too).",
        examples=["corral start digest"],
    )
    agent_argument(start, "agent", help="the agent to start")
    start.add_argument("--json", action="store_true", help="what was lifted, as JSON")
    start.set_defaults(func=cmd_start)

    restart = command(
        sub,
        common,
        "restart",
        "cancel an agent's unfinished runs, start it, and run it again now",
        description="Cancel the agent's unfinished runs (journals kept), lift its stop or pause, and start a new "
        "run now with the input of the run it cancelled (else the agent's configured input).",
        examples=["corral restart digest", "corral restart digest --wait"],
    )
    agent_argument(restart, "agent", help="the agent to restart")
    restart.add_argument("--wait", action="store_true", help="wait for the new run to end; exit 1 if it failed")
    restart.add_argument("--json", action="store_true", help="the new run as JSON")
    restart.set_defaults(func=cmd_restart)


def cmd_stop(args: argparse.Namespace) -> int:
    config = load(args)
    if args.agent is None:
        if args.reason is not None:
            raise Exit(EXIT_USAGE, "corral: --reason goes with an agent (`corral stop AGENT --reason ...`)")
        return _stop_daemon(config, args)
    agent_named(config, args.agent)
    from corral.daemon.lifecycle import STOPPED, Lifecycle

    reason = args.reason or STOPPED
    request = {"op": "stop", "agent": args.agent, "reason": reason}
    answer = act_or_here(config, request, lambda engine: Lifecycle(engine).stop(args.agent, reason))
    if args.json:
        print_json(answer)
        return EXIT_OK
    cancelled = [run["id"] for run in answer["cancelled"]]
    print(f"{args.agent} stopped: its triggers are off until `corral start {args.agent}`")
    if cancelled:
        print(f"cancelled its unfinished runs: {', '.join(cancelled)}")
    return EXIT_OK


def cmd_start(args: argparse.Namespace) -> int:
    return lift(args, "start")


def lift(args: argparse.Namespace, verb: str) -> int:
    """``corral start AGENT`` and ``corral resume AGENT``: the same lift of a stop, a pause
    and a slow-down, each saying it in its own words."""
    config = load(args)
    agent_named(config, args.agent)
    from corral.daemon.lifecycle import Lifecycle

    answer = act_or_here(config, {"op": verb, "agent": args.agent}, lambda engine: Lifecycle(engine).start(args.agent))
    if args.json:
        print_json(answer)
    elif answer["was_stopped"] or answer["was_paused"] or answer["was_slowed"]:
        what = "stopped" if answer["was_stopped"] else "paused" if answer["was_paused"] else "slowed down"
        print(f"{args.agent} {'started' if verb == 'start' else 'resumed'} (it was {what}): its triggers fire again")
    else:
        print(f"{args.agent} was not {'stopped' if verb == 'start' else 'paused'}; its triggers fire as configured")
    return EXIT_OK


def cmd_restart(args: argparse.Namespace) -> int:
    config = load(args)
    agent_named(config, args.agent)

    def told(answer: dict[str, Any]) -> None:
        if "cancelled" in answer:  # the first answer, with the queued run
            _restarted(args.agent, answer)

    request = {"op": "restart", "agent": args.agent, "wait": args.wait}
    reply = send_or_foreground(config, request, wait=args.wait, each=told)
    if reply is not None:
        return report_run(reply["run"], args, waited=args.wait)
    from corral.daemon.lifecycle import Lifecycle

    agent = config.agents[args.agent]

    async def start(engine: Any) -> str:
        answer, payload = await Lifecycle(engine).restart(agent.name, agent.input)
        _restarted(agent.name, answer)
        return str((await engine.create_run(agent.name, payload, trigger="restart"))["id"])

    return report_run(foreground(config, start), args, waited=True)


def _restarted(agent: str, answer: dict[str, Any]) -> None:
    """On stderr, so stdout keeps only the run (``--json`` stays parseable)."""
    cancelled = [run["id"] for run in answer.get("cancelled", ())]
    print(f"{agent} restarted" + (f"; cancelled {', '.join(cancelled)}" if cancelled else ""), file=sys.stderr)


def _stop_daemon(config: CorralConfig, args: argparse.Namespace) -> int:
    from corral.errors import DaemonUnavailable
    from corral.store import StoreLock

    try:
        answer = ask(config.socket_path, {"op": "shutdown"}, refused=EXIT_UNAVAILABLE)[-1]
    except DaemonUnavailable as exc:
        holder = StoreLock(config.home).holder()
        if holder is not None:
            raise Exit(EXIT_UNAVAILABLE, f"corral: process {holder} holds {config.home} but: {exc}") from None
        raise Exit(
            EXIT_UNAVAILABLE, f"corral: no daemon is running for {config.home}; there is nothing to stop"
        ) from None
    if args.json:
        print_json(answer)
    else:
        runs = answer["running"]
        print(
            f"daemon (pid {answer['pid']}) stopping: "
            + (f"{runs} runs in flight get up to {answer['grace']:g}s" if runs else "no run in flight"),
            file=sys.stderr,
        )
    patience = float(answer["grace"]) + STOP_WAIT_EXTRA
    deadline = time.monotonic() + patience
    try:
        while StoreLock(config.home).holder() is not None:
            if time.monotonic() > deadline:
                raise Exit(
                    EXIT_UNAVAILABLE,
                    f"corral: the daemon (pid {answer['pid']}) is still stopping after {patience:g}s; see corral.log",
                )
            time.sleep(0.1)
    except KeyboardInterrupt:
        raise Exit(EXIT_INTERRUPTED, "\ncorral: stopped waiting; the daemon goes on stopping") from None
    if not args.json:
        print(f"daemon (pid {answer['pid']}) stopped", file=sys.stderr)
        if answer.get("supervised"):
            print(
                "supervisord starts it again (autorestart); `supervisorctl stop corral` keeps it stopped",
                file=sys.stderr,
            )
    return EXIT_OK
