"""Tools: the JSON schema a model sees is derived from the function, and bad ones refused."""

import dataclasses
import enum
import functools
import json
from collections.abc import Callable, Mapping, Sequence
from typing import Annotated, Any, Literal, NotRequired, Optional, TypedDict

import jsonschema_rs
import pytest

from corral.errors import ToolDefinitionError
from corral.tools import Reconciled, ToolSpec, spec_for, tool


class Color(enum.Enum):
    RED = "red"
    GREEN = "green"


class Level(enum.IntEnum):
    LOW = 1
    HIGH = 2


@tool
def scalars(text: str, count: int, ratio: float, flag: bool, nothing: None) -> None:
    """Every JSON scalar."""


@tool
def containers(
    ints: list[int],
    names: Sequence[str],
    many: tuple[int, ...],
    pair: tuple[str, int],
    weights: dict[str, float],
    nested: Mapping[str, list[int]],
    anything_list: list,  # type: ignore[type-arg]
    anything_dict: dict,  # type: ignore[type-arg]
) -> None:
    """Arrays and objects."""


@tool
def choices(
    maybe: int | None,
    legacy: Optional[str],  # noqa: UP045 - the old spelling must work too
    either: str | int,
    mode: Literal["fast", "slow"],
    mixed: Literal[1, "one", None],
    color: Color,
    level: Level,
    free: Any,
) -> None:
    """Unions, literals, enums and Any."""


@tool
def annotated(
    query: Annotated[str, "what to look for"],
    tags: list[Annotated[str, "one tag"]],
    size: Annotated[int, {"unit": "px"}, "pixels"],
) -> None:
    """Descriptions from Annotated.

    Args:
        query: loses to the Annotated text.
        tags: kept, since Annotated describes only the items.
    """


@tool
def defaults(
    limit: int = 10,
    name: str | None = None,
    color: Color = Color.GREEN,
    span: tuple[int, int] = (1, 2),
    opaque: Any = object(),  # noqa: B008 - a non-JSON default on purpose
) -> None:
    """Defaults where JSON can hold them."""


@tool(idempotent=True, name="shop.charge")
def charge(amount: int, idempotency_key: str) -> str:
    """Charge once however often it is retried."""
    return f"{amount}:{idempotency_key}"


def plain(city: str, days: int = 3) -> str:
    """Forecast for a city, undecorated."""
    return f"{city}/{days}"


ALL = [scalars, containers, choices, annotated, defaults, charge, plain]


def schema(func: Callable[..., Any]) -> dict[str, Any]:
    return spec_for(func).parameters


def prop(func: Callable[..., Any], name: str) -> dict[str, Any]:
    found: dict[str, Any] = schema(func)["properties"][name]
    return found


def valid(func: Callable[..., Any], args: dict[str, Any]) -> bool:
    return bool(jsonschema_rs.Draft202012Validator(schema(func)).is_valid(args))


@pytest.mark.parametrize("func", ALL, ids=lambda f: f.__name__)
def test_every_schema_is_valid_draft_2020_12(func: Callable[..., Any]) -> None:
    parameters = schema(func)
    assert jsonschema_rs.meta.is_valid(parameters), "a valid draft 2020-12 schema"
    assert parameters["type"] == "object"
    assert parameters["additionalProperties"] is False
    json.dumps(spec_for(func).describe())


def test_scalars() -> None:
    assert {name: p["type"] for name, p in schema(scalars)["properties"].items()} == {
        "text": "string",
        "count": "integer",
        "ratio": "number",
        "flag": "boolean",
        "nothing": "null",
    }
    assert schema(scalars)["required"] == ["text", "count", "ratio", "flag", "nothing"]
    good = {"text": "a", "count": 1, "ratio": 0.5, "flag": True, "nothing": None}
    assert valid(scalars, good)
    assert not valid(scalars, {**good, "count": "1"})
    assert not valid(scalars, {**good, "flag": 1})
    assert not valid(scalars, {**good, "extra": 1})
    assert not valid(scalars, {k: v for k, v in good.items() if k != "text"})


