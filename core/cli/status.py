"""``corral status``: the daemon, each agent's state and schedule, unfinished runs, the store.

Read from the store read-only, so it works with the daemon down: a run the store holds as
``running`` while no process holds the home is shown ``interrupted (daemon not running)``.
"""

from __future__ import annotations

import argparse
import time
from typing import Any

from corral.cli.common import EXIT_OK, command, load, print_json, reader
from corral.run.budget import spent_today


def add_commands(sub: Any, common: argparse.ArgumentParser) -> None:
    status = command(
        sub,
        common,
        "status",
        "daemon, agents, unfinished runs, store size",
        description="The daemon (running or not, its pid), the home and the store's size; per agent its state "
        "(idle, running, queued, paused, stopped), triggers, next fire time, last run and what it spent today; "
        "pauses; circuit breakers that are open or half-open (models, tool downstreams, MCP servers); "
        "unfinished runs. Works with the daemon down.",
        examples=["corral status", "corral status --json | jq .agents"],
    )
    status.add_argument("--json", action="store_true", help="the same as JSON, times as epoch seconds")
    status.set_defaults(func=cmd_status)


def cmd_status(args: argparse.Namespace) -> int:
    from corral.breaker import downstream_label
    from corral.cli import views
    from corral.config import zone_named
    from corral.run.downstreams import open_breakers
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
        breakers = open_breakers(store, txn)
    holder = StoreLock(config.home).holder()  # after the read: runs it shows running were not left by a dead one
    if holder is None:
        agents = {name: views.unheld(last) for name, last in agents.items()}
        active = [views.unheld(run) for run in active]
        for info in schedules.values():
            if info["state"] == "running":
                info["state"] = "interrupted"
        breakers = {}  # a daemon's breakers live and die with it: the next one starts them closed
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
        "breakers": breakers,
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
                views.when_in(schedules[name]["next_fire"], zone_named(schedules[name]["next_zone"]))
                if schedules[name]["next_fire"]
                else "-",
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
        pause = info["pause"]
        if pause and pause.get("stopped"):
            since = views.when(pause["since"])
            print(f"{name} stopped since {since}; `corral start {name}` starts it: {pause['reason']}")
        elif pause:
            lifts = f", until {views.when(pause['until'])}" if pause["until"] else "; `corral resume` lifts it"
            print(f"{name} paused since {views.when(pause['since'])}{lifts}: {pause['reason']}")
    if breakers:
        print()
        for name, breaker in sorted(breakers.items()):
            print(
                f"circuit breaker of {downstream_label(name)} {breaker['new'].replace('_', '-')}: {breaker['reason']}"
            )
    if today.get(""):
        print(f"\nmodel spend today, all agents: {views.spent(today[''])}")
    if active:
        print()
        print("unfinished runs:")
        print(views.runs_table(active))
    return EXIT_OK
