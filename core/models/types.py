"""Provider-neutral requests and responses: what agents send and get back, whatever the model.

Plain frozen dataclasses. ``to_dict()`` gives builtins only (str, int, float, bool,
None, lists/tuples, dicts) so a request or response can be journaled and sent over the
wire with msgpack; ``from_dict()`` validates such data (it may come from agent code)
with msgspec and raises :class:`~corral.models.errors.InvalidRequest` naming the path of
the first bad field. Unknown keys are ignored so that a journal written by a newer
corral still reads.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any, Literal, TypeVar, get_args

import msgspec

from corral.models.errors import InvalidRequest
from corral.packing import MAX_DEPTH, nesting

Role = Literal["system", "user", "assistant", "tool"]
FinishReason = Literal["stop", "tool_calls", "length", "content_filter", "other"]
ToolChoice = Literal["auto", "none", "required"]
ResponseKind = Literal["json_object", "json_schema"]

_ROLES = frozenset(get_args(Role))
_TOOL_CHOICES = frozenset(get_args(ToolChoice))
_T = TypeVar("_T")


def _convert(data: object, cls: type[_T], what: str) -> _T:
    try:
        return msgspec.convert(data, cls)
    except InvalidRequest:
        raise
    except msgspec.ValidationError as exc:
        raise InvalidRequest(f"invalid {what}: {exc}") from None


def parse_arguments(raw: str) -> tuple[dict[str, Any], str | None]:
    """Parse a tool call's argument JSON into ``(arguments, None)`` or ``({}, problem)``.

    Models do emit broken JSON; the problem text is meant to be handed back to the model
    as the tool's error so it can correct itself, so it never raises.
    """
    if not raw.strip():
        return {}, None
    try:
        value = json.loads(raw)
    except RecursionError:
        return {}, _TOO_DEEP
    except ValueError as exc:
        return {}, f"the arguments are not valid JSON ({exc}); send a JSON object that matches the tool's schema"
    problem = arguments_problem(value)
    return ({}, problem) if problem else (value, None)


_TOO_DEEP = f"the arguments nest deeper than {MAX_DEPTH} levels; send a flatter JSON object"


def as_text(arguments: Any) -> str:
    """Tool call arguments a provider gave as an object, as the text a history sends back
    (``"{}"`` for one nested past what ``json`` can write: its problem says why)."""
    try:
        return json.dumps(arguments, ensure_ascii=False)
    except RecursionError:
        return "{}"


def arguments_problem(value: Any) -> str | None:
    """Why a tool call's parsed arguments cannot be used (not an object; nested past what
    corral keeps, :data:`corral.packing.MAX_DEPTH`, which would fail the run's wire and the
    daemon's walks over the journal), for the model to read; None when they can."""
    if not isinstance(value, dict):
        return f"the arguments must be a JSON object, got {type(value).__name__}"
    if nesting(value) > MAX_DEPTH:
        return _TOO_DEEP
    return None


@dataclass(frozen=True, slots=True)
class ToolCall:
    """A tool call the model asked for.

    ``arguments`` is the parsed JSON object. When the model's JSON was unusable,
    ``arguments`` is empty and ``arguments_error`` says why, for the caller to return to
    the model as the tool result instead of running the tool. ``raw_arguments`` is the
    text as the model sent it, replayed verbatim when the call goes back in the history.
    """

    id: str
    name: str
    arguments: dict[str, Any] = field(default_factory=dict)
    raw_arguments: str = ""
    arguments_error: str | None = None

    def arguments_json(self) -> str:
        """The argument text to send back to a provider: the model's own, else the parsed object."""
        return self.raw_arguments or json.dumps(self.arguments, ensure_ascii=False)


