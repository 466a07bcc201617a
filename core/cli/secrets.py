"""``corral secrets set/list/rm``: the secrets agents are granted, kept out of argv and logs.

``set`` reads the value from stdin when it is not a terminal (``printf %s "$TOKEN" |
corral secrets set NAME``), else prompts without echo; a value is never a command-line
argument, where ``ps`` and shell history would show it. ``list`` shows names, where each
is stored and which agents are granted it, never values.
"""

from __future__ import annotations

import argparse
import getpass
import os
import sys

from corral.cli.common import EXIT_FAILED, EXIT_NOT_FOUND, EXIT_OK, EXIT_USAGE, Exit, described, load, print_json
from corral.secrets import SecretsError, SecretsStore
from corral.secrets.store import NAME as _NAME


def add_commands(sub: argparse._SubParsersAction[argparse.ArgumentParser], common: argparse.ArgumentParser) -> None:
    secrets = sub.add_parser("secrets", parents=[common], help="store, list and remove secrets granted to agents")
    described(
        secrets,
        "Store, list and remove the secrets agents are granted (secrets = [...] in an agent's table). A value is read"
        " from stdin or a prompt, never from the command line, and never shown.",
        [
            'printf %s "$TOKEN" | corral secrets set GITHUB_TOKEN',
            "corral secrets list",
            "corral secrets rm GITHUB_TOKEN",
        ],
    )
    actions = secrets.add_subparsers(dest="secrets_command", metavar="ACTION", required=True, help="set, list or rm")
    set_ = actions.add_parser("set", parents=[common], help="store a secret; the value comes from stdin or a prompt")
    described(
        set_,
        "Store a secret in the OS keyring (if usable) or the 0600 secrets file; the value comes from stdin (trailing "
        "newline dropped) or a prompt without echo.",
        ["corral secrets set GITHUB_TOKEN", 'printf %s "$TOKEN" | corral secrets set GITHUB_TOKEN --backend file'],
    )
    set_.add_argument(
        "name", type=_secret_name, help="secret name; granted agents see it as the environment variable of that name"
    )
    set_.add_argument("--backend", choices=["keyring", "file"], help="where to store it (default: keyring if usable)")
    set_.set_defaults(func=cmd_set)
    list_ = actions.add_parser("list", parents=[common], help="secret names, where they are stored, who is granted")
    described(
        list_,
        "Every secret name, where it is stored, and which agents are granted it (never a value); exit 1 when a "
        "granted secret is stored nowhere.",
        ["corral secrets list", "corral secrets list --json"],
    )
    list_.add_argument("--json", action="store_true", help="as JSON, raw values (times in epoch seconds)")
    list_.set_defaults(func=cmd_list)
    rm = actions.add_parser("rm", parents=[common], help="remove a secret from every writable store")
    described(
        rm, "Remove a secret from every writable store (exit 5 if none held it).", ["corral secrets rm GITHUB_TOKEN"]
    )
    rm.add_argument("name", type=_secret_name, help="the secret's name, as `corral secrets list` shows it")
    rm.set_defaults(func=cmd_rm)


def _secret_name(value: str) -> str:
    """A secret's name, checked before any value is asked for (a bad one is a usage mistake)."""
    if not _NAME.fullmatch(value):
        raise argparse.ArgumentTypeError(
            f"{value!r} is not a secret name; use letters, digits and underscores, not starting with a digit"
        )
    return value


def _store(args: argparse.Namespace) -> tuple[SecretsStore, dict[str, list[str]]]:
    config = load(args)
    config.home.mkdir(parents=True, exist_ok=True, mode=0o700)
    granted: dict[str, list[str]] = {}
    for agent in config.agents.values():
        for name in agent.secrets:
            granted.setdefault(name, []).append(agent.name)
    return SecretsStore.default(config.home, os.environ), granted


def _read_value(name: str) -> str:
    if sys.stdin.isatty():
        value = getpass.getpass(f"value of {name} (not echoed): ")
    else:
        value = sys.stdin.read()
        value = value[:-1] if value.endswith("\n") else value
        value = value[:-1] if value.endswith("\r") else value
    if not value:
        raise Exit(EXIT_USAGE, f"corral: no value given for {name}; pipe it on stdin or type it at the prompt")
    return value


def cmd_set(args: argparse.Namespace) -> int:
    store, _ = _store(args)
    value = _read_value(args.name)
    try:
        where = store.set(args.name, value, backend=args.backend)
    except SecretsError as exc:
        raise Exit(EXIT_FAILED, f"corral: {exc}") from None
    print(f"secret {args.name} stored in {where}; a running daemon uses it from the next run")
    return EXIT_OK


def cmd_list(args: argparse.Namespace) -> int:
    store, granted = _store(args)
    try:
        found = store.list()
    except SecretsError as exc:
        raise Exit(EXIT_FAILED, f"corral: {exc}") from None
    names = sorted(set(found) | set(granted))
    rows = [{"name": n, "stored_in": found.get(n, []), "granted_to": sorted(granted.get(n, []))} for n in names]
    status = EXIT_FAILED if any(not row["stored_in"] for row in rows) else EXIT_OK
    if args.json:
        print_json(rows)
        return status
    if not rows:
        print("no secrets stored or granted")
    for row in rows:
        where = ", ".join(row["stored_in"]) or "MISSING (granted but stored nowhere)"
        agents = ", ".join(row["granted_to"]) or "no agent"
        print(f"{row['name']}: {where}; granted to {agents}")
    return status


def cmd_rm(args: argparse.Namespace) -> int:
    store, granted = _store(args)
    try:
        removed = store.remove(args.name)
    except SecretsError as exc:
        raise Exit(EXIT_FAILED, f"corral: {exc}") from None
    if not removed:
        raise Exit(EXIT_NOT_FOUND, f"corral: no writable store holds a secret named {args.name!r}")
    print(f"secret {args.name} removed from {', '.join(removed)}")
    if granted.get(args.name):
        print(f"warning: still granted to {', '.join(granted[args.name])}; their runs will not start", file=sys.stderr)
    return EXIT_OK
