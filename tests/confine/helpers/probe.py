"""A child process that confines itself, then tries things and reports how each went.

Run as ``python probe.py SPEC_JSON``. SPEC holds optional ``user``
(a name to drop to), ``landlock`` (keyword arguments of ``landlock.apply``), ``seccomp``
(true: the agent's filter), ``order`` (default: user, landlock, seccomp),
``thread`` (start a thread first) and ``probes``: a list of ``[operation, *arguments]``. Prints one JSON object:
what was applied and, per probe, ``"ok"`` (or a value), the errno name, or
``"error: ..."`` for a corral error. Everything it needs is imported first, because
afterwards it may not be allowed to read any module.
"""

from __future__ import annotations

import dataclasses
import encodings.idna  # noqa: F401  (socket imports it lazily; a dropped user may not read it later)
import errno
import json
import os
import signal
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Callable
from typing import Any

from corral.errors import CorralError
from corral.sandbox import landlock, seccomp, users


def _ok(action: Callable[..., None], *args: Any) -> str:
    action(*args)
    return "ok"


def _read(path: str) -> str:
    with open(path, "rb") as handle:
        return handle.read().decode("utf-8", "replace")


def _write(path: str) -> str:
    with open(path, "w") as handle:
        handle.write("written by the probe")
    return "ok"


def _connect(host: str, port: int) -> str:
    with socket.create_connection((host, port), timeout=5):
        return "ok"


def _bind(host: str, port: int) -> str:
    with socket.socket() as sock:
        sock.bind((host, port))
        return "ok"


def _own_loopback() -> str:
    """A listener and a client both inside this process's network namespace."""
    with socket.socket() as server:
        server.bind(("127.0.0.1", 0))
        server.listen()
        with socket.create_connection(server.getsockname(), timeout=5):
            return "ok"


def _udp_send(host: str, port: int) -> str:
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as sock:
        sock.sendto(b"probe", (host, port))
        return "ok"


def _spawn_read(path: str) -> str:
    """A grandchild Python reads ``path``: the outcome, or the name of the exception it died of."""
    code = f"open({path!r}).read()"
    child = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=20, check=False)
    lines = child.stderr.strip().splitlines()
    return "ok" if child.returncode == 0 else lines[-1].split(":")[0] if lines else str(child.returncode)


def _drop(name: str) -> str:
    users.drop_privileges(users.resolve(name))
    return "ok"


def _abstract(name: str) -> str:
    with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as sock:
        sock.connect("\0" + name)
        return "ok"


def _kill(pid: int) -> str:
    os.kill(pid, signal.SIGTERM)
    return "ok"


def _setuid(uid: int) -> str:
    os.setuid(uid)
    return "ok"


def _interfaces() -> list[str]:
    return sorted(name for _, name in socket.if_nameindex())


PROBES: dict[str, Callable[..., Any]] = {
    "read": _read,
    "write": _write,
    "listdir": lambda path: sorted(os.listdir(path)),
    "link": lambda src, dst: _ok(os.link, src, dst),
    "rename": lambda src, dst: _ok(os.rename, src, dst),
    "connect": _connect,
    "bind": _bind,
    "udp_send": _udp_send,
    "drop": _drop,
    "spawn_read": _spawn_read,
    "own_loopback": _own_loopback,
    "abstract": _abstract,
    "kill": _kill,
    "setuid": _setuid,
    "interfaces": _interfaces,
    "whoami": lambda: [os.getuid(), os.geteuid(), os.getgid(), os.getegid()],
}


def _outcome(operation: str, args: list[Any]) -> Any:
    try:
        return PROBES[operation](*args)
    except OSError as error:
        return errno.errorcode.get(error.errno or 0, str(error))
    except CorralError as error:
        return f"error: {error}"


def main() -> None:
    spec = json.loads(sys.argv[1])
    if spec.get("thread"):
        threading.Thread(target=time.sleep, args=(30,), daemon=True).start()
    steps: dict[str, Callable[[], Any]] = {
        "user": lambda: users.drop_privileges(users.resolve(spec["user"])),
        "landlock": lambda: landlock.apply(**spec["landlock"]),
        "seccomp": lambda: {"labels": seccomp.install(account_memory=False)},
    }
    applied = {}
    for step in spec.get("order", ["user", "landlock", "seccomp"]):
        if spec.get(step):
            done = steps[step]()
            applied[step] = done if isinstance(done, dict) else dataclasses.asdict(done)
    results = [_outcome(operation, args) for operation, *args in spec.get("probes", [])]
    print(json.dumps({"applied": applied, "results": results}))


if __name__ == "__main__":
    main()
