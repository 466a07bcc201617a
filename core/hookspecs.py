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
    """A run's attempt began: its state became ``running`` (a first attempt or a resume),
    just before its process is spawned.

    Called in the daemon, off the run's own path, from the durable event stream
    (docs/plugins.md, "Events"), in order with the run's steps: a slow listener delays
    only other listeners, never the agent. ``run`` is a copy of the run record (``id``,
    ``agent``, ``attempt``, ``trigger``, ``trace_id``, ...); changing it has no effect.

    :returns: nothing; the return value is ignored.
    """


@hookspec
def corral_step_done(run: dict[str, Any], step: dict[str, Any]) -> None:
    """A journaled step finished and is durable: a tool call, a model call, a ``ctx.state``
    change, a refused request, a step a human released.

    ``step`` is the journal entry (``seq``, ``kind``, ``name``, ``args``, ``ok``,
    ``value`` or ``error``, ``started``, ``ended``, ``attempt``; a model step also
    ``model``, ``usage`` and ``cost_usd``) plus ``replayed``. Steps answered from the
    journal on resume are reported too, with ``replayed`` true. ``run`` is the run record
    when the hook is called. Called in order, off the run's path, from the durable event
    stream (docs/plugins.md, "Events"): once per step, and again only if the daemon died
    between calling it and recording that it did.

    :returns: nothing; the return value is ignored.
    """


@hookspec
def corral_run_finished(run: dict[str, Any]) -> None:
    """A run reached an end state, or was put on hold or interrupted.

    ``run["state"]`` is one of ``succeeded``, ``failed``, ``cancelled``,
    ``abandoned``, ``on_hold`` or ``interrupted``; ``run["error"]`` says why when it
    did not succeed (``error["kind"]``: ``gave_up`` when a resume was refused after
    ``max_attempts``, ``config`` when its agent left the config, ...). Called for every
    change into one of these states, whatever path made it, from the same durable event
    stream as :func:`corral_step_done`, in order with the run's steps. Alert sinks and
    metrics build on this hook.

    :returns: nothing; the return value is ignored.
    """


# --------------------------------------------------------------------------- alerts


@hookspec
def corral_register_alert_sinks(register: Callable[..., None]) -> None:
    """Offer alert sink types, which ``[alerts.sinks.NAME]`` tables name with ``type``.

    Called once in each process that builds sinks (the daemon, a foreground
    ``corral run``, ``corral check``), one plugin at a time. Call
    ``register(kind, factory)`` for each type. ``factory(settings, section=...)`` builds
    one sink from its table: ``settings`` holds the table's keys except corral's own
    (``type``, ``escalate_to``, ``retries``, ``retry_wait``, ``retry_max_wait``), with
    each ``NAME_env`` key already replaced by ``NAME`` holding a
    :class:`corral.alerts.Secret` of that variable's value; ``section`` is the table's
    name for messages. It raises :class:`corral.ConfigError` listing every problem.
    The sink it returns has ``async deliver(alert)``, which returns once delivered or
    raises :class:`corral.alerts.SinkError` (``retryable`` says whether trying again
    can help), and ``target()``, a description safe to log. Subclassing
    :class:`corral.alerts.Sink` provides both, a timeout and secret-free errors. The
    built-in types come from ``corral.plugins.alert_sinks`` through this same hook.
    Registering a kind another plugin registered is an error naming both.

    :param register: ``register(kind: str, factory)``.
    :returns: nothing; the return value is ignored.
    """


# --------------------------------------------------------------------------- sandbox


@hookspec
def corral_register_sandbox_backends(register: Callable[..., None]) -> None:
    """Offer sandbox backends: the confinement of agent processes on a platform.

    Called once in the daemon (and in a foreground ``corral run`` or ``corral doctor``),
    when the first run starts or ``doctor`` asks. Call ``register(backend)`` with an
    object following :class:`corral.sandbox.backend.SandboxBackend` (``name``,
    ``usable()``, ``detect(users)``, ``plan(request, offered)``). corral uses the first
    registered backend whose ``usable()`` is true, in pluggy's call order (mark an
    implementation ``tryfirst`` to take precedence over the built-in Linux and macOS
    backends). The child-side module a plan names is imported in the agent's process
    before any agent code runs.

    :param register: ``register(backend)``.
    :returns: nothing; the return value is ignored.
    """