@dataclass(frozen=True, slots=True)
class Message:
    """One turn of the conversation.

    ``system``, ``user`` and ``assistant`` carry ``text``; an assistant turn may also carry
    ``tool_calls``. A ``tool`` turn is the result of the call ``tool_call_id``, with
    ``is_error`` set when the tool failed or was refused.
    """

    role: Role
    text: str = ""
    tool_calls: tuple[ToolCall, ...] = ()
    tool_call_id: str | None = None
    is_error: bool = False

    def __post_init__(self) -> None:
        if self.role not in _ROLES:
            raise InvalidRequest(f"message role {self.role!r} is not one of {sorted(_ROLES)}")
        if self.tool_calls and self.role != "assistant":
            raise InvalidRequest(f"only assistant messages carry tool_calls, not {self.role!r} ones")
        if self.role == "tool" and not self.tool_call_id:
            raise InvalidRequest("a tool message needs the tool_call_id of the call it answers")
        if self.role != "tool" and (self.tool_call_id is not None or self.is_error):
            raise InvalidRequest(f"tool_call_id and is_error belong on tool messages, not {self.role!r} ones")

    @classmethod
    def system(cls, text: str) -> Message:
        """Instructions for the model."""
        return cls("system", text)

    @classmethod
    def user(cls, text: str) -> Message:
        """A user turn."""
        return cls("user", text)

    @classmethod
    def assistant(cls, text: str = "", tool_calls: tuple[ToolCall, ...] = ()) -> Message:
        """A model turn, usually from :meth:`Response.message`."""
        return cls("assistant", text, tool_calls)

    @classmethod
    def tool_result(cls, tool_call_id: str, text: str, *, is_error: bool = False) -> Message:
        """The outcome of one tool call, sent back to the model."""
        return cls("tool", text, tool_call_id=tool_call_id, is_error=is_error)


@dataclass(frozen=True, slots=True)
class ToolDefinition:
    """A tool the model may call: its name, what it does, and its arguments' JSON schema."""

    name: str
    description: str = ""
    parameters: dict[str, Any] = field(default_factory=lambda: {"type": "object", "properties": {}})

    def __post_init__(self) -> None:
        if not self.name:
            raise InvalidRequest("a tool definition needs a name")
        if self.parameters.get("type") != "object":
            raise InvalidRequest(f"tool {self.name!r}: parameters must be a JSON schema with type 'object'")


@dataclass(frozen=True, slots=True)
class ResponseFormat:
    """Ask for JSON: any object (``json_object``), or one matching ``schema`` (``json_schema``,
    named ``name``; ``strict`` asks the provider to enforce it where it can)."""

    type: ResponseKind
    name: str = "response"
    schema: dict[str, Any] | None = None
    strict: bool | None = None

    def __post_init__(self) -> None:
        if self.type == "json_schema" and not isinstance(self.schema, dict):
            raise InvalidRequest("a json_schema response format needs its schema (a JSON schema object)")


@dataclass(frozen=True, slots=True)
class Options:
    """Sampling options. ``None`` leaves a setting to the endpoint's default.

    ``max_tokens`` defaults to the endpoint's ``max_output_tokens`` and is always sent, so
    the worst-case cost reserved before a call holds.
    """

    max_tokens: int | None = None
    temperature: float | None = None
    top_p: float | None = None
    stop: tuple[str, ...] = ()
    tool_choice: ToolChoice | None = None
    response_format: ResponseFormat | None = None

    def __post_init__(self) -> None:
        if self.max_tokens is not None and self.max_tokens < 1:
            raise InvalidRequest(f"max_tokens must be at least 1, got {self.max_tokens}")
        if self.temperature is not None and not 0 <= self.temperature <= 2:
            raise InvalidRequest(f"temperature must be between 0 and 2, got {self.temperature}")
        if self.top_p is not None and not 0 < self.top_p <= 1:
            raise InvalidRequest(f"top_p must be above 0 and at most 1, got {self.top_p}")
        if self.tool_choice is not None and self.tool_choice not in _TOOL_CHOICES:
            raise InvalidRequest(f"tool_choice must be one of {sorted(_TOOL_CHOICES)}, got {self.tool_choice!r}")

    @classmethod
    def from_kwargs(cls, options: Mapping[str, Any]) -> Options:
        """Options from ``ctx.model(..., **options)``; an unknown or mistyped option is refused by name."""
        known = cls.__dataclass_fields__
        unknown = sorted(set(options) - set(known))
        if unknown:
            raise InvalidRequest(f"unknown model option(s) {unknown}; the options are {sorted(known)}")
        values = dict(options)
        if isinstance(values.get("stop"), str):
            values["stop"] = [values["stop"]]
        return _convert(values, cls, "model options")