def test_containers() -> None:
    assert prop(containers, "ints") == {"type": "array", "items": {"type": "integer"}}
    assert prop(containers, "names") == {"type": "array", "items": {"type": "string"}}
    assert prop(containers, "many") == {"type": "array", "items": {"type": "integer"}}
    assert prop(containers, "weights") == {
        "type": "object",
        "additionalProperties": {"type": "number"},
    }
    assert prop(containers, "anything_list") == {"type": "array"}
    assert prop(containers, "anything_dict") == {"type": "object"}
    good = {
        "ints": [1, 2],
        "names": ["a"],
        "many": [],
        "pair": ["a", 1],
        "weights": {"x": 1.5},
        "nested": {"k": [1]},
        "anything_list": [1, "a"],
        "anything_dict": {"a": [None]},
    }
    assert valid(containers, good)
    assert not valid(containers, {**good, "ints": [1, "2"]})
    assert not valid(containers, {**good, "pair": ["a"]})
    assert not valid(containers, {**good, "pair": ["a", 1, 2]})
    assert not valid(containers, {**good, "pair": [1, "a"]})
    assert not valid(containers, {**good, "weights": {"x": "heavy"}})
    assert not valid(containers, {**good, "nested": {"k": ["1"]}})


def test_unions_literals_enums_any() -> None:
    assert prop(choices, "maybe") == {"anyOf": [{"type": "integer"}, {"type": "null"}]}
    assert prop(choices, "legacy") == {"anyOf": [{"type": "string"}, {"type": "null"}]}
    assert prop(choices, "mode") == {"type": "string", "enum": ["fast", "slow"]}
    assert prop(choices, "mixed") == {
        "type": ["integer", "string", "null"],
        "enum": [1, "one", None],
    }
    assert prop(choices, "color") == {"type": "string", "enum": ["red", "green"]}
    assert prop(choices, "level") == {"type": "integer", "enum": [1, 2]}
    assert prop(choices, "free") == {}
    good = {
        "maybe": None,
        "legacy": "x",
        "either": 3,
        "mode": "fast",
        "mixed": None,
        "color": "red",
        "level": 2,
        "free": {"any": ["thing"]},
    }
    assert valid(choices, good)
    assert valid(choices, {**good, "maybe": 4, "either": "s", "mixed": "one"})
    assert not valid(choices, {**good, "maybe": "4"})
    assert not valid(choices, {**good, "either": 1.5})
    assert not valid(choices, {**good, "mode": "medium"})
    assert not valid(choices, {**good, "mixed": "two"})
    assert not valid(choices, {**good, "color": "RED"})
    assert not valid(choices, {**good, "level": 3})


def test_annotated_description_wins_over_docstring_at_its_own_level() -> None:
    assert prop(annotated, "query") == {"type": "string", "description": "what to look for"}
    assert prop(annotated, "tags") == {
        "type": "array",
        "items": {"type": "string", "description": "one tag"},
        "description": "kept, since Annotated describes only the items.",
    }
    assert prop(annotated, "size") == {"type": "integer", "description": "pixels"}


def test_json_defaults_are_recorded_and_make_params_optional() -> None:
    assert schema(defaults)["required"] == []
    assert prop(defaults, "limit")["default"] == 10
    assert prop(defaults, "name")["default"] is None
    assert prop(defaults, "color")["default"] == "green"
    assert prop(defaults, "span")["default"] == [1, 2]
    assert "default" not in prop(defaults, "opaque")
    assert valid(defaults, {})


def test_default_the_type_forbids_is_refused() -> None:
    def f(name: str = None) -> None:  # type: ignore[assignment]
        """Classic slip: the default is not a str."""

    with pytest.raises(ToolDefinitionError, match=r"test_tools\..*f: parameter 'name'.*X \| None"):
        spec_for(tool(f))


GOOGLE = """Look up the weather.

    Uses the public forecast service.

    Args:
        city: Name of the city.
        days (int): How many days
            ahead, at most 7.
    """
REST = """Look up the weather.

    Uses the public forecast service.

    :param city: Name of the city.
    :param int days: How many days
        ahead, at most 7.
    """
NUMPY = """Look up the weather.

    Uses the public forecast service.

    Parameters
    ----------
    city : str
        Name of the city.
    days : int
        How many days
        ahead, at most 7.
    """


@pytest.mark.parametrize("doc", [GOOGLE, REST, NUMPY], ids=["google", "rest", "numpy"])
def test_docstring_styles(doc: str) -> None:
    def weather(city: str, days: int = 1) -> None:
        pass

    weather.__doc__ = doc
    spec = spec_for(weather)
    assert spec.description == "Look up the weather.\n\nUses the public forecast service."
    assert spec.parameters["properties"]["city"]["description"] == "Name of the city."
    assert spec.parameters["properties"]["days"]["description"] == ("How many days\nahead, at most 7.")


def test_no_docstring_gives_empty_description_and_no_property_descriptions() -> None:
    def bare(x: int) -> None:
        pass

    spec = spec_for(bare)
    assert spec.description == ""
    assert spec.parameters["properties"] == {"x": {"type": "integer"}}


