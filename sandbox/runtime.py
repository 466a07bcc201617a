"""The agent's side of the wire: the ``ctx`` an agent function receives.

Every effect goes through the daemon first. A tool call is sent as a ``step``; the
daemon answers from the journal (a resumed run), refuses it, or says ``exec`` once
the start is durable. The tool then runs here, inside the sandbox, and its outcome is
sent back as ``done``. ``done`` gets no reply of its own: the daemon makes it durable
in the same commit as the next step, so one durable step costs one round trip.
"""

from __future__ import annotations

import errno
import importlib
import os
import socket
import sys
import threading
import traceback
from collections.abc import Callable, Iterator, MutableMapping, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import msgpack

from corral.errors import CommandFailed, ModelCallError, ProtocolError, ToolCallError, ToolError
from corral.packing import MAX_DEPTH, nesting, pack
from corral.sandbox.policy import Policy
from corral.wire import VERSION, BlockingChannel

if TYPE_CHECKING:
    from corral.sandbox.door.api import Api
    from corral.sandbox.door.tools import ToolDoor

MAX_STATE_KEY = 256
"""Bytes of a ``ctx.state`` key; LMDB keys are limited, and keys are names, not data."""


class RunAborted(BaseException):
    """The daemon ended the run; not an Exception, so agent code cannot swallow it."""


class TooDeep(TypeError):
    """A value nests lists and maps deeper than corral keeps (:data:`corral.packing.MAX_DEPTH`)."""


def _plain(value: Any, what: str) -> Any:
    """Refuse values the journal cannot hold, with a message that says which."""
    try:
        plain = msgpack.unpackb(pack(value), raw=False, strict_map_key=True)
    except (TypeError, ValueError, OverflowError) as exc:
        raise TypeError(
            f"{what} cannot be journaled ({exc}); use str, int, float, bool, None, lists and dicts with string keys"
        ) from None
    _shallow(plain, what)
    return value


def _shallow(value: Any, what: str) -> None:
    """Raise :class:`TooDeep` for a value nested past what the daemon takes."""
    if nesting(value) > MAX_DEPTH:
        raise TooDeep(
            f"{what}: lists and maps nested more than {MAX_DEPTH} levels deep, more than corral keeps; "
            "flatten it, or pass it as a JSON string"
        )


def _error(exc: BaseException) -> dict[str, Any]:
    message = str(exc) or type(exc).__name__
    if isinstance(exc, MemoryError):
        message = "out of memory: the run reached its address-space limit (limits.address_space_mb)"
    elif isinstance(exc, OSError) and exc.errno == errno.EFBIG:
        message = f"file size limit reached (limits.file_size_mb): {message}"
    elif isinstance(exc, CommandFailed):  # its traceback would be corral's; the program's stderr says more
        return {"type": type(exc).__name__, "message": message[:4000], "traceback": exc.stderr}
    return {
        "type": type(exc).__name__,
        "message": message[:4000],
        "traceback": "".join(traceback.format_exception(exc))[-8000:],
    }


def _tool_error(exc: Exception, name: str) -> dict[str, Any]:
    """A failed try as the daemon journals it, with what its retry and breaker need to know:
    ``transient`` (it may pass: ``ToolError(retryable=True)``, a refused or dropped
    connection, a timeout), ``no_effect`` (the tool says the call did nothing),
    ``deliberate`` (``ToolError(retryable=False)``: the downstream answered, it is up) and
    the ``retry_after`` it asked for. A tool that refuses (``ToolCallError(kind="refused")``,
    a path outside the workdir) is said to have refused, not failed."""
    error = _error(exc)
    error["kind"] = exc.kind if isinstance(exc, ToolCallError) else "failed"
    said = "refused the call" if error["kind"] == "refused" else "failed"  # the words match the kind
    error["message"] = f"tool {name!r} {said}: {error['message']}"
    if isinstance(exc, ToolError):
        error.update(transient=exc.retryable, no_effect=exc.retryable, deliberate=not exc.retryable)
        if exc.retry_after is not None:
            error["retry_after"] = exc.retry_after
    elif isinstance(exc, ConnectionError | TimeoutError):
        error["transient"] = True
    return error


