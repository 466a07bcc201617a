"""Example tools for the offline example agents: notes in the agent's workdir."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import corral
from corral.sandbox.paths import inside_workdir

_KEY_MARK = "  #key:"


@corral.tool(idempotent=True)
def append_line(path: str, line: str, idempotency_key: str) -> int:
    """Append one line to a text file in the workdir, at most once per call.

    Safe to repeat after a crash: the line is tagged with the call's idempotency key
    and not written again if that key is already in the file.

    Args:
        path: File name relative to the workdir.
        line: Text to append (no newlines).

    Returns the number of lines in the file afterwards.
    """
    if "\n" in line:
        raise ValueError("line must not contain a newline; call append_line once per line")
    target = inside_workdir(path)
    tag = f"{_KEY_MARK}{idempotency_key}"
    existing = target.read_text().splitlines() if target.exists() else []
    if not any(row.endswith(tag) for row in existing):
        with target.open("a") as f:
            f.write(f"{line}{tag}\n")
        existing.append(line)
    return len(existing)


@corral.tool(idempotent=True)
def read_lines(path: str, last: int = 10) -> list[str]:
    """Read the last lines of a text file in the workdir, without their tags.

    Args:
        path: File name relative to the workdir.
        last: How many lines from the end to return.
    """
    target = inside_workdir(path)
    if not target.exists():
        return []
    rows = [row.split(_KEY_MARK, 1)[0] for row in target.read_text().splitlines()]
    return rows[-last:] if last > 0 else []


@corral.tool(idempotent=True)
def word_count(text: str) -> dict[str, int]:
    """Count the words of a text, most frequent first.

    Args:
        text: Any text.
    """
    counts: dict[str, int] = {}
    for word in text.lower().split():
        word = word.strip(".,;:!?\"'()")
        if word:
            counts[word] = counts.get(word, 0) + 1
    return dict(sorted(counts.items(), key=lambda kv: (-kv[1], kv[0])))


@corral.hookimpl
def corral_register_tools(register: Callable[..., Any]) -> None:
    for func in (append_line, read_lines, word_count):
        register(func)