def test_string_annotations_are_resolved() -> None:
    def later(x: "int", y: "list[str] | None" = None) -> None:
        """Annotations as strings, as under ``from __future__ import annotations``."""

    assert schema(later)["properties"] == {
        "x": {"type": "integer"},
        "y": {
            "anyOf": [{"type": "array", "items": {"type": "string"}}, {"type": "null"}],
            "default": None,
        },
    }


def test_idempotency_key_is_hidden_from_the_schema() -> None:
    spec = spec_for(charge)
    assert spec.takes_idempotency_key is True
    assert spec.idempotent is True
    assert spec.name == "shop.charge"
    assert list(spec.parameters["properties"]) == ["amount"]
    assert spec.parameters["required"] == ["amount"]
    assert not valid(charge, {"amount": 1, "idempotency_key": "k"})
    assert spec_for(scalars).takes_idempotency_key is False


def test_decorator_returns_the_same_callable_function() -> None:
    assert charge(5, idempotency_key="k") == "5:k"
    assert spec_for(charge).func is charge
    assert spec_for(charge) == spec_for(charge), "derivation is deterministic"


def test_plain_function_gets_defaults() -> None:
    spec = spec_for(plain)
    assert (spec.name, spec.idempotent, spec.reconcile, spec.plugin) == ("plain", False, None, "")
    assert spec.func("Oslo") == "Oslo/3"
    assert spec.parameters == {
        "type": "object",
        "properties": {"city": {"type": "string"}, "days": {"type": "integer", "default": 3}},
        "required": ["city"],
        "additionalProperties": False,
    }
    assert not hasattr(plain, "__corral_tool__")


def test_wrapper_keeps_the_spec_but_is_what_gets_called() -> None:
    @functools.wraps(charge)
    def logged(*args: Any, **kwargs: Any) -> str:
        return "logged " + charge(*args, **kwargs)

    spec = spec_for(logged)
    assert spec.func is logged
    assert spec.name == "shop.charge" and spec.idempotent


def test_with_plugin_and_describe() -> None:
    spec = spec_for(charge).with_plugin("shop")
    assert spec.plugin == "shop"
    assert spec_for(charge).plugin == ""
    described = spec.describe()
    assert described == {
        "name": "shop.charge",
        "description": "Charge once however often it is retried.",
        "parameters": spec.parameters,
        "read_only": False,
        "idempotent": True,
        "high_stakes": False,
        "secrets": [],
        "plugin": "shop",
        "source": "plugin shop",
        "retry": None,
        "downstream": None,
    }
    described["parameters"]["properties"].clear()
    assert spec.parameters["properties"], "describe() must hand out a copy"
    with pytest.raises(dataclasses.FrozenInstanceError):
        spec.name = "other"  # type: ignore[misc]


def test_reconciled() -> None:
    assert Reconciled.happened({"id": 7}) == Reconciled(took_effect=True, result={"id": 7})
    assert Reconciled.not_happened() == Reconciled(took_effect=False, result=None)


def test_reconcile_is_kept_when_it_fits() -> None:
    def check(idempotency_key: str, to: str, body: str = "") -> Reconciled | None:
        return Reconciled.not_happened()

    @tool(reconcile=check)
    def send(to: str, idempotency_key: str, body: str = "") -> None:
        """Send a message."""

    assert spec_for(send).reconcile is check
    assert spec_for(send).idempotent is False


def _star_args(*items: int) -> None: ...
def _star_kwargs(**items: int) -> None: ...
def _positional(x: int, /) -> None: ...
def _unannotated(x) -> None: ...  # type: ignore[no-untyped-def]
def _a_set(x: set[int]) -> None: ...
def _a_class(x: ToolSpec) -> None: ...
def _int_keys(x: dict[int, str]) -> None: ...
def _object_in_union(x: Literal[1, "a"] | list[object]) -> None: ...
def _bad_ref(x: "Nowhere") -> None: ...  # type: ignore[name-defined]  # noqa: F821


def _typo(limit: int) -> None:
    """Typo in the docs.

    Args:
        limt: How many.
    """


class _Shape(enum.Enum):
    BOX = (1, 2)


def _enum_of_tuples(x: _Shape) -> None: ...


