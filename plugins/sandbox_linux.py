"""Built-in plugin: the Linux sandbox backend (bubblewrap namespaces, Landlock, seccomp, agent user)."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import corral
from corral.sandbox.linux_backend import LinuxBackend


@corral.hookimpl
def corral_register_sandbox_backends(register: Callable[[Any], None]) -> None:
    register(LinuxBackend())
