"""Running the agent as an unprivileged user when the daemon is root.

A root daemon's children are root: file modes do not stop them and ``RLIMIT_NPROC`` is
ignored. The launcher calls :func:`drop_privileges` on itself (after entering its network
namespace, before Landlock) so the agent runs as a dedicated account. :func:`detect`
says whether that account exists and can run this Python; :func:`creation_hint` says how
to create one.
"""

from __future__ import annotations

import os
import pwd
import stat
import sys
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path

from corral import source
from corral.errors import CorralError

DEFAULT_USER = "corral-agent"


class PrivilegeDropError(CorralError):
    """Operator: the agent's process could not become (or stay) the configured user."""


@dataclass(frozen=True)
class Account:
    """A user the agent can run as: ids resolved once, from the system's user database."""

    name: str
    uid: int
    gid: int
    groups: tuple[int, ...]


@dataclass(frozen=True)
class UserSupport:
    """Whether the agent can be dropped to ``account`` here, and a sentence saying why (not)."""

    available: bool
    account: Account | None
    reason: str


@dataclass(frozen=True)
class DropApplied:
    """Who the process is after :func:`drop_privileges`."""

    name: str
    uid: int
    gid: int
    groups: tuple[int, ...]

    def labels(self) -> list[str]:
        return [f"user:{self.name}"]


def creation_hint(name: str = DEFAULT_USER, platform: str = sys.platform) -> str:
    """The commands that create a login-less system account named ``name``."""
    if platform == "darwin":
        return (
            f"create it with `sudo sysadminctl -addUser {name} -shell /usr/bin/false -home /var/empty` "
            f"(then `sudo dscl . -create /Users/{name} IsHidden 1`), or with dscl: pick a free UniqueID from "
            f"`dscl . -list /Users UniqueID`, then `sudo dscl . -create /Users/{name} UniqueID ID`, "
            f"`... PrimaryGroupID 20`, `... UserShell /usr/bin/false`, `... NFSHomeDirectory /var/empty`"
        )
    return f"create it with `sudo useradd --system --no-create-home --shell /usr/sbin/nologin {name}`"


def resolve(name: str) -> Account:
    """Look ``name`` up; refuse root and unknown users with the fix in the message."""
    try:
        entry = pwd.getpwnam(name)
    except KeyError:
        raise PrivilegeDropError(f"there is no user named {name!r} on this machine; {creation_hint(name)}") from None
    if entry.pw_uid == 0:
        raise PrivilegeDropError(f"user {name!r} has uid 0 (root); agents must run as an unprivileged user")
    groups = tuple(sorted(set(os.getgrouplist(name, entry.pw_gid))))
    return Account(name=name, uid=entry.pw_uid, gid=entry.pw_gid, groups=groups)


def _can_enter(account: Account, path: Path) -> bool:
    """Whether ``account`` may traverse (directories) or read (files) ``path``, by its mode bits."""
    info = path.stat()
    need = stat.S_IXOTH if stat.S_ISDIR(info.st_mode) else stat.S_IROTH
    if info.st_uid == account.uid:
        need <<= 6
    elif info.st_gid in account.groups or info.st_gid == account.gid:
        need <<= 3
    return bool(info.st_mode & need)


def unreachable(account: Account, paths: Iterable[str], *, parents: bool = True) -> list[str]:
    """The first folder or file on the way to each path that ``account`` cannot pass (mode bits only).

    ``parents=False`` checks each path itself only: under bubblewrap a granted path is bound
    into a fresh root whose folders above it anyone may pass (a Python under ``/root`` works).
    """
    blocked = []
    for raw in paths:
        path = Path(raw).resolve()
        for step in (*reversed(path.parents), path) if parents else (path,):
            try:
                if not _can_enter(account, step):
                    blocked.append(str(step))
                    break
            except OSError:
                break
    return sorted(set(blocked))


def python_paths() -> list[str]:
    """What an agent process must read after dropping: the Python installation and corral itself."""
    return sorted({sys.prefix, sys.base_prefix, sys.executable, *source.folders()})


def detect(name: str = DEFAULT_USER, *, bound: bool = False) -> UserSupport:
    """Whether a root daemon can run agents as ``name``; never raises. ``bound``: agents get a
    mount namespace of bound paths, so only the paths themselves must be readable."""
    as_root = os.geteuid() == 0
    try:
        account = resolve(name)
    except PrivilegeDropError as error:
        return UserSupport(False, None, str(error))
    if not as_root:
        return UserSupport(
            False,
            account,
            f"the daemon runs as uid {os.geteuid()}, not root, so it cannot switch to {name!r}; agents run as "
            "the daemon's own user",
        )
    blocked = unreachable(account, python_paths(), parents=not bound)
    if blocked:
        return UserSupport(
            False,
            account,
            f"user {name!r} cannot read {', '.join(blocked)}, which this Python needs; install Python and corral "
            "where every user can read them, or open those folders (chmod o+rx)",
        )
    return UserSupport(True, account, f"agents can run as {name!r} (uid {account.uid}, gid {account.gid})")


def capabilities_left() -> str | None:
    """Linux: the hex capability sets still held (permitted, effective, ambient), or None when
    all are empty."""
    try:
        status = Path("/proc/self/status").read_text()
    except OSError:
        return None
    for line in status.splitlines():
        key, _, value = line.partition(":")
        if key in ("CapPrm", "CapEff", "CapAmb") and int(value.strip(), 16):
            return f"{key}={value.strip()}"
    return None


def _verify(account: Account) -> None:
    if (os.getuid(), os.geteuid(), os.getgid(), os.getegid()) != (account.uid, account.uid, account.gid, account.gid):
        raise PrivilegeDropError(f"after switching to {account.name!r} the process still has other user or group ids")
    if hasattr(os, "getresuid") and 0 in (*os.getresuid(), *os.getresgid()):
        raise PrivilegeDropError(f"after switching to {account.name!r} a saved id is still root")
    for regain in (os.setuid, os.seteuid, os.setgid):
        try:
            regain(0)
        except PermissionError:
            continue
        os._exit(71)  # root came back: nothing this process does from here can be trusted
    left = capabilities_left()
    if left:
        raise PrivilegeDropError(f"after switching to {account.name!r} the process still holds capabilities ({left})")


def drop_privileges(account: Account) -> DropApplied:
    """Become ``account`` for good: supplementary groups, then gid, then uid; verify root is gone.

    Must run as root. If root could be regained afterwards the process exits (status 71)
    rather than run agent code in that state.
    """
    if os.geteuid() != 0:
        raise PrivilegeDropError(
            f"switching to {account.name!r} needs root; this process runs as uid {os.geteuid()}. Run the daemon "
            "as root, or leave the agent user unset so agents run as the daemon's user"
        )
    try:
        os.setgroups(list(account.groups))
        os.setgid(account.gid)
        os.setuid(account.uid)
    except OSError as error:
        raise PrivilegeDropError(f"cannot switch to {account.name!r}: {error.strerror}") from None
    _verify(account)
    return DropApplied(name=account.name, uid=account.uid, gid=account.gid, groups=account.groups)
