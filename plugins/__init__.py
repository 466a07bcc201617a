"""corral's built-in plugins, registered exactly like third-party ones."""

BUILTINS: tuple[str, ...] = ("corral.plugins.example_tools",)
"""Module names of the built-in plugins, loaded before entry points and drop-ins."""