@dataclass(frozen=True)
class _LocalTool:
    """What the agent's process needs to run a tool the daemon has already validated."""

    func: Callable[..., Any]
    takes_idempotency_key: bool
    reconcile: Callable[..., Any] | None
    settings: dict[str, Any] | None = None
    """The agent's ``tool_settings`` table, for a tool that takes ``settings``."""
    secrets: dict[str, str] | None = None
    """The values of the secrets the tool declares (granted to the agent); only this tool gets them."""
    retries: bool = False
    """A failed call waits for the daemon's word: try again (``exec``) or give up (``result``)."""


class _Mcp:
    """The run's MCP servers as the agent's process sees them: each server's tool list, read
    through the daemon once per run (which journals it), and the stdio servers themselves,
    which run here, inside the sandbox. An HTTP server's tools are called by the daemon."""

    def __init__(self, welcome: dict[str, Any]) -> None:
        from corral.sandbox.mcp_stdio import StdioServers

        self.servers: dict[str, Any] = welcome.get("servers") or {}
        self.grants = tuple(welcome.get("grants") or ())
        self.stdio = StdioServers({n: c for n, c in self.servers.items() if c.get("transport") == "stdio"})
        self.lists: dict[str, list[dict[str, Any]]] = {}

    def server_of(self, name: str) -> str | None:
        """The server a tool name belongs to (``git`` for ``git.git_log``), or None."""
        server, dot, _ = name.partition(".")
        return server if dot and server in self.servers else None

    def listing(self, step: Step, server: str) -> list[dict[str, Any]]:
        """The server's tools, asked of the daemon (through ``step``) at the run's first use of the server."""
        if server not in self.lists:
            self.lists[server] = step("mcp", server, {})
        return self.lists[server]

    def granted(self, step: Step) -> list[tuple[str, dict[str, Any]]]:
        """(server, tool) for every granted tool of every server (a server whose list cannot
        be read offers none)."""
        from corral.config.mcp import granted

        tools: list[tuple[str, dict[str, Any]]] = []
        for server in self.servers:
            try:
                listing = self.listing(step, server)
            except ToolCallError:
                continue  # journaled as a failed step: the run's trace says why
            tools += [(server, t) for t in listing if granted(self.grants, server, t["name"])]
        return tools

    def call(self, name: str, args: dict[str, Any], key: str) -> tuple[bool, Any, dict[str, Any] | None]:
        """Call a stdio server's tool; a read-only or idempotent one is repeated if its server dies."""
        server, tool = name.split(".", 1)
        hints = next((t.get("annotations") or {} for t in self.lists.get(server, ()) if t["name"] == tool), {})
        repeatable = hints.get("readOnlyHint") is True or hints.get("idempotentHint") is True
        return self.stdio.call(server, tool, args, key, repeatable)


Step = Callable[[str, str, dict[str, Any]], Any]
"""One step on the wire: (kind, name, args) -> the value."""
TURN_SECONDS = 60.0
"""How long a tool door request waits for a tool that another door request runs: requests
from one async client take turns, and a tool that calls the door itself is answered."""


class ToolRunning(Exception):
    """A request to the door came while a tool runs (possibly from that tool itself)."""


def _inside_tool(kind: str, name: str, tool: str) -> ToolCallError | ModelCallError:
    """The error a tool gets for using ``ctx`` from inside itself (ctx.tool, ctx.state, ctx.model)."""
    what = {"tool": f"ctx.tool({name!r})", "state": "ctx.state", "model": "ctx.model"}
    call = what.get(kind, f"ctx.tool or ctx.tools (reading MCP server {name!r}'s tools)")
    message = (
        f"{call} was called from inside tool {tool!r}, which is still running: a tool's outcome must reach "
        "corral before the run's next step, so a tool cannot use ctx (ctx.tool, ctx.state, ctx.model) from "
        "inside itself; make the call in the agent, before or after the tool (pass the tool what it needs as "
        "arguments, and use what it returns)"
    )
    return ModelCallError(message) if kind == "model" else ToolCallError(message)


