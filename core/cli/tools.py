"""``corral tools [AGENT]``: every tool an agent can call, where it comes from, what it declares.

Plugin tools come from the installed plugins (loaded as the daemon loads them). An MCP
server's tools are known once a run has read the server's list: they are taken from the
agent's latest run that journaled it, so nothing is started and no secret is used; a
server no run has listed yet is shown with its grant and a note. Works with the daemon down.
"""

from __future__ import annotations

import argparse
import json
from typing import Any

from corral.cli.common import EXIT_OK, agent_argument, agent_named, command, load, print_json, reader
from corral.config import AgentConfig, CorralConfig
from corral.config.mcp import plugin_grants, split_grant

RUNS_SEARCHED = 50
"""Runs of an agent searched, newest first, for each MCP server's latest tool list."""


def add_commands(sub: Any, common: argparse.ArgumentParser) -> None:
    tools = command(
        sub,
        common,
        "tools",
        "the tools each agent can call: source, annotations, schema",
        description="Every tool an agent can call: plugin tools (from the installed plugins) and MCP servers' tools "
        "(as the agent's latest run listed them; a server no run has listed yet is shown by its grant). For each: "
        "its source, whether it is read-only, idempotent or needs approval, and with --schema its JSON schema. "
        "Works with the daemon down.",
        examples=["corral tools", "corral tools triage --schema", "corral tools --json"],
    )
    agent_argument(tools, "agent", nargs="?", help="only this agent's tools")
    tools.add_argument("--schema", action="store_true", help="print each tool's argument schema too")
    tools.add_argument("--json", action="store_true", help="as JSON: agent -> tools, schemas included")
    tools.set_defaults(func=cmd_tools)


def cmd_tools(args: argparse.Namespace) -> int:
    from corral.pluginmanager import load_plugins

    config = load(args)
    if args.agent:
        agent_named(config, args.agent)
    agents = [config.agents[args.agent]] if args.agent else list(config.agents.values())
    plugins = load_plugins(config.plugins, config.home / "plugins")
    listed = _listed(config, [agent.name for agent in agents])
    found = {agent.name: _tools(config, agent, plugins.tools, listed.get(agent.name, {})) for agent in agents}
    if args.json:
        print_json(found)
        return EXIT_OK
    for name, tools in found.items():
        print(f"{name}:" if tools else f"{name}: no tools granted")
        for tool in tools:
            flags = [f for f in ("read_only", "idempotent", "high_stakes") if tool.get(f)]
            marks = f" [{', '.join(flag.replace('high_stakes', 'needs approval') for flag in flags)}]" if flags else ""
            print(f"  {tool['name']}  ({tool['source']}){marks}")
            if tool.get("note"):
                print(f"      {tool['note']}")
            elif tool.get("description"):
                print(f"      {tool['description'].splitlines()[0][:100]}")
            if args.schema and "parameters" in tool:
                print("      " + json.dumps(tool["parameters"], sort_keys=True))
    return EXIT_OK


def _tools(
    config: CorralConfig, agent: AgentConfig, plugin_tools: dict[str, Any], listed: dict[str, list[dict[str, Any]]]
) -> list[dict[str, Any]]:
    """What one agent can call, plugin tools first, then each MCP server's."""
    from corral.mcp.listing import offered

    tools: list[dict[str, Any]] = []
    for name in plugin_grants(agent.tools, config.mcp):
        spec = plugin_tools.get(name)
        if spec is None:
            tools.append({"name": name, "source": "missing", "note": "no loaded plugin provides it (`corral check`)"})
        else:
            tools.append(spec.describe())
    servers = dict.fromkeys(p[0] for g in agent.tools if (p := split_grant(g)) and p[0] in config.mcp)
    for server in servers:
        server_config = config.mcp[server]
        if server not in listed:
            grants = [g for g in agent.tools if g.startswith(f"{server}.")]
            tools.append(
                {
                    "name": ", ".join(grants),
                    "source": f"mcp server {server} ({server_config.transport}: {server_config.describe()})",
                    "note": "not listed yet: a run reads the server's tools at its first use of it",
                }
            )
            continue
        usable = offered(server_config, listed[server], agent.tools)
        tools += [spec.describe() for spec in usable.specs.values()]
        source = f"mcp server {server}"
        tools += [{"name": name, "source": source, "note": why} for name, why in usable.unusable.items()]
    return tools


def _listed(config: CorralConfig, agents: list[str]) -> dict[str, dict[str, list[dict[str, Any]]]]:
    """Each agent's latest journaled tool list of each MCP server (none when the store is absent)."""
    if not config.mcp or not (config.home / "store").exists():
        return {}
    store, records = reader(config)
    found: dict[str, dict[str, list[dict[str, Any]]]] = {}
    try:
        with store.read() as txn:
            for agent in agents:
                lists = found.setdefault(agent, {})
                for number, run in enumerate(records.runs_newest_first(txn, agent)):
                    if number >= RUNS_SEARCHED:
                        break
                    for step in records.steps(txn, run["id"]):
                        if step["kind"] == "mcp" and step.get("ok") and step["name"] not in lists:
                            lists[step["name"]] = step.get("value") or []
    finally:
        store.close()
    return found
