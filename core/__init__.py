"""corral: a supervisor for always-on AI agents.

Plugin authors need only this import: ``corral.hookimpl`` to implement hooks,
``corral.tool`` to describe a tool, ``corral.Reconciled`` for reconcile functions,
``corral.RetryPolicy`` for a tool's retries, and the errors they may raise or catch
(``corral.ToolError`` says whether a failed call may be retried). Everything else is private.
"""

import pluggy

from corral.errors import (
    ConfigError,
    CorralError,
    ModelCallError,
    PluginError,
    ToolCallError,
    ToolDefinitionError,
    ToolError,
)
from corral.retrypolicy import RetryPolicy
from corral.tools import Reconciled, ToolSpec, tool

__version__ = "0.1.0"

hookimpl = pluggy.HookimplMarker("corral")
"""Mark a function or method as an implementation of a corral hook."""

__all__ = [
    "ConfigError",
    "CorralError",
    "PluginError",
    "Reconciled",
    "RetryPolicy",
    "ModelCallError",
    "ToolCallError",
    "ToolDefinitionError",
    "ToolError",
    "ToolSpec",
    "__version__",
    "hookimpl",
    "tool",
]
