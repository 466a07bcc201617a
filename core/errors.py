"""Every error corral raises on purpose, under one root.

Each class says who reads it. Messages are written for that reader: what happened,
and what to do about it.
"""

from __future__ import annotations


class CorralError(Exception):
    """Root of every error corral raises deliberately."""


class ConfigError(CorralError):
    """Operator: the configuration is invalid. The message names file, key and fix."""

    def __init__(self, problems: list[str]) -> None:
        self.problems = problems
        super().__init__("\n".join(problems))


class PluginError(CorralError):
    """Operator: a plugin could not be loaded or registered something invalid."""


class ToolDefinitionError(PluginError):
    """Plugin author: a tool function cannot be described as a JSON-schema tool."""


class StoreError(CorralError):
    """Operator: the LMDB store cannot be opened, written or migrated."""


class StoreLockedError(StoreError):
    """Operator: another daemon already owns this corral home."""


class ProtocolError(CorralError):
    """Operator: a child sent a frame that breaks the wire protocol; the run ends."""


class CommandFailed(CorralError):
    """Agent author: a command agent's program ended other than with status 0 and a readable
    result; ``stderr`` is the end of what it wrote there (the run's ``traceback``)."""

    def __init__(self, message: str, stderr: str = "") -> None:
        self.stderr = stderr
        super().__init__(message)


class ControlError(CorralError):
    """Operator: the daemon's control socket refused or could not answer a request."""


class DaemonUnavailable(ControlError):
    """Operator: nothing answers on the control socket (the daemon is not running)."""


class ToolCallError(CorralError):
    """Agent author or model: a tool call was refused or the tool raised.

    Raised inside the agent's process by ``ctx.tool`` so the agent can catch it and
    carry on; ``kind`` says whether the call was refused before running ("refused")
    or the tool itself failed ("failed").
    """

    def __init__(self, message: str, *, kind: str = "failed") -> None:
        self.kind = kind
        super().__init__(message)


class ToolError(ToolCallError):
    """Tool author: raise it from a tool to say what went wrong in words the model reads, and
    whether trying again can help.

    ``retryable=True`` says the call had no effect and may succeed later (the service
    answered 503 or 429 before doing anything): corral may then retry it under the tool's
    retry policy even when the tool is not idempotent, and counts it against the
    downstream's circuit breaker. ``retry_after`` is the wait the downstream asked for, in
    seconds (an HTTP ``Retry-After``). ``retryable=False`` (the default) is a failure that
    needs a fix (a 401, a bad argument): never retried, and proof the downstream is up.
    """

    def __init__(
        self, message: str, *, retryable: bool = False, retry_after: float | None = None, kind: str = "failed"
    ) -> None:
        if retry_after is not None and not (isinstance(retry_after, int | float) and retry_after >= 0):
            raise ValueError(f"retry_after={retry_after!r} must be seconds, 0 or more")
        self.retryable = retryable
        self.retry_after = None if retry_after is None else float(retry_after)
        super().__init__(message, kind=kind)


class ModelCallError(CorralError):
    """Agent author: a model call brokered by the daemon did not give an answer.

    Raised inside the agent's process by ``ctx.model``. ``kind`` says why: "refused"
    (the request or the model name was invalid, or the model is not granted),
    "not_configured" (its API key is missing in the daemon), "budget" (a hard limit of
    ``[agents.NAME.budget]`` would be exceeded; the run then stops), or the provider's
    error kind ("auth", "bad_request", "not_found", ...). Retryable failures never reach
    the agent: the daemon retries, and after the last try the run is interrupted and
    resumed later from its journal.
    """

    def __init__(self, message: str, *, kind: str = "failed") -> None:
        self.kind = kind
        super().__init__(message)


def explain(exc: BaseException) -> str:
    """``Type: message`` for a log line, even for an exception whose ``str`` itself fails
    (plugin code can raise anything)."""
    try:
        message = str(exc)
    except Exception:  # noqa: BLE001 - a broken __str__ must not break the report of the failure
        message = "(its message could not be read)"
    return f"{type(exc).__name__}: {message}" if message else type(exc).__name__