@pytest.mark.parametrize(
    ("func", "expected"),
    [
        (_star_args, r"_star_args: parameter 'items' is \*args/\*\*kwargs.*list each argument"),
        (_star_kwargs, r"_star_kwargs: parameter 'items' is \*args/\*\*kwargs"),
        (_positional, r"_positional: parameter 'x' is positional-only.*remove the '/'"),
        (_unannotated, r"_unannotated: parameter 'x' has no type annotation.*`x: str`"),
        (_a_set, r"_a_set: parameter 'x' has type set\[int\].*use str, int"),
        (_a_class, r"_a_class: parameter 'x' has type ToolSpec, which.*use str"),
        (
            _int_keys,
            r"_int_keys: parameter 'x' has dict keys of type int, but.*dict\[str, \.\.\.\]",
        ),
        (_object_in_union, r"_object_in_union: parameter 'x' has type object"),
        (_enum_of_tuples, r"_enum_of_tuples: parameter 'x' allows the value \(1, 2\)"),
        (_bad_ref, r"_bad_ref: cannot read .*Nowhere.*importable"),
        (_typo, r"_typo: the docstring documents limt.*fix the spelling"),
        (lambda x: None, r"<lambda>: tool name '<lambda>' is invalid.*name="),
    ],
    ids=lambda v: getattr(v, "__name__", "")[:20] or None,
)
def test_rejections_name_function_parameter_and_fix(func: Callable[..., Any], expected: str) -> None:
    decorated = tool(func)  # options only: derivation waits for registration
    with pytest.raises(ToolDefinitionError, match=expected):
        spec_for(decorated)
    with pytest.raises(ToolDefinitionError, match=expected):
        spec_for(func)


def forecast() -> Callable[..., str]:
    """A fresh undecorated tool function, so decorating it leaks into no other test."""

    def forecast(city: str, days: int = 3) -> str:
        return f"{city}/{days}"

    return forecast


@pytest.mark.parametrize("name", ["has space", "9starts_with_digit", "", "x" * 65, "a/b"])
def test_bad_names_are_refused(name: str) -> None:
    with pytest.raises(ToolDefinitionError, match=r"forecast: tool name .*invalid"):
        spec_for(tool(name=name)(forecast()))


def test_longest_allowed_name() -> None:
    assert spec_for(tool(name="x" * 64)(lambda: None)).name == "x" * 64


def test_reconcile_must_be_callable() -> None:
    with pytest.raises(ToolDefinitionError, match=r"forecast: reconcile='nope' is not callable"):
        spec_for(tool(reconcile="nope")(forecast()))  # type: ignore[call-overload]


def test_reconcile_with_idempotent_is_refused() -> None:
    def check(idempotency_key: str, **args: Any) -> None:
        return None

    with pytest.raises(ToolDefinitionError, match=r"forecast: reconcile is never called.*drop"):
        spec_for(tool(idempotent=True, reconcile=check)(forecast()))


def test_reconcile_that_cannot_take_the_arguments_is_refused() -> None:
    def missing_days(idempotency_key: str, city: str) -> None:
        return None

    def needs_days(idempotency_key: str, city: str, days: int) -> None:
        return None

    def fits(idempotency_key: str, **args: Any) -> None:
        return None

    pattern = r"forecast: reconcile .* cannot be called as reconcile\(idempotency_key, city, days\)"
    with pytest.raises(ToolDefinitionError, match=pattern):
        spec_for(tool(reconcile=missing_days)(forecast()))
    with pytest.raises(ToolDefinitionError, match=pattern):
        spec_for(tool(reconcile=needs_days)(forecast()))
    assert spec_for(tool(reconcile=fits)(forecast())).reconcile is fits


# --------------------------------------------------------------------------- metadata


def test_metadata_flags_are_on_the_spec_and_in_describe() -> None:
    @tool(read_only=True, high_stakes=True, secrets=("GITHUB_TOKEN", "API_KEY", "GITHUB_TOKEN"))
    def look(repo: str, secrets: dict[str, str]) -> str:
        """Read a private repository's description."""
        return repo

    spec = spec_for(look)
    assert (spec.read_only, spec.high_stakes, spec.secrets) == (True, True, ("GITHUB_TOKEN", "API_KEY"))
    assert spec.idempotent, "read-only implies idempotent: an interrupted read is simply run again"
    described = spec.describe()
    assert (described["read_only"], described["high_stakes"], described["secrets"]) == (
        True,
        True,
        ["GITHUB_TOKEN", "API_KEY"],
    )
    json.dumps(described)
    assert "secrets" not in spec.parameters["properties"], "the values are corral's to fill, never the model's"
    bare = spec_for(plain)
    assert (bare.read_only, bare.high_stakes, bare.secrets, bare.settings_schema) == (False, False, (), None)


