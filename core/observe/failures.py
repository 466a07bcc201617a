"""How a run's failure reads for a person: ``TYPE: message``, and where in the agent's own
code it happened.

A failure is the ``error`` of a run record (``kind``, ``message``, and for an exception in
agent code its ``type`` and ``traceback``). ``run --wait``, ``trace`` and the logs' ``run
ended`` and ``run state`` lines all say it the same way, from here; and a step that did not
succeed, in every view of a trace.
"""

from __future__ import annotations

import re
from typing import Any

_FRAME = re.compile(r'\s*File "([^"]+)", line (\d+)(?:, in (.+))?')


def headline(error: dict[str, Any]) -> str:
    """``TYPE: message`` (just the message when the failure is not an exception's)."""
    message = str(error.get("message"))
    if error.get("type") and not message.startswith(f"{error['type']}:"):
        return f"{error['type']}: {message}"
    return message


def unsuccessful(step: dict[str, Any]) -> str:
    """How a finished step that did not succeed is said, by ``trace``, ``trace --tree`` and the
    console alike: ``refused`` (its error's kind: the daemon's checks, a guardrail, or the tool
    itself refused it) or ``error``."""
    return "refused" if (step.get("error") or {}).get("kind") == "refused" else "error"


def agent_frames(traceback: str) -> list[str]:
    """The ``File ...`` lines (each with the code under it) of a traceback's frames outside
    corral's own code: the agent's, outermost first."""
    from corral import source

    ours = source.folders()
    frames: list[str] = []
    lines = traceback.splitlines()
    for index, line in enumerate(lines):
        found = _FRAME.match(line)
        if found is None or found.group(1).startswith(ours):
            continue
        frames.append(line.rstrip())
        following = lines[index + 1] if index + 1 < len(lines) else ""
        if following.startswith("    ") and not following.lstrip().startswith("File "):
            frames.append(following.rstrip())
    return frames


def where(error: dict[str, Any]) -> str | None:
    """The innermost frame of the agent's own code, as ``path:line in function``; None when
    the failure has no traceback through agent code."""
    last = None
    for line in agent_frames(str(error.get("traceback") or "")):
        found = _FRAME.match(line)
        if found is not None:
            last = f"{found.group(1)}:{found.group(2)}" + (f" in {found.group(3)}" if found.group(3) else "")
    return last