class _Session:
    """Sequencing of requests for one run; shared by ctx, ctx.state, ctx.log and the model door.

    ``lock`` makes each step one exchange on the wire, whichever thread asks (the agent's
    code, or a request to the door): the protocol is strict request and reply.
    """

    def __init__(self, channel: BlockingChannel, tools: dict[str, _LocalTool], mcp: _Mcp | None = None) -> None:
        self.channel = channel
        self.tools = tools
        self.mcp = mcp
        self.seq = 0
        self.lock = threading.Lock()
        self.running: str | None = None
        """The tool this process is running now (between ``exec`` and its ``done``, or its
        reconcile function), if any."""
        self.runner: int | None = None
        """The thread that runs it: the one holding ``lock``."""
        self.door_turn = False
        """The wire is the tool door's now (so is the running tool, if one runs)."""

    def step(self, kind: str, name: str, args: dict[str, Any]) -> Any:
        """One exchange for ``ctx``. The turn rule the door follows (:class:`ToolRunning`), for
        the one caller that would otherwise wait for ever: the running tool itself, on its own
        thread, which holds ``lock`` until its ``done`` is sent (another thread waits its turn)."""
        if self.running is not None and self.runner == threading.get_ident():
            raise _inside_tool(kind, name, self.running)
        with self.lock:
            return self.exchange(kind, name, args)

    @contextmanager
    def _running(self, name: str) -> Iterator[None]:
        """Tool ``name``'s code runs now, on this thread, which holds ``lock``."""
        self.running, self.runner = name, threading.get_ident()
        try:
            yield
        finally:
            self.running = self.runner = None

    @contextmanager
    def door(self) -> Iterator[Step]:
        """The wire for a tool door request, as :meth:`exchange`. Raises :class:`ToolRunning`
        at once while the agent's own ``ctx.tool`` runs a tool (its ``done`` must come
        first, and the request may be that tool's own), and after :data:`TURN_SECONDS`
        while another door request's tool runs."""
        if self.running is not None and not self.door_turn:
            raise ToolRunning(self.running)
        if not self.lock.acquire(timeout=TURN_SECONDS):
            raise ToolRunning(self.running or "another step")
        self.door_turn = True
        try:
            yield self.exchange
        finally:
            self.door_turn = False
            self.lock.release()

    def exchange(self, kind: str, name: str, args: dict[str, Any]) -> Any:
        """One step and its answer (running the tool when told to); the caller holds ``lock``."""
        seq = self._send(kind, name, args)
        while True:
            reply = self._reply(seq)
            kind_ = reply["t"]
            if kind_ == "result":
                if reply["ok"]:
                    return reply.get("value")
                error = reply.get("error") or {}
                failed = ModelCallError if kind == "model" else ToolCallError
                raise failed(error.get("message", f"{kind} call failed"), kind=error.get("kind", "failed"))
            if kind_ == "exec":
                with self._running(name):
                    if self.mcp is not None and (kind == "mcp" or name not in self.tools):
                        return self._execute_mcp(seq, kind, name, args, reply["key"])
                    return self._execute(seq, name, args, reply["key"])
            if kind_ == "reconcile":
                with self._running(name):
                    self._reconcile(seq, name, args, reply["key"])
                continue
            raise ProtocolError(f"unexpected {kind_!r} while waiting for step {seq}")

    def model_step(self, name: str, args: dict[str, Any]) -> tuple[int, dict[str, Any]]:
        """A model step for the door: (its seq, the daemon's ``result`` frame as it came).

        Raises :class:`ToolRunning` while a tool runs in this process: its ``done`` must
        come before the next step, so a tool that called the door itself would wait for
        ever on its own lock."""
        if self.running is not None:
            raise ToolRunning(self.running)
        with self.lock:
            seq = self._send("model", name, args)
            reply = self._reply(seq)
            if reply["t"] != "result":
                raise ProtocolError(f"unexpected {reply['t']!r} while waiting for model step {seq}")
            return seq, reply

    def _send(self, kind: str, name: str, args: dict[str, Any]) -> int:
        seq = self.seq + 1
        self.channel.send({"t": "step", "seq": seq, "kind": kind, "name": name, "args": args})
        self.seq = seq  # only once sent: a request that cannot be packed uses up no number
        return seq

    def _reply(self, seq: int) -> dict[str, Any]:
        reply = self.channel.recv()
        if reply["t"] == "abort":
            raise RunAborted(reply["reason"])
        if reply.get("seq") != seq:
            raise ProtocolError(f"daemon answered step {reply.get('seq')} while {seq} was asked")
        return reply

    def _execute(self, seq: int, name: str, args: dict[str, Any], key: str) -> Any:
        """Run the tool; a tool that retries runs again for as long as the daemon says so
        (it waits the backoff, journals each try and keeps the breaker), and the agent gets
        one result."""
        spec = self.tools[name]
        call_args = dict(args)
        if spec.takes_idempotency_key:
            call_args["idempotency_key"] = key
        if spec.settings is not None:
            call_args["settings"] = spec.settings
        if spec.secrets is not None:
            call_args["secrets"] = spec.secrets
        while True:
            try:
                value = _plain(spec.func(**call_args), f"the result of tool {name!r}")
            except Exception as exc:
                error = _tool_error(exc, name)
                if not spec.retries:
                    self.channel.send({"t": "done", "seq": seq, "ok": False, "error": error})
                    raise ToolCallError(error["message"], kind=error["kind"]) from exc
                self.channel.send({"t": "done", "seq": seq, "ok": False, "error": error, "waits": True})
                reply = self.channel.recv()
                if reply["t"] == "abort":
                    raise RunAborted(reply["reason"]) from None
                if reply.get("seq") != seq or reply["t"] not in ("exec", "result"):
                    raise ProtocolError(f"unexpected {reply['t']!r} after failed try of step {seq}") from None
                if reply["t"] == "exec":
                    continue
                final = reply.get("error") or error
                raise ToolCallError(final.get("message", error["message"]), kind=final.get("kind", "failed")) from exc
            self.channel.send({"t": "done", "seq": seq, "ok": True, "value": value})
            return value

    def _execute_mcp(self, seq: int, kind: str, name: str, args: dict[str, Any], key: str) -> Any:
        """Read a stdio server's list (an ``mcp`` step) or call one of its tools, and report it."""
        from corral.sandbox.mcp_stdio import ServerUnavailable

        assert self.mcp is not None
        if kind == "mcp":
            try:
                ok, value, error = True, self.mcp.stdio.tools(name), None
            except ServerUnavailable as exc:
                ok, value, error = False, None, {"kind": "unavailable", "type": "ToolCallError", "message": str(exc)}
        else:
            ok, value, error = self.mcp.call(name, args, key)
        if not ok:
            assert error is not None
            self.channel.send({"t": "done", "seq": seq, "ok": False, "error": error})
            raise ToolCallError(error["message"], kind=error["kind"])
        self.channel.send({"t": "done", "seq": seq, "ok": True, "value": value})
        return value

    def _reconcile(self, seq: int, name: str, args: dict[str, Any], key: str) -> None:
        spec = self.tools[name]
        outcome, value = "unknown", None
        if spec.reconcile is not None:
            try:
                verdict = spec.reconcile(key, **args)
            except Exception:
                verdict = None
            if verdict is not None:
                outcome = "happened" if verdict.took_effect else "not_happened"
                value = _plain(verdict.result, f"the reconciled result of {name!r}") if verdict.took_effect else None
        self.channel.send({"t": "reconciled", "seq": seq, "outcome": outcome, "value": value})


