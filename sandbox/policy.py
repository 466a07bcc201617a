"""The policy one run's process is started under, decided by the daemon.

It travels to the launcher as JSON on its command line (it holds no secrets: granted
variables travel in the environment), so the launcher can apply it before importing
anything of the agent's.
"""

from __future__ import annotations

import json
import os
import sys
from collections.abc import Mapping, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:  # the agent's process imports this module before any agent code: keep it light
    from corral.config import AgentConfig, Limits

BASE_PATH = "/usr/local/bin:/usr/bin:/bin"


@dataclass(frozen=True)
class Policy:
    """What the launcher enforces on itself before it becomes the agent."""

    run_id: str
    workdir: str
    parent_pid: int
    wire_in: int
    wire_out: int
    max_frame: int
    limits: dict[str, Any] = field(default_factory=dict)
    cgroup: str | None = None
    confine_module: str | None = None
    """The sandbox backend's child-side module; its ``confine(confine)`` runs before any agent code."""
    confine: dict[str, Any] = field(default_factory=dict)
    memory_accounted: bool = False
    """A cgroup ``memory.max`` holds the run, so memory a watchdog cannot see (memfd, SysV) counts."""

    def to_json(self) -> str:
        return json.dumps(asdict(self), separators=(",", ":"))

    @classmethod
    def from_json(cls, text: str) -> Policy:
        return cls(**json.loads(text))


def limits_dict(limits: Limits) -> dict[str, Any]:
    return asdict(limits)


def agent_env(agent: AgentConfig, workdir: Path, daemon_env: Mapping[str, str]) -> dict[str, str]:
    """Exactly what the agent may see: a minimal base plus what config grants.

    Nothing of the daemon's environment leaks through except the variables named in
    ``env_from``; a granted variable missing from the daemon's environment is left out.
    """
    env = {
        "PATH": sandbox_path(),
        "HOME": str(workdir),
        "LANG": daemon_env.get("LANG", "C.UTF-8") or "C.UTF-8",
        "TMPDIR": str(tmpdir(workdir)),
    }
    env.update(agent.env)
    for name in agent.env_from:
        if name in daemon_env:
            env[name] = daemon_env[name]
    return env


def tmpdir(workdir: Path) -> Path:
    """The agent's private ``TMPDIR``, inside its workdir."""
    return workdir / ".tmp"


def sandbox_path() -> str:
    """The ``PATH`` of every agent: corral's Python first, then the system's programs."""
    return f"{Path(sys.executable).parent}:{BASE_PATH}"


def launcher_argv(policy: Policy, wrap: Sequence[str] = ()) -> list[str]:
    """``-I`` keeps the daemon's PYTHON* variables and user site out; ``-u`` unbuffers output;
    ``-B`` writes no ``__pycache__`` into the agent's code folder. ``wrap`` goes first
    (``sandbox-exec -p PROFILE`` on macOS)."""
    return [*wrap, sys.executable, "-I", "-u", "-B", "-m", "corral.sandbox.launcher", policy.to_json()]


def prepare_workdir(workdir: Path) -> None:
    """Create the workdir (0700) and its private TMPDIR.

    The agent owns what is inside its workdir: a ``.tmp`` it replaced with a symlink or a
    file is removed and made again, so nothing the daemon does to it (chmod, chown for
    the agent's user) can be led elsewhere.
    """
    workdir.mkdir(parents=True, exist_ok=True, mode=0o700)
    tmp = tmpdir(workdir)
    if tmp.is_symlink() or (tmp.exists() and not tmp.is_dir()):
        tmp.unlink()
    tmp.mkdir(exist_ok=True, mode=0o700)
    os.chmod(workdir, 0o700, follow_symlinks=False)
