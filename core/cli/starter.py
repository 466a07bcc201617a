"""``corral init [DIR]`` and ``corral completion SHELL``: a first config and agent, and tab
completion for bash, zsh and fish.

``init`` writes a commented ``corral.toml`` and one agent, ready for ``corral up``: with no
DIR into the corral home (``$CORRAL_HOME``, else ``~/.corral``), where ``corral up`` finds the
config by itself. ``completion`` prints the shell code of argcomplete (a dependency for
this: it completes from the same argparse parser, plugins' commands included).
"""

from __future__ import annotations

import argparse
import os
from pathlib import Path
from typing import Any

from corral.cli.common import EXIT_OK, EXIT_USAGE, Exit, command
from corral.config import default_home

SHELLS = ("bash", "zsh", "fish")

CONFIG = """\
# corral's config (docs/operating.md lists every key). Check it with `corral check`,
# start the daemon with `corral up`, and watch it with `corral status` and `corral logs -f`.

[corral]
# home = "~/.corral"      # where state lives (store, logs, workdirs); $CORRAL_HOME overrides it
max_concurrent_runs = 4   # runs executing at once, across agents
grace_seconds = 20        # on SIGTERM or `corral stop`: how long in-flight steps get to finish

[limits]                  # every agent's limits; [agents.NAME.limits] overrides them
memory_mb = 512
wall_seconds = "5m"

# One agent: agents/hello.py's run(ctx), every hour (`corral run hello --wait` runs it now).
[agents.hello]
code = "agents"           # the folder its module is imported from, relative to this file
entry = "hello:run"       # module:function
every = "1h"              # or cron = "0 7 * * *", and more triggers: docs/scheduling.md
tools = ["append_line"]   # only the tools granted exist for the agent

# A model for ctx.model(...): an API key in corral's environment (ANTHROPIC_API_KEY or
# OPENAI_API_KEY) or a local Ollama is found by itself; add models = ["default"] to an
# agent to let it call it, and a budget (docs/models.md).
# [models.default]
# provider = "auto"
"""

AGENT = '''\
"""A first agent. corral calls run(ctx) each time a trigger fires: every tool call and
ctx.state change is journaled, so a crash resumes here without doing anything twice."""


def run(ctx):
    count = ctx.state.get("count", 0) + 1  # per-agent memory, kept between runs
    ctx.state["count"] = count
    ctx.tool("append_line", path="hello.txt", line=f"hello #{count}")  # in the agent's own workdir
    ctx.log.info("said hello", count=count)
    return {"count": count}
'''


def add_commands(sub: Any, common: argparse.ArgumentParser) -> None:
    init = command(
        sub,
        common,
        "init",
        "write a commented starter config and one example agent, ready for `corral up`",
        description="Write DIR/corral.toml (commented) and DIR/agents/hello.py, an agent that runs every hour. "
        "With no DIR, into the corral home ($CORRAL_HOME, else ~/.corral), where `corral up` finds the config "
        "by itself. Nothing is overwritten.",
        examples=["corral init && corral up", "corral init ~/agents && corral up --config ~/agents/corral.toml"],
    )
    init.add_argument("dir", nargs="?", help="the folder to write into (default: the corral home)")
    init.set_defaults(func=cmd_init)

    completion = command(
        sub,
        common,
        "completion",
        "print the shell code that completes corral's commands and options",
        description="Print the code that makes the shell complete corral's commands, options and choices "
        "(argcomplete's); load it in the shell's startup file.",
        examples=[
            """echo 'eval "$(corral completion bash)"' >> ~/.bashrc""",
            """echo 'eval "$(corral completion zsh)"' >> ~/.zshrc""",
            "corral completion fish > ~/.config/fish/completions/corral.fish",
        ],
    )
    completion.add_argument("shell", choices=SHELLS, help="the shell: bash, zsh or fish")
    completion.set_defaults(func=cmd_completion)


def cmd_init(args: argparse.Namespace) -> int:
    folder = Path(args.dir).expanduser() if args.dir else default_home()
    if args.dir is not None and not args.dir.strip():
        raise Exit(EXIT_USAGE, "corral: the folder is empty; give one, or none for the corral home")
    files = {folder / "corral.toml": CONFIG, folder / "agents" / "hello.py": AGENT}
    try:
        there = [str(path) for path in files if path.exists()]
    except OSError as exc:  # a name too long for the file system, say
        raise Exit(EXIT_USAGE, f"corral: cannot use {str(folder)[:80]!r} as a folder: {exc.strerror or exc}") from None
    if there:
        raise Exit(
            EXIT_USAGE, f"corral: {', '.join(there)} already there; nothing written (remove it, or give another DIR)"
        )
    try:
        (folder / "agents").mkdir(parents=True, exist_ok=True)
        for path, text in files.items():
            path.write_text(text)
    except OSError as exc:
        raise Exit(EXIT_USAGE, f"corral: cannot write into {folder}: {exc.strerror or exc}") from None
    config = folder / "corral.toml"
    start = (
        "corral up"
        if config.resolve() == (default_home() / "corral.toml").resolve()
        else f"corral up --config {config}"
    )
    print(f"wrote {config} and {folder / 'agents' / 'hello.py'}")
    print(f"check it: {start.replace('up', 'check', 1)}\nstart it: {start}")
    return EXIT_OK


def cmd_completion(args: argparse.Namespace) -> int:
    import argcomplete

    print(argcomplete.shellcode(["corral"], shell=args.shell))
    return EXIT_OK


def complete(parser: argparse.ArgumentParser) -> None:
    """Answer the shell's completion request, if this is one (argcomplete exits then)."""
    if "_ARGCOMPLETE" in os.environ:
        import argcomplete

        argcomplete.autocomplete(parser)
