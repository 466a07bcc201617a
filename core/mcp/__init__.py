"""Tools from MCP servers: their lists, their results, and the calls the daemon makes.

A ``[mcp.NAME]`` server's tools become corral tools named ``NAME.TOOL`` (docs/tools.md,
"Tools from MCP servers"). :mod:`corral.mcp.listing` turns a journaled tool list into
tool specs, :mod:`corral.mcp.results` a call's result into a tool outcome,
:mod:`corral.mcp.session` speaks to a server through the official ``mcp`` SDK (used in
the agent's process for stdio servers and in the daemon for HTTP ones), and
:mod:`corral.mcp.http` makes the daemon's HTTP calls with their retries.
"""
