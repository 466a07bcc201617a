"""Tool names as model APIs accept them: ``[a-zA-Z0-9_-]{1,64}``.

corral's tool names may hold a dot: every MCP server's tool does (``git.git_log``), and a
plugin may register one. OpenAI's and Anthropic's APIs refuse such a name, so each request
is sent with the dotted names replaced by an alias (``git__git_log``) and each answer's
tool calls are given their corral names back. The journal, the guardrails and the agent
only ever see corral's names; the alias exists on the wire to the provider alone.
"""

from __future__ import annotations

import hashlib
import re
from collections.abc import Iterable
from dataclasses import replace

from corral.models.types import Request, Response

ACCEPTED = re.compile(r"^[a-zA-Z0-9_-]{1,64}$")


def for_provider(request: Request) -> tuple[Request, dict[str, str]]:
    """``request`` with every tool name a model API would refuse aliased, and the aliases
    (alias -> corral name). A request whose names are all accepted is returned as it is."""
    names = {tool.name for tool in request.tools} | {
        call.name for message in request.messages for call in message.tool_calls
    }
    by_name = accepted(names)
    if not by_name:
        return request, {}
    aliases = {alias: name for name, alias in by_name.items()}
    tools = tuple(replace(tool, name=by_name.get(tool.name, tool.name)) for tool in request.tools)
    messages = tuple(
        replace(m, tool_calls=tuple(replace(c, name=by_name.get(c.name, c.name)) for c in m.tool_calls))
        if m.tool_calls
        else m
        for m in request.messages
    )
    return replace(request, tools=tools, messages=messages), aliases


def accepted(names: Iterable[str]) -> dict[str, str]:
    """An alias for each of ``names`` that a model API would refuse (corral name -> alias),
    none taking another's name: ``git.git_log`` is ``git__git_log``. The tool door lists
    tools under the same aliases (``corral.sandbox.door.tools``)."""
    taken = set(names)
    by_name: dict[str, str] = {}
    for name in sorted(name for name in taken if not ACCEPTED.match(name)):
        alias = re.sub(r"[^a-zA-Z0-9_-]", "_", name.replace(".", "__"))[:64]
        if alias in taken or not alias:
            alias = f"{alias[:55]}_{hashlib.sha256(name.encode()).hexdigest()[:8]}"
        taken.add(alias)
        by_name[name] = alias
    return by_name


def from_provider(response: Response, aliases: dict[str, str]) -> Response:
    """``response`` with its tool calls named as corral names the tools."""
    if not aliases or not response.tool_calls:
        return response
    calls = tuple(replace(call, name=aliases.get(call.name, call.name)) for call in response.tool_calls)
    return replace(response, tool_calls=calls)
