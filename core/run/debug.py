"""``corral replay RUN --pdb``: the replay in this process, under the debugger.

The agent's code runs here, unsandboxed (it is the operator's own terminal and code), with
the agent's environment and granted secrets and a fresh workdir, and with its ``ctx``
answered from the run's journal by the same rules as a sandboxed replay
(:class:`corral.run.replay.Judge`). Where the replay ends in the code (its own exception,
or the request where it diverged from the journal), :mod:`pdb` opens on that frame.
"""

from __future__ import annotations

import os
import pdb
import sys
from collections import deque
from collections.abc import Callable, Mapping
from pathlib import Path
from types import TracebackType
from typing import Any

from corral.run.outcome import Outcome
from corral.run.replay import Judge, ReplayReport
from corral.states import RunState


class JournalChannel:
    """The wire's child end, answered in this process from the run's journal."""

    def __init__(self, journal: Mapping[int, dict[str, Any]], judge: Judge) -> None:
        self._journal = journal
        self._judge = judge
        self._answers: deque[dict[str, Any]] = deque()

    def send(self, message: dict[str, Any]) -> None:
        if message["t"] == "log":
            fields = " ".join(f"{key}={value!r}" for key, value in message["fields"].items())
            print(f"[{message['level']}] {message['event']} {fields}".rstrip(), file=sys.stderr)
        elif message["t"] == "step":
            seq = message["seq"]
            args = self._judge.redact(message["args"])
            self._answers.append(
                self._judge.answer(seq, message["kind"], message["name"], args, self._journal.get(seq))
            )

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
    debugger: Callable[[Any], None] = pdb.post_mortem,
) -> Outcome:
    """Run the agent's entry in this process against ``journal``; ``debugger`` gets the
    traceback where it ends other than by returning. Returns how the code ended."""
    from corral.sandbox.runtime import Context, RunAborted, _error, _load_entry, _plain, _Session

    judge = Judge(run, report, redact)
    channel = JournalChannel(journal, judge)
    os.environ.clear()  # exactly the agent's environment, as its sandboxed process has
    os.environ.update(env)
    os.chdir(workdir)
    try:
        func = _load_entry(welcome["code"], welcome["entry"])
        value = _plain(func(Context(_Session(channel, {}), welcome, channel)), "the agent's return value")  # type: ignore[arg-type]
    except RunAborted as aborted:
        print(f"corral: {aborted}; the debugger opens where the code asked for it", file=sys.stderr)
        debugger(agents_part(aborted.__traceback__, Path(welcome["code"])))
        return judge.outcome()
    except Exception as exc:  # noqa: BLE001 - the agent's own failure is what we debug
        print(f"corral: the agent raised {type(exc).__name__}: {exc}; the debugger opens there", file=sys.stderr)
        debugger(agents_part(exc.__traceback__, Path(welcome["code"])))
        return Outcome(RunState.FAILED, {**_error(exc), "kind": "agent"})
    return Outcome(RunState.SUCCEEDED, result=value)


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
