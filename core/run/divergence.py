"""Where a request differs from the one journaled at the same step, in a line a person reads.

A resumed run that asks something else at a step is a divergence; frameworks often put a
timestamp or a random id into a prompt, so the message shows the part that changed (the
first differing field, and a window around the first differing character of a string),
not the whole request. Both requests are already redacted when they get here.
"""

from __future__ import annotations

from typing import Any

WINDOW = 40
"""Characters shown on each side of the first difference inside a string."""


def changed(journaled: Any, asked: Any) -> str:
    """``path: journal X, now Y`` for the first place the two differ ("" when they do not)."""
    found = _first(journaled, asked, "")
    if found is None:
        return ""
    path, old, new = found
    return f"{path or 'the request'}: journal {old}, now {new}"


def _first(old: Any, new: Any, path: str) -> tuple[str, str, str] | None:
    if isinstance(old, dict) and isinstance(new, dict):
        for key in [*old, *(k for k in new if k not in old)]:
            where = f"{path}.{key}" if path else str(key)
            if key not in new:
                return where, _short(old[key]), "absent"
            if key not in old:
                return where, "absent", _short(new[key])
            found = _first(old[key], new[key], where)
            if found is not None:
                return found
        return None
    if isinstance(old, list | tuple) and isinstance(new, list | tuple):
        for index, (a, b) in enumerate(zip(old, new, strict=False)):
            found = _first(a, b, f"{path}[{index}]")
            if found is not None:
                return found
        if len(old) != len(new):
            return f"{path} (length)", str(len(old)), str(len(new))
        return None
    if isinstance(old, str) and isinstance(new, str):
        return None if old == new else (path, *_windows(old, new))
    if old == new and type(old) is type(new):
        return None
    return path, _short(old), _short(new)


def _windows(old: str, new: str) -> tuple[str, str]:
    at = next((i for i, (x, y) in enumerate(zip(old, new, strict=False)) if x != y), min(len(old), len(new)))
    start = max(0, at - WINDOW)

    def cut(text: str) -> str:
        end = at + WINDOW
        return ("…" if start else "") + repr(text[start:end]) + ("…" if end < len(text) else "")

    return cut(old), cut(new)


def _short(value: Any) -> str:
    shown = repr(value)
    return shown if len(shown) <= 2 * WINDOW else shown[: 2 * WINDOW] + "…"
