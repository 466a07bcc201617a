"""The daemon's control socket: a Unix socket of mode 0600 speaking JSON lines.

One request per connection: the client writes one JSON object and a newline; the
daemon answers with one or more JSON lines (``run --wait`` sends the queued run, then
the finished one) and closes. Two checks come before a request is read (the
:class:`Gate`): the peer's uid must be the daemon's own or root, and the peer process
must not belong to a run (it, or an ancestor, is a live run's started process; it is
in a run's cgroup; or it was seen in a run's tree). An agent process that tries is
refused and reported, so the operator hears which agent did it.
"""

from __future__ import annotations

import asyncio
import json
import os
import re
import socket
import struct
import sys
import time
from collections.abc import Awaitable, Callable, Collection, Iterator, Mapping
from dataclasses import dataclass
from enum import StrEnum
from pathlib import Path
from typing import TYPE_CHECKING, Any, BinaryIO, Protocol

from corral import jsoninput
from corral.alerts import Alert, Severity
from corral.errors import ConfigError, ControlError, DaemonUnavailable
from corral.packing import MAX_DEPTH, nesting

if TYPE_CHECKING:
    import psutil

MAX_REQUEST = 1 << 20
ID_FIELDS = {
    "retry": "run",
    "release": "run",
    "cancel": "run",
    "approve": "id",
    "deny": "id",
    "replay": "run",
    "fork": "run",
}
"""The ops that name a run or an approval request, and the field that does."""
WHOLE_ID = re.compile(r"[0-9a-z]{1,64}")
"""A whole run or approval id: the CLI resolves a part of one before it sends the request."""
Handler = Callable[[dict[str, Any], Callable[[dict[str, Any]], Awaitable[None]]], Awaitable[None]]

SOL_LOCAL = 0
"""macOS ``<sys/un.h>``: the option level of a Unix socket's own options."""
LOCAL_PEERCRED = 0x001
"""macOS: the peer's ``struct xucred`` (version, uid, groups), as of ``connect``."""
LOCAL_PEERPID = 0x002
"""macOS: the peer's pid, as of ``connect``."""
XUCRED = struct.Struct("=IIh2x16I")
"""macOS ``struct xucred``: ``cr_version``, ``cr_uid``, ``cr_ngroups``, 16 ``cr_groups``."""
XUCRED_VERSION = 0
UCRED = struct.Struct("=iII")
"""Linux ``struct ucred``: ``pid``, ``uid``, ``gid``."""


class Sockopts(Protocol):
    """What reading a peer's credentials needs of a socket."""

    def getsockopt(self, level: int, option: int, buflen: int, /) -> bytes: ...


@dataclass(frozen=True)
class Peer:
    """Who is at the other end of a connection, as the kernel recorded it at ``connect``;
    None where this platform (or this connection) does not say."""

    pid: int | None
    uid: int | None


def peer_credentials(sock: Sockopts, platform: str = sys.platform) -> Peer:
    """The peer's pid and uid: ``SO_PEERCRED`` on Linux, ``LOCAL_PEERPID`` and
    ``LOCAL_PEERCRED`` on macOS, nothing elsewhere or if the kernel will not say."""
    try:
        if platform.startswith("linux"):
            pid, uid, _gid = UCRED.unpack(
                sock.getsockopt(socket.SOL_SOCKET, getattr(socket, "SO_PEERCRED", 17), UCRED.size)
            )
            return Peer(pid or None, uid)  # 0: the peer's pid has no number in our pid namespace
        if platform == "darwin":
            (pid,) = struct.unpack("=i", sock.getsockopt(SOL_LOCAL, LOCAL_PEERPID, 4))
            version, uid = struct.unpack_from("=II", sock.getsockopt(SOL_LOCAL, LOCAL_PEERCRED, XUCRED.size))
            return Peer(pid or None, uid if version == XUCRED_VERSION else None)
    except (OSError, struct.error):
        pass
    return Peer(None, None)


