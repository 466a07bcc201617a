"""Where corral's own code is on disk: the folders of its three packages.

``corral``, ``corral.plugins`` and ``corral.sandbox`` are three folders in a checkout
(``core/``, ``plugins/``, ``sandbox/``) and nested ones in a wheel, so each is asked of
the import system. The specs are found without importing ``corral.plugins``: core never
imports the built-in plugins.
"""

from __future__ import annotations

import importlib.util

PACKAGES = ("corral", "corral.plugins", "corral.sandbox")


def folders() -> tuple[str, ...]:
    """Every folder holding corral's own modules: an agent's sandbox must read them, and a
    traceback's frames in them are corral's, not the agent's."""
    found: list[str] = []
    for name in PACKAGES:
        spec = importlib.util.find_spec(name)
        if spec is not None and spec.submodule_search_locations is not None:
            found.extend(spec.submodule_search_locations)
    return tuple(found)
