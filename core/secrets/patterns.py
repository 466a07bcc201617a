"""The forms of a secret's value that :class:`corral.secrets.Redactor` finds, as compiled patterns.

Two kinds: whole-value forms found by plain search (:func:`whole_forms`: as it is, URL-encoded,
JSON-escaped, base64), and escaped forms (:func:`escaped_pattern`), where each character
may be written as itself or %-encoded, backslash-escaped or as an HTML reference,
independently of its neighbours. docs/secrets.md lists exactly which forms are found.
"""

from __future__ import annotations

import base64
import json
import re
from collections.abc import Callable, Sequence
from typing import Any
from urllib.parse import quote, quote_plus


def _base64_forms(raw: bytes) -> set[str]:
    """The base64 text of ``raw`` wherever it sits in a longer encoded blob (3 alignments), std and urlsafe.

    Characters that mix in bits of neighbouring bytes are left out, so the middle still
    matches inside, say, a Basic auth header that encodes ``user:token``.
    """
    forms = set()
    for shift in range(3):
        encoded = base64.b64encode(b"\0" * shift + raw).decode()
        start = -(-shift * 4 // 3)
        end = (shift + len(raw)) * 8 // 6
        middle = encoded[start:end]
        forms |= {middle, middle.replace("+", "-").replace("/", "_")}
    return forms


def whole_forms(value: str) -> set[str]:
    """The whole-value forms of a secret found by plain search: as it is, fully encoded, base64."""
    found = {value, quote(value, safe=""), quote(value), quote_plus(value)}
    found |= {json.dumps(value)[1:-1], json.dumps(value, ensure_ascii=False)[1:-1]}
    return found | _base64_forms(value.encode())


# The escaped forms: each character of a secret may be written as itself or in any of the
# ways below, independently of its neighbours, so one pattern covers full, partial and
# mixed encodings. A text holding none of ESCAPE_MARKS cannot hold an escaped form.
# Every repeat below is possessive or bounded: an agent writes the text these run on, and a
# long run of backslashes must not cost the daemon more than a few steps per character.
_PERCENT = "%(?:25)*+"  # %XX, or %25XX and so on for each further round of %-encoding
_BACKSLASH = r"(?:\\|%(?:25)*+5[cC]){1,8}+"  # backslashes (escaped again, up to 8), or %-encoded ones
_ESCAPED_BACKSLASH = r"(?:\\|%(?:25)*+5[cC]){1,4}\\"  # a backslash in the secret, escaped: not possessive
_SHORT_ESCAPES = {'"': '"', "'": "'", "/": "/", "\b": "b", "\f": "f", "\n": "n", "\r": "r", "\t": "t"}
_ENTITIES = {"&": "amp", "<": "lt", ">": "gt", '"': "quot", "'": "apos"}
ESCAPE_MARKS = ("%", "\\", "&")


def _percent(byte: int) -> str:
    """``byte`` %-encoded any number of times (``%`` itself is ``%25``, ``%2525``...)."""
    return "%(?:25)++" if byte == 0x25 else _PERCENT + _hex(byte, 2)


def _hex(number: int, width: int) -> str:
    """``number`` in hex, zero-padded to ``width``, as a pattern that takes either letter case."""
    return "".join(f"[{d}{d.upper()}]" if d.isalpha() else d for d in f"{number:0{width}x}")


def _char_pattern(char: str, binary: bool) -> str:
    r"""Every way the escaped-form pattern takes one character of a secret.

    As itself; its UTF-8 bytes %-encoded (in ``binary`` patterns any mix of literal and
    %-encoded bytes); ``\uXXXX`` (a surrogate pair above U+FFFF), ``\UXXXXXXXX``,
    ``\u{X}``, ``\xXX`` of the code point up to U+00FF and of each UTF-8 byte, and the
    JSON/C short escape (``\/``, ``\"``, ``\n`` ...), after any number of backslashes or
    a %-encoded one; an HTML character reference; ``+`` for a space. ``binary`` patterns
    are ASCII text, compiled as bytes.
    """
    code, data = ord(char), char.encode()
    if binary:
        ways = ["".join(f"(?:\\x{byte:02x}|{_percent(byte)})" for byte in data)]
    else:
        ways = [re.escape(char), "".join(map(_percent, data))]
    if code > 0xFFFF:
        high, low = 0xD800 + ((code - 0x10000) >> 10), 0xDC00 + ((code - 0x10000) & 0x3FF)
        escapes = [f"u{_hex(high, 4)}{_BACKSLASH}u{_hex(low, 4)}"]
    else:
        escapes = [f"u{_hex(code, 4)}"]
    escapes += [f"U{_hex(code, 8)}", f"u\\{{0*{_hex(code, 1)}\\}}"]
    if code <= 0xFF:
        escapes.append(f"x{_hex(code, 2)}")
    if len(data) > 1:
        escapes.append(_BACKSLASH.join(f"x{_hex(byte, 2)}" for byte in data))
    if char in _SHORT_ESCAPES:
        escapes.append(re.escape(_SHORT_ESCAPES[char]))
    ways.append(f"{_BACKSLASH}(?:{'|'.join(escapes)})")
    if char == "\\":
        ways.append(_ESCAPED_BACKSLASH)
    named = f"|{_ENTITIES[char]}" if char in _ENTITIES else ""
    ways.append(f"&(?:#(?:0*{code}|[xX]0*{_hex(code, 1)}){named});")
    if char == " ":
        ways.append(r"\+")
    return f"(?:{'|'.join(ways)})"


def _trie(words: Sequence[Sequence[Any]], atom: Callable[[Any], str], end: Callable[[int], str]) -> str:
    """A pattern taking any of ``words``, which share their common prefixes.

    ``atom`` renders one element of a word, ``end(i)`` what follows the last one of word
    ``i`` (a word given twice keeps its first index). So a position is tried once per
    distinct element, not once per word; where a word ends and others go on, the longer
    come first and win. Runs without a branch are neither grouped nor recursed into, so
    a long value costs no depth.
    """
    root: dict[Any, Any] = {}
    for index, word in enumerate(words):
        node = root
        for item in word:
            node = node.setdefault(item, {})
        node.setdefault(None, index)

    def render(node: dict[Any, Any]) -> str:
        chain = []
        while len(node) == 1 and None not in node:
            ((item, node),) = node.items()
            chain.append(atom(item))
        branches = [atom(item) + render(child) for item, child in node.items() if item is not None]
        if None in node:
            branches.append(end(node[None]))
        return "".join(chain) + (branches[0] if len(branches) == 1 else f"(?:{'|'.join(branches)})")

    return render(root)


def literal_pattern(words: Sequence[str], binary: bool) -> str:
    """Whole-value forms as one trie; ``binary`` patterns are ASCII text, compiled as bytes."""
    if binary:
        return _trie([word.encode() for word in words], lambda byte: f"\\x{byte:02x}", lambda index: "")
    return _trie(words, re.escape, lambda index: "")


def escaped_pattern(values: Sequence[str], binary: bool) -> str:
    """One pattern for the escaped forms of all ``values``; the group ``s<i>`` names the one found.

    The values share a trie (:func:`_trie`). Two lookaheads turn away, first at the cost
    of a character-class test, the positions where no value can start.
    """

    def char(item: str) -> str:
        return _char_pattern(item, binary)

    def literal(item: str) -> str:  # in bytes, later bytes of a character may be %-encoded: the first only
        return f"\\x{item.encode()[0]:02x}" if binary else re.escape(item)

    # The gate: a value starts here as itself (its first two characters, or the first and an
    # escape), or with an escape whose first characters fit one of the values.
    seconds: dict[str, set[str]] = {}
    for value in values:
        seconds.setdefault(value[0], set()).add(value[1])
    marks = re.escape("".join(ESCAPE_MARKS) + "+")
    gate = [
        literal(first)
        if binary and not first.isascii()
        else f"{literal(first)}(?:[{marks}]|{'|'.join(map(literal, sorted(after)))})"
        for first, after in seconds.items()
    ]
    if " " in seconds:
        gate.append(r"\+")
    starts = sorted({_hex(first.encode()[0], 2) for first in seconds})
    shorts = "".join(sorted({re.escape(_SHORT_ESCAPES[first]) for first in seconds if first in _SHORT_ESCAPES}))
    gate += [f"%(?:25)*(?:{'|'.join(starts)})", f"{_BACKSLASH}[uUx{shorts}]", "&[#a-z]"]
    firsts = "".join(sorted(map(literal, seconds)))
    escaped = _trie(values, char, lambda index: f"(?P<s{index}>)")
    return f"(?=[{firsts}{marks}])(?={'|'.join(gate)})" + escaped
