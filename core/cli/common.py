"""What every ``corral`` command shares: exit codes, argument types, loading the config,
printing JSON, opening the store read-only, asking the daemon, reporting a bug.

Exit codes (the table in docs/operating.md says the same; a test holds them together):

- 0 :data:`EXIT_OK`: success.
- 1 :data:`EXIT_FAILED`: the run ended other than ``succeeded``, or the daemon would not
  start it (agent paused, daemon stopping); ``check``, ``doctor`` or ``secrets list``
  found problems.
- 2 :data:`EXIT_USAGE`: an argument is missing, empty, malformed or out of range, or an
  id matches several runs or approvals (they are listed).
- 3 :data:`EXIT_CONFIG`: invalid config.
- 4 :data:`EXIT_UNAVAILABLE`: daemon or store unavailable (home locked, daemon not
  answering, no store yet).
- 5 :data:`EXIT_NOT_FOUND`: no run, agent, approval or secret matches, or the one named
  cannot take this action in its state (cancel an ended run, release one not on hold).
- 6 :data:`EXIT_INTERNAL`: a bug in corral or a plugin; its traceback is in corral.log.
- 130 :data:`EXIT_INTERRUPTED`: stopped by Ctrl-C (SIGINT), as shells report it: ``run
  --wait`` stopped waiting (the daemon's run goes on) or stopped its foreground run
  (left ``interrupted`` for the next ``corral up``).

Every error is one line on stderr saying what was wrong and what to do.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import signal
import sys
import traceback
from collections.abc import Awaitable, Callable, Sequence
from pathlib import Path
from typing import Any, NoReturn

from corral.config import CorralConfig, find_config, load_config, parse_duration
from corral.daemon import control
from corral.errors import ConfigError, ControlError, DaemonUnavailable, StoreError
from corral.jsoninput import NotStorable, parse_input
from corral.states import RunState

EXIT_OK, EXIT_FAILED, EXIT_USAGE, EXIT_CONFIG, EXIT_UNAVAILABLE, EXIT_NOT_FOUND, EXIT_INTERNAL = 0, 1, 2, 3, 4, 5, 6
EXIT_INTERRUPTED = 128 + 2  # 128 + SIGINT, what a shell shows for a command Ctrl-C stopped


class Exit(Exception):
    """Leave with a message on stderr and an exit code."""

    def __init__(self, code: int, message: str = "") -> None:
        self.code = code
        super().__init__(message)


class Parser(argparse.ArgumentParser):
    """argparse, but a usage error is one line naming the command and its ``--help``
    (subcommands' parsers are of the same class)."""

    def error(self, message: str) -> NoReturn:
        self.exit(EXIT_USAGE, f"{self.prog}: {message}; `{self.prog} --help` shows how\n")


def command(
    sub: Any,
    common: argparse.ArgumentParser,
    name: str,
    summary: str,
    *,
    description: str,
    examples: Sequence[str],
) -> argparse.ArgumentParser:
    """A subcommand whose ``--help`` says what it does (``description``) and shows how
    (``examples``, each a command line, optionally followed by ``  # why``); ``summary`` is
    its line in ``corral --help``."""
    parser: argparse.ArgumentParser = sub.add_parser(
        name,
        parents=[common],
        help=summary,
        description=description,
        epilog="examples:\n" + "\n".join(f"  {example}" for example in examples),
        formatter_class=HelpText,
    )
    return parser


def described(parser: argparse.ArgumentParser, description: str, examples: Sequence[str]) -> argparse.ArgumentParser:
    """Give a parser made elsewhere what :func:`command` gives: a description and examples."""
    parser.description = description
    parser.epilog = "examples:\n" + "\n".join(f"  {example}" for example in examples)
    parser.formatter_class = HelpText
    return parser


class HelpText(argparse.HelpFormatter):
    """argparse's help, but the examples keep their lines as written (the description is
    wrapped to the terminal as usual)."""

    def _fill_text(self, text: str, width: int, indent: str) -> str:
        if text.startswith("examples:"):
            return "".join(indent + line for line in text.splitlines(keepends=True))
        return super()._fill_text(text, width, indent)


def whole(minimum: int, example: str, maximum: int = 10**9) -> Callable[[str], int]:
    """An argparse type: a whole number from ``minimum`` to ``maximum``, e.g. ``example``."""

    def parse(text: str) -> int:
        try:
            number = int(text)
        except ValueError:
            number = minimum - 1
        if not minimum <= number <= maximum:
            least = "0 or more" if minimum == 0 else f"at least {minimum}"
            raise argparse.ArgumentTypeError(
                f"{text!r} is not a whole number of {least} (and at most {maximum}), e.g. {example}"
            )
        return number

    return parse


def duration(example: str) -> Callable[[str], float]:
    """An argparse type: a duration of more than zero, in seconds (``90``) or with units
    (``"2h"``), e.g. ``example``."""

    def parse(text: str) -> float:
        try:
            seconds = float(text) if text.replace(".", "", 1).isdigit() else parse_duration(text)
        except ValueError as exc:
            raise argparse.ArgumentTypeError(f"{exc}; e.g. {example}") from None
        if seconds <= 0:
            raise argparse.ArgumentTypeError(f"must be more than zero, e.g. {example}")
        return seconds

    return parse


def json_argument(text: str, flag: str, example: str) -> Any:
    """``text`` parsed as JSON for option ``flag``; a usage error if it is not JSON the
    store can keep (text with a lone surrogate, nesting past Python's recursion limit)."""
    try:
        return parse_input(text)
    except NotStorable as exc:
        raise Exit(
            EXIT_USAGE, f"corral: {flag} holds a value corral cannot store ({exc}); e.g. {flag} {example}"
        ) from None
    except ValueError as exc:
        raise Exit(EXIT_USAGE, f"corral: {flag} is not valid JSON ({exc}); quote it, e.g. {flag} {example}") from None


def agent_name(value: str) -> str:
    """An agent named on the command line: empty is a usage mistake (exit 2, as for an empty
    run id), not a search for an agent called ''."""
    if not value.strip():
        raise argparse.ArgumentTypeError("an agent name cannot be empty; `corral status` lists the agents")
    return value


def not_blank(what: str, fix: str) -> Callable[[str], str]:
    """An argparse type for text that must say something (``--reason``, ``--event``): blank
    is a usage mistake (exit 2) with ``fix``, not a value that matches or means nothing."""

    def parse(value: str) -> str:
        if not value.strip():
            raise argparse.ArgumentTypeError(f"{what} cannot be empty; {fix}")
        return value

    return parse


def complete_agents(prefix: str, parsed_args: argparse.Namespace, **_: Any) -> list[str]:
    """Shell completion (argcomplete): the configured agents' names."""
    try:
        config = load_config(find_config(getattr(parsed_args, "config", None)))
    except Exception:  # noqa: BLE001 - no completions is the answer to a config that does not load
        return []
    return [name for name in sorted(config.agents) if name.startswith(prefix)]


def agent_argument(parser: argparse.ArgumentParser, *flags: str, **options: Any) -> None:
    """Add an argument naming an agent: checked not empty, completed from the config."""
    action = parser.add_argument(*flags, type=agent_name, **options)
    action.completer = complete_agents  # type: ignore[attr-defined]


def load(args: argparse.Namespace) -> CorralConfig:
    try:
        return load_config(find_config(args.config))
    except ConfigError as exc:
        raise Exit(EXIT_CONFIG, f"corral: invalid config:\n{exc}") from None


def print_json(value: Any) -> None:
    """Readable JSON whose controls a terminal would act on (bidi overrides included) are escaped."""
    from corral.observe.logview import printable_json

    print(printable_json(json.dumps(value, indent=2, default=str, ensure_ascii=False)))


def reader(config: CorralConfig) -> Any:
    from corral.store import Records, Store

    try:
        store = Store.open(config.home / "store", readonly=True)
    except StoreError as exc:
        raise Exit(EXIT_UNAVAILABLE, f"corral: {exc}") from None
    return store, Records(store.dbs)


def ask(
    path: Path,
    request: dict[str, Any],
    *,
    refused: int,
    timeout: float | None = 10.0,
    each: Callable[[dict[str, Any]], None] | None = None,
) -> list[dict[str, Any]]:
    """Every answer of the daemon at ``path`` to ``request``, each also given to ``each``
    as it arrives. A refusal exits ``refused`` with the daemon's reason
    (:data:`EXIT_INTERNAL` when the daemon failed on it); raises DaemonUnavailable when
    nobody answers."""
    answers = []
    try:
        for answer in control.exchange(path, request, timeout):
            if not answer.get("ok", False):
                code = EXIT_INTERNAL if answer.get("internal") else refused
                raise Exit(code, f"corral: {answer.get('error') or 'the daemon refused the request'}")
            answers.append(answer)
            if each is not None:
                each(answer)
    except DaemonUnavailable:
        raise
    except ControlError as exc:
        raise Exit(EXIT_UNAVAILABLE, f"corral: {exc}") from None
    if not answers:
        raise Exit(EXIT_INTERNAL, "corral: the daemon closed the connection without an answer; see its log, corral.log")
    return answers


def send_or_foreground(
    config: CorralConfig,
    request: dict[str, Any],
    wait: bool,
    *,
    refused: int = EXIT_FAILED,
    each: Callable[[dict[str, Any]], None] | None = None,
) -> dict[str, Any] | None:
    """The daemon's last answer (each one also given to ``each`` as it arrives); None when
    no daemon holds the home (the caller runs it here). A refusal exits ``refused`` with
    the daemon's reason.

    With ``wait``, the run's id goes to stderr as soon as the daemon has queued it, and
    Ctrl-C stops the waiting, not the run (exit :data:`EXIT_INTERRUPTED`)."""
    queued: list[str] = []

    def announce(answer: dict[str, Any]) -> None:
        if each is not None:
            each(answer)
        if wait and not queued and isinstance(answer.get("run"), dict):
            queued.append(answer["run"]["id"])
            print(f"run {queued[0]} queued; waiting (Ctrl-C stops waiting, the run goes on)", file=sys.stderr)

    try:
        return ask(config.socket_path, request, refused=refused, timeout=None if wait else 10, each=announce)[-1]
    except DaemonUnavailable as exc:
        from corral.store import StoreLock

        holder = StoreLock(config.home).holder()
        if holder is not None:
            raise Exit(EXIT_UNAVAILABLE, f"corral: the daemon (pid {holder}) holds {config.home} but: {exc}") from None
        return None
    except KeyboardInterrupt:
        if not queued:
            raise
        run_id = queued[0]
        raise Exit(
            EXIT_INTERRUPTED,
            f"\ncorral: stopped waiting; run {run_id} goes on in the daemon: "
            f"`corral trace {run_id}` shows its steps, `corral logs --run {run_id}` its log",
        ) from None


def act(config: CorralConfig, request: dict[str, Any], wait: bool = False) -> dict[str, Any] | None:
    """:func:`send_or_foreground` for an op on a named run, agent or approval: the daemon
    refuses one that does not exist or cannot be acted on, which exits 5 with its reason."""
    return send_or_foreground(config, request, wait, refused=EXIT_NOT_FOUND)


def agent_named(config: CorralConfig, agent: str) -> None:
    """Exit 5 naming the configured agents unless ``agent`` is one."""
    if agent not in config.agents:
        known = ", ".join(sorted(config.agents)) or "none"
        raise Exit(EXIT_NOT_FOUND, f"corral: no agent named {agent!r} in {config.path}; agents: {known}")


def act_or_here(config: CorralConfig, request: dict[str, Any], offline: Callable[[Any], Awaitable[Any]]) -> Any:
    """The daemon's answer to ``request`` (:func:`act`), or with no daemon ``offline(engine)``
    run here against the store (the daemon reads what it changed when it starts)."""
    reply = act(config, request)
    if reply is not None:
        return reply
    from corral.daemon.host import host

    async def here(engine: Any) -> Any:
        return await offline(engine)

    with host(config, echo=None) as composed:
        return asyncio.run(here(composed.engine))


def foreground(config: CorralConfig, start: Any) -> dict[str, Any]:
    """No daemon: drive one run here, through the same engine, then return its end state.

    Ctrl-C (SIGINT) or SIGTERM stops the run as SIGTERM stops the daemon's (:class:`_Stop`);
    a run left unfinished so exits :data:`EXIT_INTERRUPTED`, for the next ``corral up`` to resume.
    """
    from corral.daemon.host import host

    stop = _Stop()
    with host(config, echo=None) as composed:
        engine = composed.engine
        engine.processes.prepare(config.home / "agents")

        async def go() -> dict[str, Any]:
            stop.install(engine, config.grace_seconds)
            stop.run_id = run_id = await start(engine)
            if stop.signals:  # before it started: it stays queued
                queued: dict[str, Any] | None = await engine.writer.run(lambda txn: engine.records.get_run(txn, run_id))
                assert queued is not None, "a run just stored"
                return queued
            print(
                f"run {run_id} running in the foreground (no daemon running; Ctrl-C stops it, "
                "the next `corral up` resumes it)",
                file=sys.stderr,
            )
            try:
                async with composed.alerting.running(daemon=False):  # its alerts go out before it exits
                    return await engine.execute(run_id)
            finally:
                stop.close()
                await engine.models.close()

        run = asyncio.run(go())
    if stop.signals and RunState(run["state"]) in (RunState.INTERRUPTED, RunState.QUEUED):
        raise Exit(
            EXIT_INTERRUPTED,
            f"corral: run {run['id']} {run['state']}; the next `corral up` resumes it "
            f"(`corral trace {run['id']}` shows where it stopped)",
        )
    return run


class _Stop:
    """Ctrl-C (SIGINT) or SIGTERM during a foreground run, handled as the daemon handles
    SIGTERM (:mod:`corral.daemon.root`): the engine drains, so the run's next step ends the
    attempt ``interrupted`` with its journal intact; agent processes still alive after
    ``grace_seconds``, or at a second signal, are killed (the run ends ``interrupted`` too)."""

    def __init__(self) -> None:
        self.signals = 0
        self.run_id: str | None = None
        self._engine: Any = None
        self._grace = 0.0
        self._timer: asyncio.TimerHandle | None = None

    def install(self, engine: Any, grace: float) -> None:
        self._engine, self._grace = engine, grace
        loop = asyncio.get_running_loop()
        for sig in (signal.SIGINT, signal.SIGTERM):
            loop.add_signal_handler(sig, self._on_signal, sig)

    def _on_signal(self, sig: int) -> None:
        self.signals += 1
        self._engine.log.info("signal received", signal=signal.Signals(sig).name, count=self.signals)
        self._engine.draining = True
        if self.signals > 1:
            self._kill("second signal")
            return
        what = f"run {self.run_id}" if self.run_id else "the run"
        print(
            f"\ncorral: stopping {what}: it stops at its next step, or is killed in {self._grace:g}s "
            "(Ctrl-C again kills it now)",
            file=sys.stderr,
        )
        reason = f"grace period of {self._grace:g}s over"
        self._timer = asyncio.get_running_loop().call_later(self._grace, self._kill, reason)

    def _kill(self, why: str) -> None:
        self._engine.log.warning("killing agent processes", reason=why)
        self._engine.processes.kill_all()

    def close(self) -> None:
        if self._timer is not None:
            self._timer.cancel()


def report_run(run: dict[str, Any], args: argparse.Namespace, *, waited: bool, lines: bool = False) -> int:
    """Print how the run stands (or ended) and return the exit code; ``lines``: with
    ``--json``, the run as one JSON line (after the log lines ``--follow`` printed)."""
    from corral.observe.logview import printable, printable_json

    if getattr(args, "json", False) and lines:
        print(printable_json(json.dumps(run, default=str, ensure_ascii=False)))
    elif getattr(args, "json", False):
        print_json(run)
    elif not waited:
        print(f"run {run['id']} queued for {run['agent']}")
    else:
        print(f"run {run['id']} {run['state']}")
        if run["state"] == "succeeded":
            print(printable_json(json.dumps(run.get("result"), default=str, ensure_ascii=False)))
        elif run.get("error"):
            from corral.cli.views import failure_lines

            for line in failure_lines(run["error"]):
                print(printable(line), file=sys.stderr)
    if not waited:
        return EXIT_OK
    return EXIT_OK if run["state"] == "succeeded" else EXIT_FAILED


def internal_error(exc: Exception, args: argparse.Namespace, argv: Sequence[str]) -> str:
    """Log a bug's traceback to corral.log and return the one line for the user; if there
    is no log to write to, the traceback goes to stderr after all. The log line and the one
    line hold the config's secrets as ``[redacted:NAME]``, as the daemon's own lines do."""
    from corral.config import default_home
    from corral.observe.logs import DAEMON_LOG, LogFiles
    from corral.secrets import Redaction, secrets_in

    redaction = Redaction()
    try:
        config = load(args)
    except Exception:  # no valid config (or a bug in loading it): the default home's log
        directory = default_home() / "logs"
    else:
        directory = config.log_dir
        redaction.add(secrets_in(config))
    what = redaction.redact(f"{type(exc).__name__}: {exc}")
    try:
        with LogFiles(directory, max_bytes=0, processors=[redaction]) as logs:  # never rotates: the daemon may own it
            logs.logger(None).error("command failed", command=list(argv), exc_info=exc)
    except Exception as failure:
        traceback.print_exception(exc)
        return f"corral: internal error ({what}), and its log could not be written ({failure}); please report it"
    return f"corral: internal error ({what}); please report it with its traceback from {directory / DAEMON_LOG}"
