"""Turn a plain typed Python function into a tool with a JSON schema.

The function is the one source of truth: its signature says which arguments exist,
their types and defaults; its docstring says what the tool and each argument are for.
Deriving the schema from it means a tool's description cannot drift from its code, and
a plugin author writes no schema by hand. Anything that cannot be described exactly is
refused at registration with a ``ToolDefinitionError`` rather than guessed at.

Schemas are JSON Schema draft 2020-12 (validate with ``Draft202012Validator``); they
carry no ``$schema`` key because model APIs take the bare object.

A tool also declares what it is, for the layers that gate it: ``read_only`` (no side
effects, so safe to rerun), ``idempotent``, ``high_stakes`` (a human approves each call
before it runs) and the ``secrets`` it needs. Two parameter names are corral's, hidden
from the model: ``idempotency_key`` and ``settings`` (the operator's
``[agents.NAME.tool_settings.TOOL]`` table, see :mod:`corral.config.tools`).
"""

from __future__ import annotations

import copy
import difflib
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
    NotRequired,
    Required,
    TypeVar,
    Union,
    get_args,
    get_origin,
    get_type_hints,
    is_typeddict,
    overload,
)

from corral.errors import ToolDefinitionError
from corral.retrypolicy import RetryPolicy

if TYPE_CHECKING:
    import docstring_parser

TOOL_NAME = re.compile(r"^[a-zA-Z_][a-zA-Z0-9_.-]{0,63}$")
SECRET_NAME = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*$")
IDEMPOTENCY_KEY = "idempotency_key"
"""Parameter name corral fills with a stable per-call key; never shown to the model."""
SETTINGS = "settings"
"""Parameter name corral fills with the agent's settings table for the tool; never shown to the model."""
SECRETS = "secrets"
"""Parameter name corral fills with the declared secrets' values (name -> value); never shown to the model."""

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
    func: Callable[..., Any] | None
    """The function the agent's process runs; None for a tool of an MCP server (its server runs it)."""
    reconcile: Callable[..., Any] | None
    takes_idempotency_key: bool
    plugin: str = ""
    read_only: bool = False
    """No side effects; implies ``idempotent`` (an interrupted call is simply run again)."""
    high_stakes: bool = False
    """Every call needs a human's approval before it runs."""
    secrets: tuple[str, ...] = ()
    """Names of the secrets the tool needs; only tools that declare a secret receive it."""
    settings_schema: dict[str, Any] | None = None
    """JSON schema of the ``settings`` the tool takes from the agent's config; None: it takes none."""
    server: str | None = None
    """The ``[mcp.NAME]`` server that offers the tool; None for a plugin's tool."""
    retry: RetryPolicy | None = None
    """How a failed call is retried (``[tools.NAME]`` in the config overrides it); None: never."""
    downstream: str | Callable[..., str | None] | None = None
    """What the tool calls, for its circuit breaker: a name (a host), or a function of the
    call's arguments that returns one; None: the plugin that offers the tool."""

    def with_plugin(self, name: str) -> ToolSpec:
        """A copy blamed on plugin ``name``, so logs and errors name who offered it."""
        return replace(self, plugin=name)

    def describe(self) -> dict[str, Any]:
        """What a model or the ``corral`` CLI is shown; JSON-serialisable, a fresh copy."""
        return {
            "name": self.name,
            "description": self.description,
            "parameters": copy.deepcopy(self.parameters),
            "read_only": self.read_only,
            "idempotent": self.idempotent,
            "high_stakes": self.high_stakes,
            "secrets": list(self.secrets),
            "plugin": self.plugin,
            "source": f"mcp server {self.server}" if self.server else f"plugin {self.plugin}",
            "retry": self.retry.describe() if self.retry is not None else None,
            "downstream": self.downstream if isinstance(self.downstream, str) else None,
        }

    def downstream_of(self, args: Mapping[str, Any]) -> str:
        """The breaker name of a call with ``args``: ``tool:`` and its downstream.

        A downstream function that raises or returns no name falls back to the plugin, so
        a bug in it never stops the call (a plugin's function runs in the daemon here).
        """
        found = self.downstream
        if callable(found):
            try:
                found = found(**args)
            except Exception:  # noqa: BLE001 - any failure of plugin code means "no name"
                found = None
        if not isinstance(found, str) or not found:
            found = self.plugin or self.name
        return f"tool:{found}"


