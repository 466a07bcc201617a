"""corral's built-in plugins, registered exactly like third-party ones."""

BUILTINS: tuple[str, ...] = (
    "corral.plugins.example_tools",
    "corral.plugins.files",
    "corral.plugins.fetch",
    "corral.plugins.shell",
    "corral.plugins.guardrails",
    "corral.plugins.model_providers",
    "corral.plugins.alert_sinks",
    "corral.plugins.triggers",
    "corral.plugins.sandbox_linux",
    "corral.plugins.sandbox_macos",
)
"""Module names of the built-in plugins, loaded before entry points and drop-ins."""
