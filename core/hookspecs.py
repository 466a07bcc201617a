"""Every hook corral calls, documented where it is declared.

Hooks *register things* or *hear about things*; they are not the hot path. corral calls
each registered tool, sink or listener itself, with its own error handling, so one
broken plugin is logged and blamed by name instead of stopping the others.
Implement them with ``@corral.hookimpl`` in a module or class, and ship it through the
``corral`` entry-point group, a ``[corral] plugins`` entry, or the plugin folder.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import pluggy

hookspec = pluggy.HookspecMarker("corral")

# --------------------------------------------------------------------------- tools


@hookspec
def corral_register_tools(register: Callable[..., None]) -> None:
    """Offer tools that agents may be granted.

    Called once per process that needs tools: in the daemon (to validate calls and
    describe tools) and in each agent's process (to run them). Call
    ``register(func)`` for every tool; ``func`` is a plain typed function, optionally
    decorated with ``@corral.tool(idempotent=True, reconcile=...)``. Its JSON schema
    is derived from its signature and docstring. Registering two tools of one name is
    an error that names both plugins. Agents only see the tools their config grants.

    :param register: ``register(func, *, name=None)``.
    :returns: nothing; the return value is ignored.
    """


# ------------------------------------------------------------------- run lifecycle


@hookspec
def corral_run_started(run: dict[str, Any]) -> None:
    """A run's process was spawned (first attempt or a resume).

    Called in the daemon, off the run's own path: a slow listener delays only other
    listeners, never the agent. ``run`` is a copy of the run record (``id``,
    ``agent``, ``attempt``, ``trigger``, ``trace_id``, ...); changing it has no effect.

    :returns: nothing; the return value is ignored.
    """


@hookspec
def corral_step_done(run: dict[str, Any], step: dict[str, Any]) -> None:
    """A journaled step finished and is durable.

    ``step`` is the journal entry (``seq``, ``kind``, ``name``, ``args``, ``ok``,
    ``value`` or ``error``, ``started``, ``ended``, ``attempt``) plus ``replayed``.
    Steps answered from the journal on resume are reported too, with ``replayed`` true.
    Called in order per run, off the run's path.

    :returns: nothing; the return value is ignored.
    """


@hookspec
def corral_run_finished(run: dict[str, Any]) -> None:
    """A run reached an end state, or was put on hold or interrupted.

    ``run["state"]`` is one of ``succeeded``, ``failed``, ``cancelled``,
    ``abandoned``, ``on_hold`` or ``interrupted``; ``run["error"]`` says why when it
    did not succeed. Alert sinks and metrics build on this hook.

    :returns: nothing; the return value is ignored.
    """