F = TypeVar("F", bound=Callable[..., Any])


@overload
def tool(
    func: F,
    *,
    name: str | None = None,
    read_only: bool = False,
    idempotent: bool = False,
    high_stakes: bool = False,
    secrets: Sequence[str] = (),
    reconcile: Callable[..., Any] | None = None,
    retry: RetryPolicy | None = None,
    downstream: str | Callable[..., str | None] | None = None,
) -> F: ...
@overload
def tool(
    func: None = None,
    *,
    name: str | None = None,
    read_only: bool = False,
    idempotent: bool = False,
    high_stakes: bool = False,
    secrets: Sequence[str] = (),
    reconcile: Callable[..., Any] | None = None,
    retry: RetryPolicy | None = None,
    downstream: str | Callable[..., str | None] | None = None,
) -> Callable[[F], F]: ...
def tool(
    func: Callable[..., Any] | None = None,
    *,
    name: str | None = None,
    read_only: bool = False,
    idempotent: bool = False,
    high_stakes: bool = False,
    secrets: Sequence[str] = (),
    reconcile: Callable[..., Any] | None = None,
    retry: RetryPolicy | None = None,
    downstream: str | Callable[..., str | None] | None = None,
    **unknown: Any,
) -> Any:
    """Mark ``func`` as a tool; use as ``@tool`` or ``@tool(idempotent=True, ...)``.

    The function is returned unchanged, still callable as-is, carrying these options in
    ``func.__corral_tool__``. The schema is derived and checked by :func:`spec_for`, when
    a plugin registers the tool in the daemon (and in ``corral check``), so a bad
    definition fails before any agent runs, and an agent's process that merely imports
    the plugin never pays for schema derivation.

    ``name`` overrides ``func.__name__`` as the tool's name. ``idempotent=True`` says
    running the call twice has the same effect as once, so corral may simply rerun it
    after a crash. ``read_only=True`` says the tool changes nothing (it implies
    ``idempotent``). ``high_stakes=True`` says a human must approve each call before it
    runs. ``secrets`` names the secrets the tool needs; only tools that declare a
    secret receive it. A parameter named ``idempotency_key`` is hidden from the model and
    filled by corral with a key that is stable across retries of one call, for
    deduplicating at the far end; one named ``settings`` is hidden too and filled with
    the agent's ``[agents.NAME.tool_settings.TOOL]`` table (annotate it with a
    ``TypedDict`` so corral checks the table against it).

    ``retry`` is a :class:`~corral.retrypolicy.RetryPolicy`: how many times a failed call
    is tried again and how long to wait between tries. corral retries only when it is
    safe: the failure is transient (the tool raised ``ToolError(retryable=True)``, a
    ``ConnectionError`` or a ``TimeoutError``) and either the tool is idempotent (it is run
    again with the same ``idempotency_key``) or the error says the call had no effect
    (``ToolError(..., retryable=True)``). ``downstream`` names what the tool calls, for its
    circuit breaker, shared by every agent: a string (a host) or a function taking the
    call's arguments and returning one (``lambda url, **_: urlsplit(url).hostname``); the
    default is the plugin. See docs/tools.md, "Retries and breakers for tools".

    Options are checked here (an unknown or mistyped one raises
    :class:`ToolDefinitionError` naming the function), the rest at registration.

    ``reconcile`` is for non-idempotent tools only. After a crash interrupted a call,
    corral calls ``reconcile(idempotency_key, **args)`` with the call's arguments; it
    returns ``Reconciled.happened(result)`` if the call took effect,
    ``Reconciled.not_happened()`` if it did not (corral may then run it again), or
    ``None`` if it cannot tell (corral then puts the run on hold for a human rather
    than risk doing it twice). It is checked here to accept the tool's parameters, with or
    without the optional ones.
    """

    def decorate(f: F) -> F:
        options = _options(
            f,
            unknown,
            name=name,
            read_only=read_only,
            idempotent=idempotent,
            high_stakes=high_stakes,
            secrets=secrets,
            reconcile=reconcile,
            retry=retry,
            downstream=downstream,
        )
        try:
            setattr(f, _ATTR, options)
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
    return _derive(func, options)


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
    read_only: bool = False
    high_stakes: bool = False
    secrets: tuple[str, ...] = ()
    retry: RetryPolicy | None = None
    downstream: str | Callable[..., str | None] | None = None