class State(MutableMapping[str, Any]):
    """``ctx.state``: the agent's memory across runs; every change is journaled."""

    def __init__(self, session: _Session, initial: dict[str, Any]) -> None:
        self._session = session
        self._data = dict(initial)

    def __getitem__(self, key: str) -> Any:
        return self._data[key]

    def __setitem__(self, key: str, value: Any) -> None:
        if not isinstance(key, str):
            raise TypeError(f"ctx.state keys are strings, not {type(key).__name__}")
        if not 0 < len(key.encode()) <= MAX_STATE_KEY:
            raise ValueError(f"ctx.state keys are 1 to {MAX_STATE_KEY} bytes of UTF-8; {key[:40]!r}... is not")
        _plain(value, f"ctx.state[{key!r}]")
        self._session.step("state", "set", {"key": key, "value": value})
        self._data[key] = value

    def __delitem__(self, key: str) -> None:
        if key not in self._data:
            raise KeyError(key)
        self._session.step("state", "delete", {"key": key})
        del self._data[key]

    def __iter__(self) -> Iterator[str]:
        return iter(self._data)

    def __len__(self) -> int:
        return len(self._data)

    def __repr__(self) -> str:
        return f"State({self._data!r})"


class RunLog:
    """``ctx.log``: structured events written to the agent's log by the daemon."""

    def __init__(self, channel: BlockingChannel, bound: dict[str, Any] | None = None) -> None:
        self._channel = channel
        self._bound = bound or {}

    def bind(self, **fields: Any) -> RunLog:
        return RunLog(self._channel, {**self._bound, **fields})

    def _send(self, level: str, event: str, fields: dict[str, Any]) -> None:
        merged = {**self._bound, **fields}
        safe = {str(k): _loggable(v) for k, v in merged.items()}
        self._channel.send({"t": "log", "level": level, "event": str(event), "fields": safe})

    def debug(self, event: str, /, **fields: Any) -> None:
        self._send("debug", event, fields)

    def info(self, event: str, /, **fields: Any) -> None:
        self._send("info", event, fields)

    def warning(self, event: str, /, **fields: Any) -> None:
        self._send("warning", event, fields)

    def error(self, event: str, /, **fields: Any) -> None:
        self._send("error", event, fields)