@dataclass(frozen=True, slots=True)
class Request:
    """What to ask the model: the conversation, the tools it may call, and options."""

    messages: tuple[Message, ...]
    tools: tuple[ToolDefinition, ...] = ()
    options: Options = field(default_factory=Options)

    def __post_init__(self) -> None:
        if not self.messages:
            raise InvalidRequest("a model request needs at least one message")
        names = [tool.name for tool in self.tools]
        if len(set(names)) != len(names):
            raise InvalidRequest(f"tool names must be unique, got {names}")

    def to_dict(self) -> dict[str, Any]:
        """Builtins only, for msgpack. An unset ``response_format`` is left out, so a request
        journaled before the option existed keeps its fingerprint and still replays."""
        result: dict[str, Any] = msgspec.to_builtins(self)
        if result["options"].get("response_format") is None:
            del result["options"]["response_format"]
        return result

    @classmethod
    def from_dict(cls, data: object) -> Request:
        """Validate data (from the wire or the journal) into a request."""
        return _convert(data, cls, "model request")


_INSTEAD = {"content": "text", "tool_use_id": "tool_call_id", "input": "arguments", "input_schema": "parameters"}
"""Keys other APIs use, and corral's name for the same thing."""


def _known_keys(data: object, cls: type, where: str) -> None:
    if not isinstance(data, Mapping):
        return  # not a dict: converting it says what is wrong
    known = cls.__dataclass_fields__  # type: ignore[attr-defined]
    for key in data:
        if key not in known:
            fix = f"; write {_INSTEAD[key]!r} instead" if _INSTEAD.get(key) in known else ""
            raise InvalidRequest(f"{where} has an unknown key {key!r}{fix} (its keys are {', '.join(known)})")


def check_keys(request: Mapping[str, Any]) -> None:
    """Raise :class:`InvalidRequest` naming the first key of a request being made (from an
    agent, not a journal) that no type here knows, and the key meant when it says (``text``
    for ``content``): ``from_dict`` ignores unknown keys, so that a journal written by a
    newer corral still reads, and a misnamed one would be dropped without a word."""
    _known_keys(request, Request, "the model request")
    for index, message in enumerate(request.get("messages") or ()):
        _known_keys(message, Message, f"messages[{index}]")
        calls = message.get("tool_calls") if isinstance(message, Mapping) else None
        for number, call in enumerate(calls if isinstance(calls, list | tuple) else ()):
            _known_keys(call, ToolCall, f"messages[{index}].tool_calls[{number}]")
    for index, tool in enumerate(request.get("tools") or ()):
        _known_keys(tool, ToolDefinition, f"tools[{index}]")
    options = request.get("options")
    _known_keys(options, Options, "options")
    if isinstance(options, Mapping):
        _known_keys(options.get("response_format"), ResponseFormat, "options.response_format")


@dataclass(frozen=True, slots=True)
class Usage:
    """Tokens a call consumed.

    ``input_tokens`` counts every input token, including those read from or written to a
    prompt cache; ``cache_read_tokens`` and ``cache_write_tokens`` are the parts of it
    that the provider bills at its cache prices (Anthropic reports them apart; corral adds
    them in so both providers mean the same thing).
    """

    input_tokens: int = 0
    output_tokens: int = 0
    cache_read_tokens: int = 0
    cache_write_tokens: int = 0

    @property
    def total_tokens(self) -> int:
        """Input plus output."""
        return self.input_tokens + self.output_tokens


@dataclass(frozen=True, slots=True)
class Response:
    """The model's answer, in the same shape whichever provider gave it.

    ``finish_reason`` is normalised; ``raw_finish_reason`` is the provider's own word.
    ``model`` is the model id the provider reports having used, ``request_id`` the
    provider's id for the call (for its support), when it gives one.
    """

    text: str
    tool_calls: tuple[ToolCall, ...]
    finish_reason: FinishReason
    raw_finish_reason: str | None
    usage: Usage
    model: str
    provider: str
    request_id: str | None = None

    def message(self) -> Message:
        """This answer as the assistant turn to append to the conversation."""
        return Message.assistant(self.text, self.tool_calls)

    def to_dict(self) -> dict[str, Any]:
        """Builtins only, for msgpack."""
        result: dict[str, Any] = msgspec.to_builtins(self)
        return result

    @classmethod
    def from_dict(cls, data: object) -> Response:
        """Read back a journaled response."""
        return _convert(data, cls, "model response")
