"""The built-in alert sink types, offered through the same hook as a third-party sink package.

``desktop`` (:mod:`~corral.plugins.alert_sinks.desktop`), ``email``
(:mod:`~corral.plugins.alert_sinks.mail`), ``webhook`` with its json, slack and discord
formats (:mod:`~corral.plugins.alert_sinks.webhook`), ``ntfy``
(:mod:`~corral.plugins.alert_sinks.ntfy`) and ``command``
(:mod:`~corral.plugins.alert_sinks.command`). Each subclasses :class:`corral.alerts.Sink`
as a third-party sink does; what they share is here too (``_http``, ``_process``,
``_text``). The sinks are imported inside the hook, not with this module: a process that
loads the built-in plugins but asks for no sink type does not pay for HTTP and SMTP
clients it never uses.
"""

from __future__ import annotations

import pkgutil
from collections.abc import Callable

import corral

SINKS = (
    "corral.plugins.alert_sinks.desktop:DesktopSink",
    "corral.plugins.alert_sinks.mail:EmailSink",
    "corral.plugins.alert_sinks.webhook:WebhookSink",
    "corral.plugins.alert_sinks.ntfy:NtfySink",
    "corral.plugins.alert_sinks.command:CommandSink",
)
"""Each sink class, as ``module:class``; each registers under its own ``kind``."""


@corral.hookimpl
def corral_register_alert_sinks(register: Callable[..., None]) -> None:
    """desktop, email, webhook (json, slack, discord), ntfy and command."""
    for target in SINKS:
        cls = pkgutil.resolve_name(target)
        register(cls.kind, cls)