DEEP_FIELD = f"[not logged: nests more than {MAX_DEPTH} lists and maps deep]"
"""What a log field nested past :data:`corral.packing.MAX_DEPTH` is written as: the line is kept."""


def _loggable(value: Any) -> Any:
    """``value`` if the daemon will accept it (the same check as the journal's), else what the log shows."""
    try:
        _plain(value, "a log field")
    except TooDeep:
        return DEEP_FIELD
    except TypeError:
        return repr(value)
    return value


class Context:
    """What an agent function receives. The only way its effects become durable."""

    def __init__(self, session: _Session, run: dict[str, Any], channel: BlockingChannel) -> None:
        self._session = session
        self.run_id: str = run["run_id"]
        self.agent: str = run["agent"]
        self.attempt: int = run["attempt"]
        self.trace_id: str = run["trace_id"]
        self.input: Any = run.get("input")
        self.workdir = Path.cwd()
        self.state = State(session, run.get("state") or {})
        self.log = RunLog(channel, {})

    @property
    def tools(self) -> list[str]:
        """Names of the tools this agent was granted (an MCP server's: those it offers, read at first use)."""
        session = self._session
        served = session.mcp.granted(session.step) if session.mcp is not None else []
        return sorted([*session.tools, *(f"{server}.{tool['name']}" for server, tool in served)])

    def tool(self, name: str, /, **args: Any) -> Any:
        """Call a granted tool through the journal; raises ToolCallError on refusal or failure."""
        _plain(args, f"the arguments of tool {name!r}")
        session = self._session
        server = session.mcp.server_of(name) if session.mcp is not None and name not in session.tools else None
        if server is not None:
            session.mcp.listing(session.step, server)  # type: ignore[union-attr]  # the daemon learns its tools first
        return session.step("tool", name, args)

    def model(self, messages: Sequence[Any], /, *, tools: Sequence[Any] = (), model: str = "", **options: Any) -> Any:
        """Ask a model through the daemon, which holds the API key, retries, enforces the
        run's budget and journals the answer (a resumed run gets it back free).

        ``messages``: :class:`corral.models.Message` objects or their dicts (``role``,
        ``text``, ...). ``tools``: names of tools granted to this agent (the daemon sends
        their schemas) or :class:`corral.models.ToolDefinition` objects. ``model``: one of
        the agent's ``models`` (default: the first). ``options``: ``max_tokens``,
        ``temperature``, ``top_p``, ``stop``, ``tool_choice``. Returns a
        :class:`corral.models.Response`; raises :class:`corral.ModelCallError`.
        """
        from corral.models.types import Message, Options, Request, Response, ToolDefinition, check_keys

        check_keys({"messages": list(messages), "tools": list(tools)})
        request = Request(
            messages=tuple(m if isinstance(m, Message) else _convert(Message, m) for m in messages),
            tools=(),
            options=Options.from_kwargs(options),
        )
        args = request.to_dict()
        args["tools"] = [t if isinstance(t, str) else _as_dict(ToolDefinition, t) for t in tools]
        _shallow(args, "the request of ctx.model (its messages and tools)")
        value = self._session.step("model", model, args)
        return Response.from_dict(value)


