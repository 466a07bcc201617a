"""The built-in alert sink types, offered through the same hook as a third-party sink package.

The sinks are imported inside the hook, not with this module: agent processes load the
built-in plugins too, and must not pay for HTTP and SMTP clients they never use.
"""

from __future__ import annotations

from collections.abc import Callable

import corral


@corral.hookimpl
def corral_register_alert_sinks(register: Callable[..., None]) -> None:
    """desktop, email, webhook (json, slack, discord), ntfy and command."""
    from corral.alerts import BUILTIN_SINKS

    for kind, cls in BUILTIN_SINKS.items():
        register(kind, cls)
