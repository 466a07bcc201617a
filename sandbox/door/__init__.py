"""The model door: an OpenAI- and Anthropic-compatible HTTP endpoint inside the run's sandbox.

Served by the agent's own process (the child side of the wire), so nothing outside the
sandbox is opened; every request it accepts becomes an ordinary ``model`` step over the
wire. See docs/models.md, "The model door".
"""

API_PREFIX = "/corral/v1"
"""Where the state and log API is served (:mod:`corral.sandbox.door.api`)."""
MCP_PATH = "/mcp"
"""Where the tool door is served (:mod:`corral.sandbox.door.tools`)."""
