"""Turn a plain typed Python function into a tool with a JSON schema.

The function is the one source of truth: its signature says which arguments exist,
their types and defaults; its docstring says what the tool and each argument are for.
Deriving the schema from it means a tool's description cannot drift from its code, and
a plugin author writes no schema by hand. Anything that cannot be described exactly is
refused at registration with a ``ToolDefinitionError`` rather than guessed at.

Schemas are JSON Schema draft 2020-12 (validate with ``Draft202012Validator``); they
carry no ``$schema`` key because model APIs take the bare object.
"""

from __future__ import annotations

import copy
import enum
import inspect
import json
import re
import types
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, replace
from typing import (
    TYPE_CHECKING,
    Annotated,
    Any,
    Literal,
    TypeVar,
    Union,
    get_args,
    get_origin,
    get_type_hints,
    overload,
)

from corral.errors import ToolDefinitionError

if TYPE_CHECKING:
    import docstring_parser

TOOL_NAME = re.compile(r"^[a-zA-Z_][a-zA-Z0-9_.-]{0,63}$")
IDEMPOTENCY_KEY = "idempotency_key"
"""Parameter name corral fills with a stable per-call key; never shown to the model."""

_PRIMITIVES: dict[Any, str] = {str: "string", int: "integer", float: "number", bool: "boolean"}
_PRIMITIVES[type(None)] = "null"


@dataclass(frozen=True)
class Reconciled:
    """A reconcile function's answer: did the interrupted call take effect?

    Build it with ``Reconciled.happened(result)`` or ``Reconciled.not_happened()``. The
    flag is ``took_effect`` because a dataclass field cannot share the name of the
    ``happened`` constructor.
    """

    took_effect: bool
    result: Any = None

    @classmethod
    def happened(cls, result: Any = None) -> Reconciled:
        """The call took effect and returned ``result``; corral records it, never reruns."""
        return cls(True, result)

    @classmethod
    def not_happened(cls) -> Reconciled:
        """The call had no effect; corral may run it again."""
        return cls(False)


@dataclass(frozen=True)
class ToolSpec:
    """Everything corral knows about one tool, derived once at registration."""

    name: str
    description: str
    parameters: dict[str, Any]
    idempotent: bool
    func: Callable[..., Any]
    reconcile: Callable[..., Any] | None
    takes_idempotency_key: bool
    plugin: str = ""

    def with_plugin(self, name: str) -> ToolSpec:
        """A copy blamed on plugin ``name``, so logs and errors name who offered it."""
        return replace(self, plugin=name)

    def describe(self) -> dict[str, Any]:
        """What a model or the ``corral`` CLI is shown; JSON-serialisable, a fresh copy."""
        return {
            "name": self.name,
            "description": self.description,
            "parameters": copy.deepcopy(self.parameters),
            "idempotent": self.idempotent,
        }


F = TypeVar("F", bound=Callable[..., Any])


@overload
def tool(
    func: F,
    *,
    name: str | None = None,
    idempotent: bool = False,
    reconcile: Callable[..., Any] | None = None,
) -> F: ...
@overload
def tool(
    func: None = None,
    *,
    name: str | None = None,
    idempotent: bool = False,
    reconcile: Callable[..., Any] | None = None,
) -> Callable[[F], F]: ...
def tool(
    func: Callable[..., Any] | None = None,
    *,
    name: str | None = None,
    idempotent: bool = False,
    reconcile: Callable[..., Any] | None = None,
) -> Any:
    """Mark ``func`` as a tool; use as ``@tool`` or ``@tool(idempotent=True, ...)``.

    The function is returned unchanged, still callable as-is, carrying these options in
    ``func.__corral_tool__``. The schema is derived and checked by :func:`spec_for`, when
    a plugin registers the tool in the daemon (and in ``corral check``), so a bad
    definition fails before any agent runs, and an agent's process that merely imports
    the plugin never pays for schema derivation.

    ``name`` overrides ``func.__name__`` as the tool's name. ``idempotent=True`` says
    running the call twice has the same effect as once, so corral may simply rerun it
    after a crash. A parameter named ``idempotency_key`` is hidden from the model and
    filled by corral with a key that is stable across retries of one call, for
    deduplicating at the far end.

    ``reconcile`` is for non-idempotent tools only. After a crash interrupted a call,
    corral calls ``reconcile(idempotency_key, **args)`` with the call's arguments; it
    returns ``Reconciled.happened(result)`` if the call took effect,
    ``Reconciled.not_happened()`` if it did not (corral may then run it again), or
    ``None`` if it cannot tell (corral then puts the run on hold for a human rather
    than risk doing it twice). It is checked here to accept the tool's parameters, with or
    without the optional ones.
    """

    def decorate(f: F) -> F:
        try:
            setattr(f, _ATTR, _Options(name, idempotent, reconcile))
        except AttributeError as exc:
            raise ToolDefinitionError(
                f"{_where(f)} cannot carry a tool spec; decorate a plain function, or register it without @tool"
            ) from exc
        return f

    return decorate if func is None else decorate(func)


