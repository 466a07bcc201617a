"""``corral state AGENT``: an agent's ``ctx.state``, each key's size and the total against
``limits.state_mb``; ``--delete KEY`` removes a key (through the daemon when one runs, else
on the store here, as ``corral stop AGENT`` does). Reading works with the daemon down.
"""

from __future__ import annotations

import argparse
import json
from typing import Any

from corral.cli.common import (
    EXIT_NOT_FOUND,
    EXIT_OK,
    Exit,
    act_or_here,
    agent_argument,
    agent_named,
    command,
    load,
    not_blank,
    print_json,
    reader,
)
from corral.config import CorralConfig

SHOWN = 120
"""Characters of a value ``corral state`` prints (``--json`` prints values whole)."""


def add_commands(sub: Any, common: argparse.ArgumentParser) -> None:
    state = command(
        sub,
        common,
        "state",
        "an agent's ctx.state: its keys, their sizes, the total; --delete KEY removes one",
        description="An agent's state (what ctx.state and the door's /corral/v1/state hold across runs): each "
        "key with its size and the start of its value, and the total against limits.state_mb. --delete KEY "
        "removes a key, through the daemon when it runs, else on the store here; a running run keeps the state "
        "it first saw. Reading works with the daemon down.",
        examples=["corral state digest", "corral state digest --json", "corral state digest --delete cache"],
    )
    agent_argument(state, "agent", help="the agent whose state to show")
    state.add_argument(
        "--delete",
        metavar="KEY",
        type=not_blank("--delete", "name the key to delete, e.g. --delete cache"),
        help="delete this key of the agent's state",
    )
    state.add_argument("--json", action="store_true", help="as JSON: keys, values, sizes and the total")
    state.set_defaults(func=cmd_state)


def cmd_state(args: argparse.Namespace) -> int:
    config = load(args)
    agent_named(config, args.agent)
    if args.delete is not None:
        return _delete(config, args)
    shown = _read(config, args.agent)
    if args.json:
        print_json(shown)
        return EXIT_OK
    limit = config.agents[args.agent].limits.state_mb
    of = f" of {limit} MiB (limits.state_mb)" if limit is not None else " (limits.state_mb: none)"
    print(f"{args.agent}: {len(shown['keys'])} keys, {_size(shown['bytes'])}{of}")
    for key in shown["keys"]:
        text = json.dumps(shown["state"][key], ensure_ascii=False)
        print(f"  {key}  {_size(shown['sizes'][key])}  {text[:SHOWN]}{'...' if len(text) > SHOWN else ''}")
    return EXIT_OK


def _read(config: CorralConfig, agent: str) -> dict[str, Any]:
    """The agent's state as the store holds it now, with each key's size and the total."""
    from corral.packing import pack
    from corral.store import schema

    if not (config.home / "store").exists():
        return {"agent": agent, "state": {}, "sizes": {}, "keys": [], "bytes": 0}
    store, records = reader(config)
    try:
        with store.read() as txn:
            state = records.agent_state(txn, agent)
            total = records.state_bytes(txn, agent)
    finally:
        store.close()
    sizes = {key: schema.state_entry_size(key.encode(), pack(value)) for key, value in state.items()}
    keys = sorted(state, key=lambda k: (-sizes[k], k))
    return {"agent": agent, "state": state, "sizes": sizes, "keys": keys, "bytes": total}


def _delete(config: CorralConfig, args: argparse.Namespace) -> int:
    request = {"op": "state", "agent": args.agent, "delete": args.delete}
    answer = act_or_here(config, request, lambda engine: engine.delete_state(args.agent, args.delete))
    if not answer.get("deleted"):
        raise Exit(
            EXIT_NOT_FOUND, f"corral: agent {args.agent} has no state key {args.delete!r} (`corral state {args.agent}`)"
        )
    if args.json:
        print_json(answer)
        return EXIT_OK
    print(f"deleted {args.agent}'s state key {args.delete!r}; its state now holds {_size(answer['bytes'])}")
    return EXIT_OK


def _size(size: int) -> str:
    return f"{size} B" if size < 1024 else f"{size / 1024:.1f} KiB" if size < 2**20 else f"{size / 2**20:.1f} MiB"
