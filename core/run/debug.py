"""``corral replay RUN --pdb``: the replay in this process, under the debugger.

The agent's code runs here, unsandboxed (it is the operator's own terminal and code), with
the agent's environment and granted secrets and a fresh workdir, and with its ``ctx``
answered from the run's journal by the same rules as a sandboxed replay
(:class:`corral.run.replay.Judge`). Where the replay ends in the code (its own exception,
or the request where it diverged from the journal), :mod:`pdb` opens on that frame.

The run's door is served here too, on this host's loopback, answered from the journal like
``ctx``: an agent written with the openai or anthropic SDK (or a framework on them), or
using its tools over MCP, replays as it runs. Where the replay stops at one of its
requests, the door answers 409 naming why (a tool call, an error result); the SDK raises
that in the agent's code, and the debugger opens on the agent's line that made the request.
"""

from __future__ import annotations

import os
import pdb
import secrets
import sys
from collections import deque
from collections.abc import Callable, Iterator, Mapping
from contextlib import contextmanager
from pathlib import Path
from types import TracebackType
from typing import TYPE_CHECKING, Any

from corral.errors import ToolCallError
from corral.run.outcome import Outcome
from corral.run.replay import Judge, ReplayReport, shown
from corral.states import RunState
from corral.store import conversations
from corral.wire import fingerprint

if TYPE_CHECKING:
    from corral.sandbox.runtime import Context


class JournalChannel:
    """The wire's child end, answered in this process from the run's journal (its entries
    as stored, by seq: one is expanded only where the judge shows its request)."""

    def __init__(self, journal: Mapping[int, dict[str, Any]], judge: Judge) -> None:
        self._journal = journal
        self._judge = judge
        self._answers: deque[dict[str, Any]] = deque()
        self._stopped: dict[str, Any] | None = None
        """The abort that ended the replay: every later request gets it again (code that
        caught the door's 409 and asked on must not be judged past the divergence)."""

    def send(self, message: dict[str, Any]) -> None:
        if message["t"] == "log":
            fields = " ".join(f"{key}={value!r}" for key, value in message["fields"].items())
            print(f"[{message['level']}] {message['event']} {fields}".rstrip(), file=sys.stderr)
        elif message["t"] == "step":
            if self._stopped is not None:
                self._answers.append(self._stopped)
                return
            seq = message["seq"]
            args = self._judge.redact(message["args"])
            entry = self._journal.get(seq)
            if shown(entry, fingerprint(message["kind"], message["name"], args)):
                entry = conversations.whole(self._journal, seq)
            answer = self._judge.answer(seq, message["kind"], message["name"], args, entry)
            if self._judge.over:
                self._stopped = answer
            self._answers.append(answer)

    @property
    def stopped(self) -> str:
        """Why the replay stopped ("" while it goes on)."""
        return str(self._stopped["reason"]) if self._stopped is not None else ""

    def recv(self) -> dict[str, Any]:
        return self._answers.popleft()


def replay_here(
    run: dict[str, Any],
    welcome: dict[str, Any],
    journal: Mapping[int, dict[str, Any]],
    report: ReplayReport,
    redact: Callable[[Any], Any],
    workdir: Path,
    env: Mapping[str, str],
    max_body: int,
    debugger: Callable[[Any], None] = pdb.post_mortem,
) -> Outcome:
    """Run the agent's entry in this process against ``journal``; ``debugger`` gets the
    traceback where it ends other than by returning; ``max_body``: the door's largest request
    body, as the sandboxed run's. Returns how the code ended."""
    from corral.sandbox.runtime import Context, RunAborted, _error, _load_entry, _plain, _Session

    judge = Judge(run, report, redact)
    channel = JournalChannel(journal, judge)
    context = Context(_Session(channel, {}), welcome, channel)  # type: ignore[arg-type]
    os.environ.clear()  # exactly the agent's environment, as its sandboxed process has
    os.environ.update(env)
    os.chdir(workdir)
    with door(welcome, context, max_body):
        try:
            func = _load_entry(welcome["code"], welcome["entry"])
            value = _plain(func(context), "the agent's return value")
        except RunAborted as aborted:
            print(f"corral: {aborted}; the debugger opens where the code asked for it", file=sys.stderr)
            debugger(agents_part(aborted.__traceback__, Path(welcome["code"])))
            return judge.outcome()
        except Exception as exc:  # noqa: BLE001 - the agent's own failure is what we debug
            if channel.stopped:  # the door's 409 for where the replay stopped, raised by the agent's SDK
                print(f"corral: {channel.stopped}; the debugger opens where the code asked for it", file=sys.stderr)
            else:
                print(
                    f"corral: the agent raised {type(exc).__name__}: {exc}; the debugger opens there", file=sys.stderr
                )
            debugger(agents_part(exc.__traceback__, Path(welcome["code"])))
            return judge.outcome() if channel.stopped else Outcome(RunState.FAILED, {**_error(exc), "kind": "agent"})
    if channel.stopped:
        print(f"corral: {channel.stopped}; the agent's code caught the door's 409 and returned", file=sys.stderr)
        return judge.outcome()
    return Outcome(RunState.SUCCEEDED, result=value)


@contextmanager
def door(welcome: dict[str, Any], context: Context, max_body: int) -> Iterator[None]:
    """The run's door on this host's loopback for the replay's length (the model door, the
    tool door at ``/mcp`` and the state and log API), every request answered from the
    journal through ``context``; its variables are set in this process's environment, as
    the runtime sets them in the agent's. Where the replay stops, a request to it is
    answered with why (409; a tool call's error), so the agent's own code raises there."""
    from corral.sandbox.door.api import Api
    from corral.sandbox.door.problems import DoorError
    from corral.sandbox.door.server import Door, listen
    from corral.sandbox.runtime import RunAborted, _tool_door

    session = context._session

    def stopped(why: BaseException) -> DoorError:
        # 409, not retried: the request conflicts with the journal; a retry would be judged the same
        return DoorError(409, f"corral replay: {why}", code="replay_stopped")

    def ask(name: str, args: dict[str, Any]) -> tuple[int, dict[str, Any]]:
        try:
            return session.model_step(name, args)
        except RunAborted as aborted:
            raise stopped(aborted) from None

    def end(why: BaseException) -> None:
        raise ToolCallError(f"corral replay: {why}", kind="replay_stopped") from None

    def change(apply: Callable[[], None]) -> None:
        try:
            apply()
        except RunAborted as aborted:
            raise stopped(aborted) from None

    token = f"corral-{secrets.token_urlsafe(32)}"
    served = Door(
        listen(),
        token,
        welcome.get("models") or [],
        ask,
        max_body,
        welcome["run_id"],
        tools=lambda: _tool_door(welcome, session, end),
        api=lambda: Api(context.state, context.log, change, lambda: session.running, None),
    )
    os.environ.update(served.env())
    served.start(poll_interval=0.05)
    try:
        yield
    finally:
        served.stop()


def agents_part(tb: TracebackType | None, code: Path) -> TracebackType | None:
    """The traceback cut after its last frame in the agent's own code (``code``), so the
    debugger opens there rather than inside corral's ``ctx``; whole if no frame is."""
    frames = []
    while tb is not None:
        frames.append(tb)
        tb = tb.tb_next
    inside = [i for i, node in enumerate(frames) if Path(node.tb_frame.f_code.co_filename).is_relative_to(code)]
    if not inside:
        return frames[0] if frames else None
    cut: TracebackType | None = None
    for node in reversed(frames[: inside[-1] + 1]):
        cut = TracebackType(cut, node.tb_frame, node.tb_lasti, node.tb_lineno)
    return cut