_PROBE = {"role": "user", "text": "."}
"""A message for the probe request that checks a tool definition (a request needs one)."""


def _convert(kind: Any, value: Any) -> Any:
    """A Message (or ToolDefinition) from its dict form, checked by the type itself."""
    from corral.models.types import Request

    if not isinstance(value, dict):
        raise TypeError(f"expected a {kind.__name__} or a dict, got {type(value).__name__}")
    probe = {"messages": [value]} if kind.__name__ == "Message" else {"messages": [_PROBE], "tools": [value]}
    request = Request.from_dict(probe)
    return request.messages[0] if kind.__name__ == "Message" else request.tools[0]


def _as_dict(kind: Any, value: Any) -> dict[str, Any]:
    tool = value if isinstance(value, kind) else _convert(kind, value)
    return {"name": tool.name, "description": tool.description, "parameters": tool.parameters}


def _load_entry(code: str, entry: str) -> Any:
    sys.path.insert(0, code)
    module_name, func_name = entry.split(":", 1)
    module = importlib.import_module(module_name)
    func = getattr(module, func_name, None)
    if not callable(func):
        raise AttributeError(f"entry {entry!r}: module {module_name!r} has no function {func_name!r}")
    return func


def _granted_tools(run: dict[str, Any]) -> dict[str, _LocalTool]:
    """Load the plugins that own the granted tools exactly as the daemon did (same import
    path, same sources); no other plugin is imported in the agent's process."""
    from corral.pluginmanager import register_plugins, tool_functions
    from corral.tools import reconciler

    sys.path.extend(p for p in run.get("sys_path", ()) if p not in sys.path)
    plugin_dir = Path(run["plugin_dir"]) if run.get("plugin_dir") else None
    owners = {name: info["plugin"] for name, info in run.get("tools", {}).items()}
    entry_points = [(str(name), str(value)) for name, value in run.get("entry_points", ())]
    plugins = register_plugins(run.get("plugins", ()), plugin_dir, entry_points=entry_points, only=set(owners.values()))
    functions = tool_functions(plugins.manager, owners)
    return {
        name: _LocalTool(
            functions[name],
            info["takes_key"],
            reconciler(functions[name]),
            info.get("settings"),
            info.get("secrets"),
            bool(info.get("retries")),
        )
        for name, info in run.get("tools", {}).items()
        if name in functions
    }


def _tool_door(run: dict[str, Any], session: _Session, end: Callable[[BaseException], None] | None = None) -> ToolDoor:
    """The tool door of this run: its list of the granted tools, and ``ctx.tool``'s step for
    each ``tools/call``, both taking the wire through :meth:`_Session.door`. ``end``: what a
    turn does when the daemon ended the run (default: leave, :func:`corral.sandbox.door.server.ended`;
    ``corral replay --pdb`` answers the call with why instead)."""
    from corral import __version__
    from corral.sandbox.door.tools import Listed, ToolDoor, listed

    found: list[list[Listed]] = []

    def catalogue() -> list[Listed]:
        if not found:  # an MCP server's list is read (and journaled) once, at the first ask
            with _door_turn(session, end) as step:
                served = session.mcp.granted(step) if session.mcp is not None else []
            found.append(listed(run.get("tools") or {}, served))
        return found[0]

    def call(name: str, args: dict[str, Any]) -> Any:
        try:
            _plain(args, f"the arguments of tool {name!r}")
        except TypeError as exc:
            raise ToolCallError(str(exc), kind="refused") from None
        with _door_turn(session, end) as step:
            server = session.mcp.server_of(name) if session.mcp is not None and name not in session.tools else None
            if server is not None:
                session.mcp.listing(step, server)  # type: ignore[union-attr]  # the daemon learns its tools first, as for ctx.tool
            return step("tool", name, args)

    return ToolDoor(catalogue, call, __version__)


@contextmanager
def _door_turn(session: _Session, end: Callable[[BaseException], None] | None = None) -> Iterator[Step]:
    """:meth:`_Session.door`, its refusal a :class:`ToolCallError` the client reads; the run's
    end (an approval to wait for, a cancel) ends this process, as ``ctx.tool``'s does, unless
    ``end`` says otherwise."""
    from corral.sandbox.door.server import ended

    try:
        with session.door() as step:
            yield step
    except ToolRunning as running:
        message = (
            f"tool {running} is running: a run's tools run one at a time, and its outcome must reach corral "
            "before the next step (a tool that calls the door itself is not supported); call again after it"
        )
        raise ToolCallError(message, kind="busy") from None
    except (RunAborted, ProtocolError) as stopped:
        if end is None:
            ended()
        else:
            end(stopped)
        raise