class RunProcesses(Protocol):
    """What the gate reads of a live run (``corral.sandbox.processes.Child`` has it)."""

    @property
    def pid(self) -> int:
        """The process the daemon started for the run (the launcher, or its wrapper)."""

    @property
    def cgroup(self) -> Path | None:
        """The run's own cgroup v2 directory, if it has one."""

    @property
    def known(self) -> Collection[psutil.Process]:
        """Processes seen in the run's tree, escaped ones included."""


class Evidence(StrEnum):
    """Why a peer process was taken for a run's."""

    TREE = "tree"
    """It, or one of its ancestors, is the process the daemon started for the run."""
    CGROUP = "cgroup"
    """It is in the run's cgroup (or one below it)."""
    SEEN = "seen"
    """It, or one of its ancestors, was seen in the run's process tree."""
    UNIDENTIFIED = "unidentified"
    """Runs are live and the peer cannot be told apart from them: no pid, or it is gone."""


def own_run(pid: int, live: Mapping[str, RunProcesses], proc: Path = Path("/proc")) -> tuple[str, Evidence] | None:
    """The live run that process ``pid`` belongs to, and why; None if it belongs to none.

    Raises ``psutil.Error`` if ``pid`` or an ancestor cannot be read (it is gone).
    """
    import psutil

    peer = psutil.Process(pid)
    lineage = [peer, *peer.parents()]
    pids = {p.pid for p in lineage}
    cgroup = _cgroup_of(pid, proc)
    for run_id, run in list(live.items()):
        if run.pid in pids:
            return run_id, Evidence.TREE
        if run.cgroup is not None and cgroup is not None and _within(run.cgroup, cgroup):
            return run_id, Evidence.CGROUP
        if any(p in run.known for p in lineage):  # psutil compares pid and start time
            return run_id, Evidence.SEEN
    return None


def _cgroup_of(pid: int, proc: Path) -> str | None:
    """The process's cgroup v2 path (``/a/b``), as ``/proc/PID/cgroup`` shows it to us."""
    try:
        lines = (proc / str(pid) / "cgroup").read_text().splitlines()
    except OSError:
        return None
    return next((line[3:] for line in lines if line.startswith("0::")), None)


def _within(run_cgroup: Path, path: str) -> bool:
    """Whether cgroup ``path`` is ``run_cgroup`` or below it. ``run_cgroup`` is a directory
    under the cgroup2 mount, ``path`` relative to that mount; a run's cgroup name carries
    its run id and random hex, so matching the path up to that name is exact."""
    parts = path.strip("/").split("/")
    if run_cgroup.name not in parts:
        return False
    upto = "/" + "/".join(parts[: parts.index(run_cgroup.name) + 1])
    return str(run_cgroup).endswith(upto)


@dataclass(frozen=True)
class Intrusion:
    """A connection refused because it came from a run's process (or one that could not be
    told apart from one). ``attempts`` counts the refusals this report stands for."""

    evidence: Evidence
    pid: int | None
    run_id: str | None = None
    agent: str | None = None
    attempts: int = 1

    def fields(self) -> dict[str, str | int | None]:
        """For the daemon's log line."""
        return {
            "agent": self.agent,
            "run_id": self.run_id,
            "pid": self.pid,
            "evidence": self.evidence.value,
            "attempts": self.attempts,
        }

    def alert(self) -> Alert:
        """The critical alert for the operator, one key per agent so a loop does not spam."""
        who = self.agent or self.run_id or "unknown"
        return Alert(
            key=f"control-socket:{who}",
            severity=Severity.CRITICAL,
            title=f"agent {who!r} tried to use the daemon's control socket",
            body=(
                f"Process {self.pid} of run {self.run_id} connected to the control socket "
                f"({self.attempts} attempt(s) in this report); it was refused before any request was read. "
                "An agent has no business there: its code tried to act as the operator "
                "(approve, run, pause, reload). Look at the agent's code and its recent runs "
                f"(`corral trace {self.run_id}`)."
            ),
            agent=self.agent,
            run_id=self.run_id,
            fields={"pid": self.pid, "evidence": self.evidence.value, "attempts": self.attempts},
        )