def spec_for(func: Callable[..., Any]) -> ToolSpec:
    """The spec of a ``@tool`` function, or one derived with defaults for a plain one.

    A wrapper that copied a tool's attributes (``functools.wraps``) keeps the spec but
    is itself what gets called.
    """
    options = getattr(func, _ATTR, None)
    if not isinstance(options, _Options):
        options = _Options()
    spec = _derive(func, name=options.name, idempotent=options.idempotent, reconcile=options.reconcile)
    return spec


def tool_name(func: Callable[..., Any]) -> str:
    """The name a function is registered under: ``@tool(name=...)`` or its ``__name__``."""
    options = getattr(func, _ATTR, None)
    if isinstance(options, _Options) and options.name:
        return options.name
    return str(getattr(func, "__name__", ""))


def reconciler(func: Callable[..., Any]) -> Callable[..., Any] | None:
    """The ``reconcile`` function given to ``@tool``, if any."""
    options = getattr(func, _ATTR, None)
    return options.reconcile if isinstance(options, _Options) else None


@dataclass(frozen=True)
class _Options:
    """What ``@tool`` was given; the spec is derived from it on registration."""

    name: str | None = None
    idempotent: bool = False
    reconcile: Callable[..., Any] | None = None


_ATTR = "__corral_tool__"
_NO_DEFAULT = object()


def _derive(
    func: Callable[..., Any],
    *,
    name: str | None,
    idempotent: bool,
    reconcile: Callable[..., Any] | None,
) -> ToolSpec:
    where = _where(func)
    if not callable(func):
        raise ToolDefinitionError(f"{where} is not callable; @tool decorates a function")
    tool_name = getattr(func, "__name__", None) if name is None else name
    if not isinstance(tool_name, str) or not TOOL_NAME.match(tool_name):
        raise ToolDefinitionError(
            f"{where}: tool name {tool_name!r} is invalid; it must match {TOOL_NAME.pattern} (pass a valid name=...)"
        )
    if reconcile is not None and not callable(reconcile):
        raise ToolDefinitionError(f"{where}: reconcile={reconcile!r} is not callable")
    if reconcile is not None and idempotent:
        raise ToolDefinitionError(
            f"{where}: reconcile is never called for an idempotent tool (corral reruns "
            "it instead); drop reconcile or idempotent=True"
        )
    try:
        sig = inspect.signature(func)
        hints = get_type_hints(func, include_extras=True)
    except (NameError, TypeError, ValueError) as exc:
        raise ToolDefinitionError(
            f"{where}: cannot read its signature or type hints ({exc}); make every "
            "annotation a type importable at module level"
        ) from exc
    doc = _parse_doc(func, where)
    documented = {p.arg_name: p.description or "" for p in doc.params}

    properties: dict[str, Any] = {}
    required: list[str] = []
    takes_key = False
    for p in sig.parameters.values():
        at = f"{where}: parameter '{p.name}'"
        if p.kind in (p.VAR_POSITIONAL, p.VAR_KEYWORD):
            raise ToolDefinitionError(
                f"{at} is *args/**kwargs, which a schema cannot describe; list each argument explicitly"
            )
        if p.kind is p.POSITIONAL_ONLY:
            raise ToolDefinitionError(f"{at} is positional-only, but corral passes arguments by name; remove the '/'")
        if p.name == IDEMPOTENCY_KEY:
            takes_key = True
            continue
        if p.name not in hints:
            raise ToolDefinitionError(f"{at} has no type annotation; annotate it, e.g. `{p.name}: str`")
        prop = _schema(hints[p.name], at)
        if documented.get(p.name) and "description" not in prop:
            prop["description"] = documented[p.name]
        if p.default is p.empty:
            required.append(p.name)
        elif (default := _json_value(p.default)) is not _NO_DEFAULT:
            import jsonschema_rs

            if not jsonschema_rs.Draft202012Validator(prop).is_valid(default):
                raise ToolDefinitionError(
                    f"{at} defaults to {p.default!r}, which its type does not allow; "
                    "fix the default or widen the type (e.g. `X | None = None`)"
                )
            prop["default"] = default
        properties[p.name] = prop

    unknown = sorted(set(documented) - set(sig.parameters))
    if unknown:
        raise ToolDefinitionError(
            f"{where}: the docstring documents {', '.join(unknown)}, which the function "
            "does not take; fix the spelling or remove the entry"
        )
    if reconcile is not None:
        _check_reconcile(reconcile, where, list(properties), required)
    return ToolSpec(
        name=tool_name,
        description="\n\n".join(d for d in (doc.short_description, doc.long_description) if d),
        parameters={
            "type": "object",
            "properties": properties,
            "required": required,
            "additionalProperties": False,
        },
        idempotent=idempotent,
        func=func,
        reconcile=reconcile,
        takes_idempotency_key=takes_key,
    )


