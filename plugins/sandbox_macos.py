"""Built-in plugin: the macOS sandbox backend (Seatbelt through sandbox-exec, agent user)."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import corral
from corral.sandbox.macos_backend import MacBackend


@corral.hookimpl
def corral_register_sandbox_backends(register: Callable[[Any], None]) -> None:
    register(MacBackend())