# ------------------------------------------------------------------------- triggers


@hookspec
def corral_register_triggers(register: Callable[..., None]) -> None:
    """Offer trigger kinds, which ``[[agents.NAME.triggers]]`` tables name with ``type``.

    Called once in the daemon (and in ``corral check``) before the schedule is built, and
    again on each config reload, one plugin at a time. Call ``register(kind, factory)``
    for each kind. ``factory(settings, context)`` builds one trigger from its table:
    ``settings`` holds the table's keys except corral's own (``type``, ``id``,
    ``jitter``, ``input``); ``context`` is a :class:`corral.schedule.BuildContext`
    (agent, schedule key, section for messages, config folder, environment). It raises
    :class:`corral.ConfigError` listing every problem, and returns a
    :class:`corral.schedule.TimedTrigger` (fire times it computes; corral waits, jitters,
    stores the last fire time and catches up after downtime) or a
    :class:`corral.schedule.EventTrigger` (started on the daemon's event loop; it calls
    ``await env.fire(payload)`` when its event happens). The built-in kinds (cron,
    interval, once, file, webhook) come from ``corral.plugins.triggers`` through this
    same hook. Registering a kind another plugin registered is an error naming both.

    :param register: ``register(kind: str, factory)``.
    :returns: nothing; the return value is ignored.
    """


# ----------------------------------------------------------------------- guardrails


@hookspec
def corral_register_guardrails(register: Callable[..., None]) -> None:
    """Offer guardrails: rules asked before each model and tool call and after each step.

    Called once in the daemon at start, one plugin at a time. Call ``register(guardrail)``
    for each: an object with a ``name`` (shown in the journal and ``corral trace``) and
    ``start(run, agent) -> RunGuard | None`` (see :mod:`corral.guardrails`), called when an
    attempt of a run begins; None means the guardrail does not apply to that agent. The
    guard's ``before(action)`` and ``after(step)`` run on the daemon's step path for every
    step of the run, replayed ones included (so counters rebuild on resume): they must
    only count and compare, never block or do I/O. The built-ins (limits, repeats,
    refusals, approval) come from ``corral.plugins.guardrails`` through this same hook.

    :param register: ``register(guardrail)``.
    :returns: nothing; the return value is ignored.
    """


# -------------------------------------------------------------------- model providers


@hookspec
def corral_register_model_providers(register: Callable[..., None]) -> None:
    """Offer model APIs that ``[models.NAME] provider`` can name.

    Called once in the daemon (and by ``corral check``), one plugin at a time. Call
    ``register(adapter)`` for each: an object with a ``name`` (the ``provider`` value),
    ``build(endpoint, request) -> HttpCall`` and ``parse(endpoint, body, headers) ->
    Response`` (see :class:`corral.models.provider.Adapter`). Adapters do no I/O: the
    daemon sends the call, with its retries, circuit breaker, budgets and journal, so a
    new provider gets all of them. The built-ins (``openai``, ``anthropic``) come from
    ``corral.plugins.model_providers`` through this same hook. Registering a name another
    plugin registered is an error naming both.

    :param register: ``register(adapter)``.
    :returns: nothing; the return value is ignored.
    """


# ------------------------------------------------------------------------ commands


@hookspec
def corral_register_commands(register: Callable[..., None]) -> None:
    """Offer ``corral`` subcommands.

    Called by the ``corral`` command line before it parses its arguments, for plugins from
    the ``corral`` entry points and the config's drop-ins (corral's built-in plugins add
    none). Call ``register(add_commands)``; corral calls ``add_commands(sub, common)``,
    where ``sub.add_parser(name, parents=[common], help=...)`` adds a command (``common``
    carries ``--config``) and ``set_defaults(func=...)`` names the function that runs it:
    ``func(args) -> int`` (the exit code). corral's own commands are added the same way.
    A name corral already has is refused, naming the plugin.

    :param register: ``register(add_commands)``.
    :returns: nothing; the return value is ignored.
    """
