"""``corral console``: the console's URL with a one-time login token.

The daemon mints the token (the control socket only answers the operator's own user), so
the link works once, for a few minutes; opening it logs that browser in. The console
itself is in :mod:`corral.console`.
"""

from __future__ import annotations

import argparse
import sys

from corral.cli.common import EXIT_OK, EXIT_UNAVAILABLE, Exit, ask, described, load, print_json
from corral.errors import DaemonUnavailable


def add_commands(sub: argparse._SubParsersAction[argparse.ArgumentParser], common: argparse.ArgumentParser) -> None:
    console = sub.add_parser("console", parents=[common], help="the web console's URL, with a one-time login link")
    described(
        console,
        "The daemon's web console on loopback: its URL and a one-time login link (a terminal opens a browser).",
        ["corral console", "corral console --no-open"],
    )
    console.add_argument(
        "--no-open", action="store_true", help="only print the link (a terminal opens a browser otherwise)"
    )
    console.add_argument("--json", action="store_true", help="as JSON, raw values (times in epoch seconds)")
    console.set_defaults(func=cmd_console)


def cmd_console(args: argparse.Namespace) -> int:
    config = load(args)
    try:
        answer = ask(config.socket_path, {"op": "console"}, refused=EXIT_UNAVAILABLE)[-1]
    except DaemonUnavailable:
        raise Exit(EXIT_UNAVAILABLE, "corral: the daemon is not running; `corral up` serves the console") from None
    if args.json:
        print_json({"url": answer["url"], "login": answer["login"]})
        return EXIT_OK
    print(f"console  {answer['url']}")
    print(f"log in   {answer['login']}")
    print("(the login link works once, within 10 minutes)")
    if not args.no_open and sys.stdout.isatty():
        import webbrowser

        webbrowser.open(answer["login"])
    return EXIT_OK
