"""The one error family of the model gateway, and the redaction every message goes through.

A :class:`ModelError` is read by the operator (in logs and alerts) and by the agent
author (``ctx.model`` raises it in the agent). Its ``kind`` is stable and machine
readable; its message says what happened and what to fix. No message ever holds an API
key: provider text is passed through :func:`redact` before it is quoted, which writes
``[redacted:NAME]`` (NAME: the variable the key came from) where the key was.
"""

from __future__ import annotations

import functools
import re
from collections.abc import Sequence
from typing import Any, Literal, get_args

from corral.errors import CorralError
from corral.models.tries import Try
from corral.secrets import Redactor, Secret, placeholder

Kind = Literal[
    "invalid_request",
    "bad_request",
    "auth",
    "not_found",
    "conflict",
    "rate_limited",
    "overloaded",
    "server_error",
    "timeout",
    "connection",
    "bad_response",
    "breaker_open",
    "retry_after_too_long",
]
"""Every ``ModelError.kind``, from "the request itself is wrong" to "the endpoint is down"."""

KINDS: frozenset[str] = frozenset(get_args(Kind))

NOT_RETRIED_NOW: frozenset[str] = frozenset({"breaker_open", "retry_after_too_long"})
"""Kinds that may succeed later but that the retry loop must not retry within the same call."""

_MAX_QUOTE = 500  # longest piece of provider text quoted in a message
# OpenAI echoes a masked key in 401 bodies ("sk-proj-****abcd"); never repeat even that.
_KEY_LIKE = re.compile(r"\b(?:sk|pk|rk|key)-[A-Za-z0-9_\-*.]{4,}")
_UNNAMED_KEY = "api_key"


@functools.lru_cache(maxsize=16)
def _redactor(key: Secret) -> Redactor:
    return Redactor([key])  # compiled once per key: about 0.3 ms per character


def redact(text: str, key: Secret | None) -> str:
    """``text`` with the key (in every form :class:`corral.secrets.Redactor` finds: %-encoded,
    escaped...) and anything shaped like an API key replaced with ``[redacted:NAME]``, cut to
    a readable length."""
    if key is not None:
        text = _redactor(key).redact_text(text)
    shown = placeholder(key.name if key is not None else _UNNAMED_KEY)
    text = _KEY_LIKE.sub(shown, text)
    return text if len(text) <= _MAX_QUOTE else text[:_MAX_QUOTE] + "..."


class ModelError(CorralError):
    """Operator and agent author: a model call failed; ``kind`` says how, the message what to do.

    ``retryable`` is true when the same call can succeed later without anyone changing
    anything (the endpoint was down, slow or rate-limited), so a run that failed on it can
    be resumed; false when the request, the key or the config must be fixed first.
    ``status`` is the HTTP status when the endpoint answered, ``retry_after`` the seconds
    the endpoint (or its circuit breaker) asked callers to wait, ``attempts`` every try
    that was made, in order.
    """

    def __init__(
        self,
        message: str,
        *,
        kind: Kind,
        retryable: bool,
        endpoint: str = "",
        status: int | None = None,
        retry_after: float | None = None,
        request_id: str | None = None,
        attempts: Sequence[Try] = (),
    ) -> None:
        super().__init__(message)
        self.message = message
        self.kind: Kind = kind
        self.retryable = retryable
        self.endpoint = endpoint
        self.status = status
        self.retry_after = retry_after
        self.request_id = request_id
        self.attempts: tuple[Try, ...] = tuple(attempts)

    def to_dict(self) -> dict[str, Any]:
        """A msgpack-ready description, for the journal and the reply to the agent."""
        return {
            "message": self.message,
            "kind": self.kind,
            "retryable": self.retryable,
            "endpoint": self.endpoint,
            "status": self.status,
            "retry_after": self.retry_after,
            "request_id": self.request_id,
            "attempts": [attempt.to_dict() for attempt in self.attempts],
        }

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> ModelError:
        """Rebuild an error journaled with :meth:`to_dict` (the agent's side re-raises it)."""
        kind = data.get("kind")
        if kind not in KINDS:
            raise ValueError(f"unknown model error kind {kind!r}; expected one of {sorted(KINDS)}")
        return cls(
            str(data.get("message", "")),
            kind=kind,
            retryable=bool(data.get("retryable")),
            endpoint=str(data.get("endpoint") or ""),
            status=data.get("status"),
            retry_after=data.get("retry_after"),
            request_id=data.get("request_id"),
            attempts=[Try.from_dict(item) for item in data.get("attempts") or ()],
        )


class InvalidRequest(ModelError, ValueError):
    """Agent author: the model request is malformed (bad role, missing tool call id, unknown option).

    Also a ``ValueError`` so that msgspec, which decodes requests from the wire, reports it
    with the path of the offending field.
    """

    def __init__(self, message: str) -> None:
        super().__init__(message, kind="invalid_request", retryable=False)
