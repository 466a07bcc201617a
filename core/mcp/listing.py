"""An MCP server's tool list, as corral journals it and turns it into tool specs.

A list is read once per attempt (``tools/list``), kept in the journal as plain data
(name, description, ``inputSchema``, ``annotations`` of each tool) and turned here into
:class:`corral.tools.ToolSpec` objects named ``SERVER.TOOL``, for the tools the agent is
granted. Annotations are hints from the server, mapped conservatively: ``readOnlyHint``
makes a tool read-only (rerun after a crash), ``idempotentHint`` idempotent, an explicit
``destructiveHint`` asks a human first (unless ``[mcp.NAME] approve`` says otherwise);
a tool without hints is non-idempotent. A schema that is not valid JSON Schema makes
that tool unusable, with the server and tool named, and leaves the others usable.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

import jsonschema_rs

from corral.config.mcp import McpServer, granted
from corral.tools import TOOL_NAME, ToolSpec

MAX_TOOLS = 1000
"""Tools one server may list; a server listing more is refused (a runaway paginator, a hostile server)."""
MAX_PAGE_BYTES = 8 * 1024 * 1024
"""The largest response of an HTTP server's ``tools/list`` read (a page of a thousand large schemas)."""


class ListingError(ValueError):
    """The server's answer to ``tools/list`` is not a tool list corral can use (read by the operator)."""


def plain_listing(tools: Any, server: str) -> list[dict[str, Any]]:
    """The journaled form of a list: for each tool its name, description, input schema and
    annotations, checked to be the shapes MCP defines. Raises :class:`ListingError`."""
    if not isinstance(tools, list):
        raise ListingError(f"MCP server {server!r} answered tools/list with {type(tools).__name__}, not a list")
    if len(tools) > MAX_TOOLS:
        raise ListingError(f"MCP server {server!r} lists {len(tools)} tools, more than corral takes ({MAX_TOOLS})")
    plain: list[dict[str, Any]] = []
    for tool in tools:
        name = tool.get("name") if isinstance(tool, Mapping) else None
        if not isinstance(name, str) or not name:
            raise ListingError(f"MCP server {server!r} lists a tool without a name: {str(tool)[:200]}")
        schema = tool.get("inputSchema")
        annotations = tool.get("annotations") or {}
        if not isinstance(annotations, Mapping):
            raise ListingError(f"MCP server {server!r}: tool {name!r} has annotations that are not an object")
        plain.append(
            {
                "name": name,
                "description": str(tool.get("description") or tool.get("title") or ""),
                "inputSchema": schema,
                "annotations": {k: v for k, v in annotations.items() if k.endswith("Hint") and isinstance(v, bool)},
            }
        )
    return plain


@dataclass
class Offered:
    """What one listing gives an agent: the specs of its granted tools, and why each
    granted tool that cannot be used cannot (an invalid name or schema)."""

    specs: dict[str, ToolSpec] = field(default_factory=dict)
    unusable: dict[str, str] = field(default_factory=dict)
    validators: dict[str, jsonschema_rs.Draft202012Validator] = field(default_factory=dict)


def offered(config: McpServer, listing: list[dict[str, Any]], grants: tuple[str, ...]) -> Offered:
    """The granted tools of one server's journaled ``listing`` as corral tools."""
    result = Offered()
    for tool in listing:
        if not granted(grants, config.name, tool["name"]):
            continue
        name = f"{config.name}.{tool['name']}"
        if not TOOL_NAME.match(name):
            result.unusable[name] = (
                f"MCP server {config.name!r} offers tool {tool['name']!r}, whose name corral cannot use "
                f"({name!r} must match {TOOL_NAME.pattern}); rename it on the server or grant another tool"
            )
            continue
        schema = tool["inputSchema"]
        problem = schema_problem(schema)
        if problem:
            result.unusable[name] = (
                f"MCP server {config.name!r}: tool {tool['name']!r} has an inputSchema that is not valid JSON "
                f"Schema ({problem}); it cannot be called until the server fixes it"
            )
            continue
        result.validators[name] = jsonschema_rs.Draft202012Validator(schema)
        result.specs[name] = spec(config, name, tool)
    return result


def schema_problem(schema: Any) -> str | None:
    """Why ``schema`` is not a JSON Schema for tool arguments (an object schema), or None."""
    if not isinstance(schema, Mapping):
        return f"it is {type(schema).__name__}, not an object"
    if schema.get("type", "object") != "object":
        return f'its type is {schema.get("type")!r}; tool arguments are an object (type "object")'
    remote = _remote_reference(schema)
    if remote is not None:
        return f"it refers to {remote!r}; corral fetches no schema, so only local references (#...) are allowed"
    try:
        jsonschema_rs.meta.validate(dict(schema))
        jsonschema_rs.Draft202012Validator(dict(schema))
    except jsonschema_rs.ValidationError as exc:
        return str(exc.message)
    except (ValueError, jsonschema_rs.ReferencingError) as exc:
        return str(exc).splitlines()[0]
    return None


def _remote_reference(schema: Any) -> str | None:
    """The first ``$ref``/``$dynamicRef`` that is not a fragment of the schema itself."""
    if isinstance(schema, Mapping):
        for key, value in schema.items():
            if key in ("$ref", "$dynamicRef") and isinstance(value, str) and not value.startswith("#"):
                return value
            if (found := _remote_reference(value)) is not None:
                return found
    elif isinstance(schema, list):
        for item in schema:
            if (found := _remote_reference(item)) is not None:
                return found
    return None


def spec(config: McpServer, name: str, tool: Mapping[str, Any]) -> ToolSpec:
    """One tool of ``config``'s server as corral sees it (its annotations mapped)."""
    hints = tool.get("annotations") or {}
    read_only = hints.get("readOnlyHint") is True
    destructive = hints.get("destructiveHint") is True and not read_only
    approve = config.approve == "all" or (config.approve == "destructive" and destructive)
    return ToolSpec(
        name=name,
        description=str(tool.get("description") or ""),
        parameters=dict(tool["inputSchema"]),
        idempotent=read_only or hints.get("idempotentHint") is True,
        func=None,
        reconcile=None,
        takes_idempotency_key=False,
        plugin=f"mcp:{config.name}",
        read_only=read_only,
        high_stakes=approve,
        server=config.name,
    )


def changes(journaled: list[dict[str, Any]], live: list[dict[str, Any]], server: str) -> str | None:
    """How a server's tools changed since the run journaled its list, or None: a tool the
    journal lists that is gone, or whose schema or annotations differ. New tools are not a
    change (the run keeps the list it started with)."""
    now = {tool["name"]: tool for tool in live}
    for tool in journaled:
        current = now.get(tool["name"])
        if current is None:
            return f"MCP server {server!r} no longer offers tool {tool['name']!r}"
        for key, what in (("inputSchema", "input schema"), ("annotations", "annotations")):
            if current.get(key) != tool.get(key):
                return f"MCP server {server!r} now offers a different {what} for tool {tool['name']!r}"
    return None
