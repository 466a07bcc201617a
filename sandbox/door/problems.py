"""Errors the door answers with, their bodies in each API's format, and the checks that find
them in a request body.

A :class:`DoorError` is read by the agent's SDK: it is rendered in the error format of the API
asked (:func:`openai_error`, :func:`anthropic_error`, :func:`api_error`), so the SDK raises its
usual exception (``BadRequestError``, ``NotFoundError``, ``RateLimitError``...) with the
message and, for a bad field, the field's path. The bodies are here, beside the error, and
not in the dialects: the server imports a dialect at the first request that needs it
(``corral.sandbox.door.server``), and an error, even the one saying a dialect could not be
loaded, must not wait for that. So this module imports nothing but the standard library.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from corral.packing import nesting


@dataclass
class DoorError(Exception):
    """Agent author: a request the door or the daemon could not answer with a model's reply.

    ``status`` is the HTTP status; ``param`` the path of the bad field (``messages[2].content``);
    ``retry_after`` the seconds to wait before the same request can succeed, when it can;
    ``retry`` whether the SDK should retry on its own (sent as ``x-should-retry``).
    ``code``: OpenAI's error ``code`` when the status alone does not say it.
    """

    status: int
    message: str
    param: str | None = None
    retry_after: float | None = None
    retry: bool = False
    code: str | None = None
    """A machine-readable reason where the status alone does not say it (OpenAI's ``code``)."""

    def __str__(self) -> str:
        return self.message


def bad(path: str, problem: str) -> DoorError:
    """A 400 naming the field."""
    return DoorError(400, f"{path}: {problem}" if path else problem, param=path or None)


_OPENAI_TYPES = {
    400: "invalid_request_error",
    401: "invalid_request_error",
    403: "permission_error",
    404: "invalid_request_error",
    409: "invalid_request_error",
    413: "invalid_request_error",
    429: "insufficient_quota",
    503: "server_error",
}
_OPENAI_CODES = {401: "invalid_api_key", 404: "model_not_found", 413: "request_too_large", 429: "budget_exceeded"}
_ANTHROPIC_TYPES = {
    400: "invalid_request_error",
    401: "authentication_error",
    403: "permission_error",
    404: "not_found_error",
    413: "request_too_large",
    429: "rate_limit_error",
    529: "overloaded_error",
}


def openai_error(problem: DoorError) -> dict[str, Any]:
    """OpenAI's error body (Chat Completions and Responses)."""
    return {
        "error": {
            "message": problem.message,
            "type": _OPENAI_TYPES.get(problem.status, "api_error"),
            "param": problem.param,
            "code": problem.code or _OPENAI_CODES.get(problem.status),
        }
    }


def anthropic_error(problem: DoorError) -> dict[str, Any]:
    """Anthropic's error body."""
    kind = _ANTHROPIC_TYPES.get(problem.status, "api_error")
    return {"type": "error", "error": {"type": kind, "message": problem.message}}


def api_error(problem: DoorError) -> dict[str, Any]:
    """The body of every error the state and log API answers (``openapi.json``'s ``Error`` schema)."""
    body: dict[str, Any] = {"status": problem.status, "message": problem.message}
    if problem.param:
        body["field"] = problem.param
    return {"error": body}


MAX_BODY_DEPTH = 64
"""How deeply a request body may nest: far beyond any real request, and well inside what the
wire carries (:data:`corral.packing.MAX_DEPTH`; a frame nested deeper would end the run, not
just the request)."""


def shallow(body: Any) -> Any:
    """``body``, else a 400 when it nests deeper than :data:`MAX_BODY_DEPTH`."""
    if nesting(body, MAX_BODY_DEPTH) > MAX_BODY_DEPTH:
        raise DoorError(400, f"the request body nests deeper than {MAX_BODY_DEPTH} levels")
    return body


def obj(value: Any, path: str) -> dict[str, Any]:
    """``value`` as a JSON object, else a 400 naming ``path``."""
    if not isinstance(value, dict):
        raise bad(path, f"must be an object, got {_kind(value)}")
    return value


def field(body: dict[str, Any], name: str, kinds: type | tuple[type, ...], path: str, *, required: bool = False) -> Any:
    """``body[name]`` checked against ``kinds`` (None when absent and not required)."""
    where = f"{path}.{name}" if path else name
    if name not in body or body[name] is None:
        if required:
            raise bad(where, "is required")
        return None
    value = body[name]
    expected = kinds if isinstance(kinds, tuple) else (kinds,)
    wrong_bool = isinstance(value, bool) and bool not in expected
    if wrong_bool or not isinstance(value, expected):
        names = " or ".join(_NAMES.get(kind, kind.__name__) for kind in expected)
        raise bad(where, f"must be {names}, got {_kind(value)}")
    return value


def number(body: dict[str, Any], name: str, path: str, low: float, high: float) -> float | None:
    """A number within [low, high], else a 400."""
    value = field(body, name, (int, float), path)
    if value is not None and not low <= value <= high:
        where = f"{path}.{name}" if path else name
        raise bad(where, f"must be between {low:g} and {high:g}, got {value}")
    return value


def positive(body: dict[str, Any], name: str, path: str) -> int | None:
    """An integer of at least 1, else a 400."""
    value = field(body, name, int, path)
    if value is not None and value < 1:
        where = f"{path}.{name}" if path else name
        raise bad(where, f"must be at least 1, got {value}")
    return value


def text(content: Any, path: str, kinds: tuple[str, ...] = ("text",)) -> str:
    """Text content: a string (or null), or a list of parts whose ``type`` is one of ``kinds``,
    each holding its text under ``text`` (a ``refusal`` part under ``refusal``); any other
    part is refused by its path."""
    if content is None or isinstance(content, str):
        return content or ""
    if not isinstance(content, list):
        raise bad(path, f"must be a string or a list of content parts, got {_kind(content)}")
    texts = []
    for index, part in enumerate(content):
        where = f"{path}[{index}]"
        kind = obj(part, where).get("type")
        if kind not in kinds:
            raise bad(f"{where}.type", f"parts of type {kind!r} do not pass corral's model door; send text")
        texts.append(field(part, "refusal" if kind == "refusal" else "text", str, where, required=True))
    return "".join(texts)


def choice(
    value: Any, tools: list[Any], named: Callable[[dict[str, Any]], tuple[str, str]]
) -> tuple[str | None, list[Any]]:
    """``tool_choice`` as corral's choice: auto, none or required as they are; an object naming
    one tool (``named`` reads its name and that name's path) requires that tool and offers it alone."""
    if value is None or isinstance(value, str):
        if value not in (None, "auto", "none", "required"):
            raise bad("tool_choice", f"must be auto, none, required or a function, got {value!r}")
        return value, tools
    name, path = named(obj(value, "tool_choice"))
    return "required", only(tools, name, path)


def only(tools: list[Any], name: str, path: str) -> list[Any]:
    """The one tool a ``tool_choice`` names (corral's choice is then ``required``), else a 400."""
    chosen = [tool for tool in tools if tool.name == name]
    if not chosen:
        raise bad(path, f"names no tool in tools: {name!r}")
    return chosen


def names(granted: list[dict[str, str]]) -> list[tuple[str, str]]:
    """(name listed, alias) for ``GET /v1/models``: each granted model by alias and upstream id."""
    return [
        (name, model["name"]) for model in granted for name in dict.fromkeys((model["name"], model["model"])) if name
    ]


_NAMES = {
    str: "a string",
    int: "an integer",
    float: "a number",
    bool: "true or false",
    list: "a list",
    dict: "an object",
}


def _kind(value: Any) -> str:
    if value is None:
        return "null"
    return _NAMES.get(type(value), type(value).__name__).removeprefix("a ").removeprefix("an ")


def from_step(error: dict[str, Any], *, overloaded: int) -> DoorError:
    """The door's answer to a model step the daemon answered with an error.

    ``overloaded`` is the dialect's status for "the model is unavailable" (OpenAI 503,
    Anthropic 529). Refusals by a guardrail or a human are 403; a budget is 429 and not
    worth retrying; an endpoint that failed after corral's retries is ``overloaded`` with
    ``Retry-After``.
    """
    kind = str(error.get("kind") or "failed")
    message = str(error.get("message") or f"the model call failed ({kind})")
    retry_after = error.get("retry_after")
    if kind in ("refused", "denied"):
        return DoorError(403, message)
    if kind == "budget":
        return DoorError(429, message, retry_after=retry_after)
    if kind in _UNAVAILABLE:
        return DoorError(overloaded, message, retry_after=retry_after if retry_after is not None else 1.0, retry=True)
    if kind in ("invalid_request", "bad_request"):
        return DoorError(400, message)
    if kind == "not_found":
        return DoorError(404, message)
    if kind == "bad_response":
        return DoorError(502, message)
    if kind == "not_configured":
        return DoorError(500, message, code="not_configured")
    return DoorError(500, message)


_UNAVAILABLE = frozenset(
    {
        "model",
        "rate_limited",
        "overloaded",
        "server_error",
        "timeout",
        "connection",
        "breaker_open",
        "retry_after_too_long",
    }
)
"""Step error kinds that mean "the model is unavailable now" (after corral's own retries)."""