def _schema(tp: Any, at: str) -> dict[str, Any]:
    """The JSON schema of one type hint; ``at`` names the parameter for errors."""
    if tp is Any:
        return {}
    if tp is None:
        return {"type": "null"}
    if isinstance(tp, type) and tp in _PRIMITIVES:  # not `in` alone: Annotated can't hash
        return {"type": _PRIMITIVES[tp]}
    if isinstance(tp, type) and issubclass(tp, enum.Enum):
        return _enum_schema([member.value for member in tp], at)
    origin, args = get_origin(tp), get_args(tp)
    if origin is Annotated:
        schema = _schema(args[0], at)
        texts = [a for a in args[1:] if isinstance(a, str)]
        if texts:
            schema["description"] = texts[0]
        return schema
    if origin is Literal:
        return _enum_schema(list(args), at)
    if origin in (Union, types.UnionType):
        return {"anyOf": [_schema(a, at) for a in args]}
    container = origin or tp
    if container in (list, Sequence):
        return {"type": "array", "items": _schema(args[0], at)} if args else {"type": "array"}
    if container is tuple:
        if not args:
            return {"type": "array"}
        if len(args) == 2 and args[1] is Ellipsis:
            return {"type": "array", "items": _schema(args[0], at)}
        n = len(args)
        items = [_schema(a, at) for a in args]
        return {"type": "array", "prefixItems": items, "minItems": n, "maxItems": n}
    if container in (dict, Mapping):
        if not args:
            return {"type": "object"}
        if args[0] is not str:
            raise ToolDefinitionError(
                f"{at} has dict keys of type {_type_name(args[0])}, but JSON object keys "
                "are strings; use dict[str, ...]"
            )
        return {"type": "object", "additionalProperties": _schema(args[1], at)}
    raise ToolDefinitionError(
        f"{at} has type {_type_name(tp)}, which corral cannot describe in JSON; use str, int, "
        "float, bool, None, list, tuple, dict[str, ...], Literal, an Enum, Any, or unions"
    )


def _enum_schema(values: list[Any], at: str) -> dict[str, Any]:
    """``enum`` plus ``type`` for Literal and Enum values, which must be JSON scalars."""
    values = [v.value if isinstance(v, enum.Enum) else v for v in values]
    kinds: list[str] = []
    for v in values:
        kind = _PRIMITIVES.get(type(v))
        if kind is None:
            raise ToolDefinitionError(
                f"{at} allows the value {v!r}, which is not a JSON string, number, boolean or null; use such values"
            )
        if kind not in kinds:
            kinds.append(kind)
    return {"type": kinds[0] if len(kinds) == 1 else kinds, "enum": values}


def _json_value(value: Any) -> Any:
    """``value`` as plain JSON (Enum members as their value), or ``_NO_DEFAULT``."""
    if isinstance(value, enum.Enum):
        value = value.value
    try:
        return json.loads(json.dumps(value, allow_nan=False))
    except (TypeError, ValueError):
        return _NO_DEFAULT


def _parse_doc(func: Callable[..., Any], where: str) -> docstring_parser.Docstring:
    import docstring_parser

    try:
        return docstring_parser.parse(inspect.getdoc(func) or "")
    except docstring_parser.ParseError as exc:
        raise ToolDefinitionError(
            f"{where}: its docstring cannot be parsed ({exc}); fix its parameter section"
        ) from exc


def _check_reconcile(reconcile: Callable[..., Any], where: str, names: list[str], required: list[str]) -> None:
    """Fail now, not after a crash, if ``reconcile`` cannot take the tool's arguments."""
    try:
        sig = inspect.signature(reconcile)
    except (TypeError, ValueError):
        return  # a builtin without a signature: nothing to check
    for given in (names, required):
        try:
            sig.bind("key", **dict.fromkeys(given))
        except TypeError as exc:
            raise ToolDefinitionError(
                f"{where}: reconcile {_where(reconcile)} cannot be called as "
                f"reconcile(idempotency_key, {', '.join(names)}) ({exc}); give it the "
                "tool's parameters after the key, or **kwargs"
            ) from exc


def _type_name(tp: Any) -> str:
    """``ToolSpec`` rather than ``<class 'corral.tools.ToolSpec'>``; generics as written."""
    plain_class = isinstance(tp, type) and get_origin(tp) is None
    return tp.__qualname__ if plain_class else repr(tp)


def _where(func: Any) -> str:
    """``module.qualname`` of a function, for error messages."""
    qualname = getattr(func, "__qualname__", None)
    return f"{getattr(func, '__module__', '?')}.{qualname}" if qualname else repr(func)
