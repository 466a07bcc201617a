"""corral: a supervisor for always-on AI agents.

Plugin authors need only this import: ``corral.hookimpl`` to implement hooks,
``corral.tool`` to describe a tool, ``corral.Reconciled`` for reconcile functions,
and the errors they may raise or catch. Everything else is private.
"""

import pluggy

from corral.errors import ConfigError, CorralError, ModelCallError, PluginError, ToolCallError, ToolDefinitionError
from corral.tools import Reconciled, ToolSpec, tool

__version__ = "0.1.0"

hookimpl = pluggy.HookimplMarker("corral")
"""Mark a function or method as an implementation of a corral hook."""

__all__ = [
    "ConfigError",
    "CorralError",
    "PluginError",
    "Reconciled",
    "ModelCallError",
    "ToolCallError",
    "ToolDefinitionError",
    "ToolSpec",
    "__version__",
    "hookimpl",
    "tool",
]