def _open_door(listener: socket.socket, run: dict[str, Any], context: Context, policy: Policy) -> None:
    """Serve the door on ``listener`` (every run has one): the model door, the tool door, and
    the state and log API (``/corral/v1``) over ``context``; point the agent at it. What
    answers each is made at the first request to it (:class:`corral.sandbox.door.server.FirstUse`),
    so a run that never calls the door never imports it.

    The token comes in the welcome (the daemon made it, so that it can hide it from the
    agent's log) and lives only in this process, whose memory its children cannot read
    (the launcher made it non-dumpable), and in the agent's environment: it is what keeps
    other processes on a shared loopback out.
    """
    from corral.sandbox.door.problems import DoorError
    from corral.sandbox.door.server import Door, ended

    session = context._session

    def ask(name: str, args: dict[str, Any]) -> tuple[int, dict[str, Any]]:
        try:
            return session.model_step(name, args)
        except ToolRunning as running:
            message = (
                f"the model door cannot answer while tool {running} runs: a tool's outcome must reach corral "
                "before the next request (a tool that needs a model is not supported); ask again after it"
            )
            raise DoorError(409, message) from None
        except (RunAborted, ProtocolError):
            ended()
            raise

    def change(apply: Callable[[], None]) -> None:
        try:
            apply()
        except (RunAborted, ProtocolError):
            ended()
            raise

    def api() -> Api:
        from corral.sandbox.door.api import Api

        limits = policy.limits
        return Api(
            context.state,
            context.log,
            change,
            lambda: session.running,
            limits.get("state_value_kb"),
            limits.get("state_mb"),
        )

    max_body = policy.max_frame // 2
    door = Door(
        listener,
        run["door_token"],
        run.get("models") or [],
        ask,
        max_body,
        run["run_id"],
        tools=lambda: _tool_door(run, session),
        api=api,
    )
    os.environ.update(door.env())
    door.start()


def serve(policy: Policy, applied: list[str], listener: socket.socket) -> None:
    """Speak the protocol for one run, call the agent (or run its command), report how it ended, exit.

    ``listener``: the door's socket, bound by the launcher before confinement.
    """
    channel = BlockingChannel(policy.wire_in, policy.wire_out, max_bytes=policy.max_frame)
    channel.send({"t": "hello", "v": VERSION, "pid": os.getpid(), "applied": applied})
    welcome = channel.recv()
    if welcome["t"] != "welcome" or welcome["v"] != VERSION:
        raise SystemExit(f"corral: expected welcome v{VERSION}, got {welcome['t']} v{welcome.get('v')}")
    run = welcome["run"]
    mcp = _Mcp(run["mcp"]) if run.get("mcp") else None
    session = _Session(channel, {}, mcp)
    try:
        session.tools = _granted_tools(run)
        context = Context(session, run, channel)
        _open_door(listener, run, context, policy)
        if run.get("command"):
            from corral.sandbox import command

            value = _plain(command.run(run["command"], run), "the command's result")
        else:
            func = _load_entry(run["code"], run["entry"])
            value = _plain(func(context), "the agent's return value")
    except RunAborted:
        os._exit(0)
    except BaseException as exc:
        with session.lock:
            channel.send({"t": "finish", "ok": False, "error": _error(exc)})
    else:
        with session.lock:
            channel.send({"t": "finish", "ok": True, "value": value})
    if mcp is not None:
        mcp.stdio.close()
    sys.stdout.flush()
    sys.stderr.flush()
    _wait_for_close(policy.wire_in)
    os._exit(0)


def _wait_for_close(fd: int) -> None:
    """Stay alive until the daemon has seen the finish and swept our descendants.

    While we live, orphans of the agent reparent to us (a subreaper) and stay in
    reach of the daemon's tree kill; exiting first would let them slip away.
    """
    try:
        while os.read(fd, 4096):
            pass
    except OSError:
        pass