_ATTR = "__corral_tool__"
_NO_DEFAULT = object()
_OPTION_NAMES = ("name", "read_only", "idempotent", "high_stakes", "secrets", "reconcile", "retry", "downstream")


def _options(
    func: Callable[..., Any],
    unknown: dict[str, Any],
    *,
    name: str | None,
    read_only: bool,
    idempotent: bool,
    high_stakes: bool,
    secrets: Sequence[str],
    reconcile: Callable[..., Any] | None,
    retry: RetryPolicy | None = None,
    downstream: str | Callable[..., str | None] | None = None,
) -> _Options:
    """The decorator's options, checked now so a typo fails where the tool is defined."""
    where = _where(func)
    for option in unknown:
        near = difflib.get_close_matches(option, _OPTION_NAMES, n=1)
        hint = f"did you mean {near[0]!r}?" if near else f"the options are {', '.join(_OPTION_NAMES)}"
        raise ToolDefinitionError(f"{where}: @tool got an unknown option {option!r}; {hint}")
    flags = {"read_only": read_only, "idempotent": idempotent, "high_stakes": high_stakes}
    for option, value in flags.items():
        if not isinstance(value, bool):
            raise ToolDefinitionError(f"{where}: @tool({option}={value!r}) must be True or False")
    if isinstance(secrets, str) or not all(isinstance(s, str) for s in secrets):
        raise ToolDefinitionError(
            f"{where}: @tool(secrets={secrets!r}) must be a tuple of secret names, e.g. secrets=('GITHUB_TOKEN',)"
        )
    for secret in secrets:
        if not SECRET_NAME.match(secret):
            raise ToolDefinitionError(
                f"{where}: @tool secret name {secret!r} is invalid; use letters, digits and '_', "
                "not starting with a digit (it is delivered as the variable of that name)"
            )
    if read_only and reconcile is not None:
        raise ToolDefinitionError(
            f"{where}: reconcile is never called for a read_only tool (corral reruns it instead); "
            "drop reconcile or read_only=True"
        )
    if retry is not None and not isinstance(retry, RetryPolicy):
        raise ToolDefinitionError(
            f"{where}: @tool(retry={retry!r}) must be a corral.RetryPolicy, e.g. "
            'retry=corral.RetryPolicy(retries=3, backoff="1s..30s")'
        )
    if downstream is not None and not (callable(downstream) or (isinstance(downstream, str) and downstream)):
        raise ToolDefinitionError(
            f"{where}: @tool(downstream={downstream!r}) must name what the tool calls (a host, e.g. "
            '"api.github.com") or be a function of the call\'s arguments returning one'
        )
    return _Options(
        name=name,
        idempotent=idempotent or read_only,
        reconcile=reconcile,
        read_only=read_only,
        high_stakes=high_stakes,
        secrets=tuple(dict.fromkeys(secrets)),
        retry=retry,
        downstream=downstream,
    )


def _derive(func: Callable[..., Any], options: _Options) -> ToolSpec:
    name, idempotent, reconcile = options.name, options.idempotent, options.reconcile
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
    takes_key = takes_secrets = False
    settings_schema: dict[str, Any] | None = None
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
        if p.name == SETTINGS:
            settings_schema = _settings_schema(hints.get(p.name), at)
            continue
        if p.name == SECRETS:
            takes_secrets = True
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
    if bool(options.secrets) != takes_secrets:
        raise ToolDefinitionError(
            f"{where}: declares secrets {list(options.secrets)} but takes no `secrets` parameter; add "
            "`secrets: dict[str, str]` (corral fills it with their values)"
            if options.secrets
            else f"{where}: takes a `secrets` parameter but declares none; name them, e.g. "
            '@corral.tool(secrets=("GITHUB_TOKEN",))'
        )
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
        read_only=options.read_only,
        high_stakes=options.high_stakes,
        secrets=options.secrets,
        settings_schema=settings_schema,
        retry=options.retry,
        downstream=options.downstream,
    )


