"""The console: a local web dashboard served by ``corral up`` (docs/console.md).

:mod:`~corral.console.server` runs it in the daemon's event loop;
:mod:`~corral.console.guard` stands in front of every route (sessions, CSRF, security
headers); :mod:`~corral.console.auth` holds login tokens and sessions;
:mod:`~corral.console.app` has the routes, :mod:`~corral.console.reads` what the pages
read from the store, and :mod:`~corral.console.live` the event-stream subscriber that
pushes live updates. The engine never imports it: the daemon (:mod:`corral.daemon.root`)
starts it and subscribes it to the event stream.
"""

from corral.console.server import Console

__all__ = ["Console"]