def test_declared_secrets_and_the_secrets_parameter_go_together() -> None:
    def undeclared(repo: str, secrets: dict[str, str]) -> str:
        """Read."""
        return repo

    def unreceived(repo: str) -> str:
        """Read."""
        return repo

    with pytest.raises(ToolDefinitionError, match=r"takes a `secrets` parameter but declares none"):
        spec_for(tool()(undeclared))
    with pytest.raises(ToolDefinitionError, match=r"declares secrets \['TOKEN'\] but takes no `secrets` parameter"):
        spec_for(tool(secrets=("TOKEN",))(unreceived))


@pytest.mark.parametrize(
    ("options", "expected"),
    [
        ({"readonly": True}, r"forecast: @tool got an unknown option 'readonly'; did you mean 'read_only'\?"),
        ({"colour": "red"}, r"forecast: @tool got an unknown option 'colour'; the options are name, read_only"),
        ({"high_stakes": "yes"}, r"forecast: @tool\(high_stakes='yes'\) must be True or False"),
        ({"secrets": "TOKEN"}, r"forecast: @tool\(secrets='TOKEN'\) must be a tuple.*secrets=\('GITHUB_TOKEN',\)"),
        ({"secrets": ("9LIVES",)}, r"forecast: @tool secret name '9LIVES' is invalid"),
        ({"secrets": (1,)}, r"forecast: @tool\(secrets=\(1,\)\) must be a tuple of secret names"),
    ],
)
def test_bad_options_are_refused_naming_the_tool(options: dict[str, Any], expected: str) -> None:
    with pytest.raises(ToolDefinitionError, match=expected):
        tool(**options)(forecast())


def test_read_only_with_reconcile_is_refused() -> None:
    def check(idempotency_key: str, **args: Any) -> None:
        return None

    with pytest.raises(ToolDefinitionError, match=r"forecast: reconcile is never called for a read_only tool"):
        tool(read_only=True, reconcile=check)(forecast())


class Limits(TypedDict, total=False):
    hosts: list[str]
    size: Annotated[int, "bytes"]


class Strict(TypedDict):
    token_name: str
    retries: NotRequired[int]


def test_settings_parameter_is_hidden_and_its_typeddict_becomes_the_settings_schema() -> None:
    @tool
    def get(url: str, settings: Limits) -> str:
        """Fetch."""
        return url

    spec = spec_for(get)
    assert list(spec.parameters["properties"]) == ["url"]
    assert spec.settings_schema is not None
    assert spec.settings_schema == {
        "type": "object",
        "properties": {
            "hosts": {"type": "array", "items": {"type": "string"}},
            "size": {"type": "integer", "description": "bytes"},
        },
        "required": [],
        "additionalProperties": False,
    }
    assert not valid(get, {"url": "x", "settings": {}}), "the model cannot pass settings"


def test_typeddict_arguments_get_required_keys_and_no_extras() -> None:
    def configure(options: Strict) -> None:
        """Configure."""

    assert prop(configure, "options") == {
        "type": "object",
        "properties": {"token_name": {"type": "string"}, "retries": {"type": "integer"}},
        "required": ["token_name"],
        "additionalProperties": False,
    }
    assert valid(configure, {"options": {"token_name": "T"}})
    assert not valid(configure, {"options": {"retries": 1}})
    assert not valid(configure, {"options": {"token_name": "T", "other": 1}})


def test_settings_of_another_type_are_refused() -> None:
    def wrong(url: str, settings: str) -> None: ...

    def bare(url: str, settings) -> None: ...  # type: ignore[no-untyped-def]

    def mapping(url: str, settings: dict[str, Any]) -> None: ...

    with pytest.raises(ToolDefinitionError, match=r"wrong: parameter 'settings' is corral's settings table.*TypedDict"):
        spec_for(wrong)
    with pytest.raises(ToolDefinitionError, match=r"bare: parameter 'settings' has no type annotation"):
        spec_for(bare)
    assert spec_for(mapping).settings_schema == {"type": "object", "additionalProperties": {}}


def test_epydoc_and_section_free_docstrings_still_parse() -> None:
    def epy(city: str) -> None:
        """Look up the weather.

        @param city: Name of the city.
        """

    def prose(city: str) -> None:
        """Look up the weather.

        Returns a short forecast, in words.
        """

    assert spec_for(epy).parameters["properties"]["city"]["description"] == "Name of the city."
    assert spec_for(prose).description == "Look up the weather.\n\nReturns a short forecast, in words."