def _settings_schema(hint: Any, at: str) -> dict[str, Any]:
    """The schema the operator's settings table must match: from a TypedDict or a mapping."""
    if hint is None:
        raise ToolDefinitionError(
            f"{at} has no type annotation; annotate it with a TypedDict of the settings the tool reads"
        )
    if is_typeddict(hint) or get_origin(hint) in (dict, Mapping) or hint in (dict, Mapping):
        return _schema(hint, at)
    raise ToolDefinitionError(
        f"{at} is corral's settings table, so its type must be a TypedDict (or dict[str, Any]), "
        f"not {_type_name(hint)}; rename the parameter if the model should fill it"
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
    if is_typeddict(tp):
        return _typeddict_schema(tp, at)
    origin, args = get_origin(tp), get_args(tp)
    if origin in (Required, NotRequired):
        return _schema(args[0], at)
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
        "float, bool, None, list, tuple, dict[str, ...], a TypedDict, Literal, an Enum, Any, or unions"
    )


def _typeddict_schema(tp: Any, at: str) -> dict[str, Any]:
    """An object with exactly the TypedDict's keys; its required keys are required."""
    try:
        hints = get_type_hints(tp, include_extras=True)
    except (NameError, TypeError) as exc:
        raise ToolDefinitionError(f"{at}: cannot read the fields of {_type_name(tp)} ({exc})") from exc
    return {
        "type": "object",
        "properties": {key: _schema(hint, f"{at} field '{key}'") for key, hint in hints.items()},
        "required": [key for key, hint in hints.items() if _required(key, hint, tp)],
        "additionalProperties": False,
    }


def _required(key: str, hint: Any, tp: Any) -> bool:
    """Read ``Required``/``NotRequired`` from the hint too: Python 3.11 misses them in
    ``__required_keys__`` when annotations are strings (``from __future__ import annotations``)."""
    origin = get_origin(hint)
    return origin is Required or (origin is not NotRequired and key in tp.__required_keys__)


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


_REST = re.compile(r"^\s*:(param|parameter|arg|argument|key|keyword|type|returns?|rtype|raises?)\b", re.M)
_NUMPY = re.compile(r"^\s*-{3,}\s*$", re.M)
_GOOGLE = re.compile(r"^\s*(Args|Arguments|Params|Parameters|Returns?|Raises|Yields?|Examples?|Attributes):\s*$", re.M)


def _parse_doc(func: Callable[..., Any], where: str) -> docstring_parser.Docstring:
    """The docstring parsed in its own style: guessing it from its section markers, rather
    than letting docstring-parser try every style and keep the best, halves the cost of
    deriving a spec (the daemon derives every tool's at start)."""
    import docstring_parser

    text = inspect.getdoc(func) or ""
    style = docstring_parser.DocstringStyle.AUTO
    if _REST.search(text):
        style = docstring_parser.DocstringStyle.REST
    elif _NUMPY.search(text):
        style = docstring_parser.DocstringStyle.NUMPYDOC
    elif _GOOGLE.search(text) or "@param" not in text:
        style = docstring_parser.DocstringStyle.GOOGLE
    try:
        return docstring_parser.parse(text, style)
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


_LISTED = ("description", "parameters", "read_only", "idempotent", "high_stakes")
"""What a tool's welcome entry carries for the tool door's ``tools/list``."""


def welcome_entry(
    spec: ToolSpec,
    agent_settings: Mapping[str, Mapping[str, Any]],
    secrets: Mapping[str, str],
    *,
    retries: bool = False,
) -> dict[str, Any]:
    """What the agent's process learns about one granted tool (the welcome's ``tools`` map):
    whether it takes ``idempotency_key``, whose function to run, what its tool door lists
    (``listed``: the description, the schema the daemon validates against, and the flags),
    its ``settings`` when it takes them, the values of the secrets it declares that the
    agent is granted, and (``retries``) whether a failed call waits for the daemon to say
    try again or give up."""
    listed = {key: value for key, value in spec.describe().items() if key in _LISTED}
    entry: dict[str, Any] = {"takes_key": spec.takes_idempotency_key, "plugin": spec.plugin, "listed": listed}
    if retries:
        entry["retries"] = True
    if spec.settings_schema is not None:
        entry["settings"] = dict(agent_settings.get(spec.name, {}))
    if spec.secrets:
        entry["secrets"] = {name: secrets[name] for name in spec.secrets if name in secrets}
    return entry


def tool_secret_names(tools: Mapping[str, ToolSpec | None], granted: tuple[str, ...]) -> frozenset[str]:
    """The secrets some granted tool declares: those go to the tools only, never to the agent's environment."""
    return frozenset(name for tool in granted if (spec := tools.get(tool)) is not None for name in spec.secrets)