class Gate:
    """Who may send requests: the daemon's own user or root, and no process of a run.

    ``live`` returns the daemon's live runs (run id -> its processes), ``agent_of`` names
    a live run's agent, ``refused`` hears of each refusal of a run's process: at once for
    the first, then at most once per ``report_every`` seconds per run with the count held
    back, so an agent looping on the socket cannot flood the log and the alert outbox.
    """

    def __init__(
        self,
        live: Callable[[], Mapping[str, RunProcesses]],
        agent_of: Callable[[str], str | None],
        refused: Callable[[Intrusion], None],
        *,
        report_every: float = 60.0,
        platform: str = sys.platform,
    ) -> None:
        self.live = live
        self.agent_of = agent_of
        self.refused = refused
        self.report_every = report_every
        self.platform = platform
        self._held: dict[str | None, tuple[float, int]] = {}  # run id -> (last report, refusals since)

    def refusal(self, sock: Sockopts) -> str | None:
        """Why this connection is refused (one line for the peer), or None to serve it."""
        peer = peer_credentials(sock, self.platform)
        if peer.uid is not None and peer.uid not in (0, os.getuid()):
            return "permission denied: not the daemon's user"
        live = self.live()
        if not live:
            return None  # no run, so no process of one; the uid check was all there was to do
        found: tuple[str, Evidence] | None = None
        if peer.pid is not None:
            import psutil

            try:
                found = own_run(peer.pid, live)
            except psutil.Error:
                found = None
            else:
                if found is None:
                    return None
        if found is None:  # fail closed: while runs are live, an unknown peer may be one of theirs
            self._report(Intrusion(Evidence.UNIDENTIFIED, peer.pid), live)
            return (
                "permission denied: the control socket could not identify the connecting process "
                "while agent runs are live; try again"
            )
        run_id, evidence = found
        agent = self.agent_of(run_id)
        self._report(Intrusion(evidence, peer.pid, run_id, agent), live)
        return (
            f"permission denied: this process belongs to run {run_id} of agent {agent!r}; "
            "the control socket takes no requests from agents"
        )

    def _report(self, intrusion: Intrusion, live: Mapping[str, RunProcesses]) -> None:
        now = time.monotonic()
        last, held = self._held.get(intrusion.run_id, (float("-inf"), 0))
        if now - last < self.report_every:
            self._held[intrusion.run_id] = (last, held + 1)
            return
        self._held = {key: value for key, value in self._held.items() if key is None or key in live}
        self._held[intrusion.run_id] = (now, 0)
        self.refused(Intrusion(intrusion.evidence, intrusion.pid, intrusion.run_id, intrusion.agent, held + 1))


class Log(Protocol):
    """What the socket writes to the daemon's log (a structlog logger has it)."""

    def warning(self, event: str, **fields: Any) -> Any: ...

    def error(self, event: str, **fields: Any) -> Any: ...


