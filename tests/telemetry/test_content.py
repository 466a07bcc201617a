"""Content attributes are cut at CONTENT_CHARS after redaction; a long conversation's request
is written out only as far as the cut needs (core/observe/telemetry/content.py)."""

from __future__ import annotations

import json
from typing import Any

import pytest

pytest.importorskip("opentelemetry.semconv")

from corral.observe.telemetry.content import CONTENT_CHARS, chat, text  # noqa: E402
from corral.secrets import Redactor  # noqa: E402

SECRET = "s3cret-value-0123456789"
redact = Redactor({"TOKEN": SECRET}).redact


def _whole(value: Any) -> str:
    """What the attribute was when the value was written out whole before the cut."""
    shown = redact(json.dumps(redact(value), ensure_ascii=False, default=str))
    return shown[:CONTENT_CHARS] + f"...[cut at {CONTENT_CHARS} characters]" if len(shown) > CONTENT_CHARS else shown


def test_a_long_conversation_is_cut_as_before_without_being_written_out_whole() -> None:
    messages = [{"role": "user", "text": f"m{i} {SECRET}"} for i in range(20_000)]
    found = chat({"messages": messages}, {"text": "ok"}, redact)
    attribute = next(value for key, value in found.items() if key.endswith("input.messages"))
    parts = [{"role": "user", "parts": [{"type": "text", "content": m["text"]}]} for m in messages]
    assert attribute == _whole(parts)
    assert SECRET not in attribute and "[redacted:TOKEN]" in attribute


@pytest.mark.parametrize("value", [[], [1, True, 1.0], ["x" * CONTENT_CHARS], {"a": [SECRET] * 5000}, SECRET])
def test_short_and_long_values_read_as_they_did(value: Any) -> None:
    assert text(value, redact) == _whole(value)


class _Unwritten:
    """A value past the cut: writing it out fails the test."""

    def __str__(self) -> str:
        raise AssertionError("an item past the cut was written out")


def test_items_past_the_cut_are_not_written_out() -> None:
    shown = text(["x" * 100] * 1000 + [_Unwritten()] * 10, redact)
    assert shown.endswith(f"...[cut at {CONTENT_CHARS} characters]") and len(shown) < CONTENT_CHARS + 40
