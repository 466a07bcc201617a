"""corral's built-in plugins, registered exactly like third-party ones.

Each module (or package) here is a plugin of plain hookimpls holding its own code: the
tools, the guardrails, the model providers, the alert sinks, the trigger kinds, and the
sandbox backends' registration. Their names are listed in
:data:`corral.pluginmanager.BUILTINS`; core never imports this package.
"""