async def serve(path: Path, handler: Handler, gate: Gate, *, log: Log | None = None) -> asyncio.AbstractServer:
    """Listen on ``path``; the file is created 0600 (umask) so there is no window. Each
    connection ``gate`` refuses gets one error line and is closed unread.

    The connection handler never raises. A request that is not a JSON object with an
    ``op`` is answered ``bad request``; every refusal, the handler's included, is logged
    to ``log`` as ``control request refused``. A handler that raises (a bug) is answered
    with ``internal`` true and logged as ``control request failed`` with its traceback.
    """
    if len(os.fsencode(path)) > 100:
        raise ConfigError(
            [f"control socket path {path} is too long for a Unix socket; set a shorter [corral] home or CORRAL_HOME"]
        )
    path.unlink(missing_ok=True)

    async def on_client(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        op: object = None

        async def reply(message: dict[str, Any]) -> None:
            writer.write(json.dumps(message, default=str).encode() + b"\n")
            await writer.drain()

        async def answer(message: dict[str, Any]) -> None:
            if not message.get("ok", False) and log is not None:
                log.warning("control request refused", op=op, error=message.get("error"))
            await reply(message)

        try:
            refusal = gate.refusal(writer.get_extra_info("socket"))
            if refusal is not None:
                await reply({"ok": False, "error": refusal})
                return
            try:
                request = _parse(await reader.readuntil(b"\n"))
            except (asyncio.IncompleteReadError, asyncio.LimitOverrunError, ValueError, RecursionError) as exc:
                await answer({"ok": False, "error": f"bad request: {exc}"})
                return
            op = request["op"]
            await handler(request, answer)
        except ConnectionError:
            pass
        except Exception as exc:  # a bug: the client hears of it, the log keeps the traceback
            if log is not None:
                log.error("control request failed", op=op, exc_info=exc)
            try:
                await reply(
                    {
                        "ok": False,
                        "internal": True,
                        "error": f"the daemon failed on this request ({type(exc).__name__}: {exc}); "
                        "its traceback is in the daemon's log, corral.log (`corral logs --level error`)",
                    }
                )
            except ConnectionError:
                pass
        finally:
            writer.close()

    old = os.umask(0o177)
    try:
        server = await asyncio.start_unix_server(on_client, path=str(path), limit=MAX_REQUEST)
    finally:
        os.umask(old)
    os.chmod(path, 0o600)
    return server


def _parse(line: bytes) -> dict[str, Any]:
    try:
        request = jsoninput.loads(line)  # no NaN or Infinity: a run's input must be JSON any reader takes
    except ValueError as exc:
        raise ValueError(f"not valid JSON ({exc})") from None
    if not isinstance(request, dict) or not isinstance(request.get("op"), str):
        raise ValueError('a request is a JSON object with an "op"')
    if nesting(request, MAX_DEPTH + 1) > MAX_DEPTH + 1:  # a value it carries (a run's input) sits one level down
        raise ValueError(jsoninput.TOO_DEEP)
    json.dumps(request, ensure_ascii=False).encode()  # UnicodeEncodeError: a lone surrogate, which nothing can store
    return request


def request(path: Path, message: dict[str, Any], timeout: float | None = 10.0) -> Iterator[dict[str, Any]]:
    """Send one request and yield each reply line. Raises ControlError if nobody answers
    or the daemon refuses (see :func:`exchange` for the refusals themselves)."""
    for answer in exchange(path, message, timeout):
        if not answer.get("ok", False):
            raise ControlError(answer.get("error", "the daemon refused the request"))
        yield answer


def exchange(path: Path, message: dict[str, Any], timeout: float | None = 10.0) -> Iterator[dict[str, Any]]:
    """Send one request and yield each answer, refusals included: ``ok`` false, ``error``
    the reason, ``internal`` true when the daemon failed on it (a bug, in its log).

    Raises DaemonUnavailable if nobody answers within ``timeout``, ControlError if the
    socket belongs to another user.
    """
    sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    sock.settimeout(timeout)
    try:
        sock.connect(str(path))
    except FileNotFoundError:
        sock.close()
        raise DaemonUnavailable(f"no daemon is listening at {path}") from None
    except PermissionError:
        sock.close()
        raise ControlError(f"permission denied on {path}: the control socket belongs to another user") from None
    except (ConnectionRefusedError, OSError) as exc:
        sock.close()
        raise DaemonUnavailable(f"the daemon at {path} is not answering ({exc})") from None
    with sock:
        try:
            sock.sendall(json.dumps(message).encode() + b"\n")
        except (BrokenPipeError, ConnectionResetError):
            pass  # refused before the request was read: the answer says why
        try:
            with sock.makefile("rb") as stream:
                for line in _lines(stream):
                    answer = json.loads(line)
                    yield answer if isinstance(answer, dict) else {"ok": False, "error": f"odd answer {answer!r}"}
        except TimeoutError:
            raise DaemonUnavailable(f"the daemon at {path} did not answer within {timeout:g}s") from None


def _lines(stream: BinaryIO) -> Iterator[bytes]:
    """The answer's lines; a reset after the last one (the daemon closed with the request
    unread, as it does when it refuses a connection) ends them like a close."""
    try:
        yield from stream
    except ConnectionResetError:
        return
