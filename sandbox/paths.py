"""Resolving a path an agent or tool names, strictly inside the agent's workdir."""

from __future__ import annotations

import os
from pathlib import Path

from corral.errors import ToolCallError


def inside_workdir(path: str, workdir: Path | None = None) -> Path:
    """The real path of ``path`` under ``workdir`` (default: the current directory).

    Refuses NUL bytes, absolute paths and any path whose real location, after every
    symlink is followed, is not under the workdir; the message says how to fix it.
    """
    root = (workdir or Path.cwd()).resolve()
    if "\x00" in path:
        raise ToolCallError("path contains a NUL byte; pass a plain relative path", kind="refused")
    candidate = Path(path)
    if candidate.is_absolute():
        raise ToolCallError(f"path {path!r} is absolute; use a path relative to the agent's workdir", kind="refused")
    real = Path(os.path.realpath(root / candidate))
    if real != root and root not in real.parents:
        raise ToolCallError(f"path {path!r} leads outside the agent's workdir; stay inside it", kind="refused")
    return real
