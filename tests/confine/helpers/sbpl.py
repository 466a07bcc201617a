"""A small reader for SBPL (Seatbelt's Scheme dialect): enough to check a generated profile's shape.

Strings follow the escapes the generator relies on (``\\\\`` and ``\\"``); any other
backslash sequence is an error, so a profile that depends on one fails the test.
"""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class String:
    """A string literal, told apart from a bare symbol."""

    value: str


Form = str | String | list["Form"]


def parse(text: str) -> list[Form]:
    """Every top-level form of ``text``; raises ValueError on unbalanced parentheses or bad strings."""
    stack: list[list[Form]] = [[]]
    i = 0
    while i < len(text):
        char = text[i]
        if char.isspace():
            i += 1
        elif char == ";":
            i = text.index("\n", i) + 1 if "\n" in text[i:] else len(text)
        elif char == "(":
            stack.append([])
            i += 1
        elif char == ")":
            if len(stack) == 1:
                raise ValueError(f"unexpected ')' at {i}")
            form = stack.pop()
            stack[-1].append(form)
            i += 1
        elif char == '"':
            value, i = _string(text, i + 1)
            stack[-1].append(String(value))
        else:
            start = i
            while i < len(text) and not text[i].isspace() and text[i] not in '()";':
                i += 1
            stack[-1].append(text[start:i])
    if len(stack) != 1:
        raise ValueError("unbalanced '(': the profile ends inside a form")
    return stack[0]


def _string(text: str, i: int) -> tuple[str, int]:
    out: list[str] = []
    while i < len(text):
        char = text[i]
        if char == '"':
            return "".join(out), i + 1
        if char == "\\":
            following = text[i + 1 : i + 2]
            if following not in ('"', "\\"):
                raise ValueError(f"unsupported escape \\{following} at {i}")
            out.append(following)
            i += 2
            continue
        out.append(char)
        i += 1
    raise ValueError("unterminated string")
