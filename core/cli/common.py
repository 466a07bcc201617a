"""What every ``corral`` command shares: exit codes, loading the config, printing JSON,
opening the store read-only.

Exit codes: 0 success; 1 the run failed or ``check`` found problems; 2 usage error;
3 invalid config; 4 daemon or store unavailable (locked, not answering, no store);
5 no such run or agent.
"""

from __future__ import annotations

import argparse
import json
from typing import Any

from corral.config import CorralConfig, find_config, load_config
from corral.errors import ConfigError, StoreError

EXIT_OK, EXIT_FAILED, EXIT_USAGE, EXIT_CONFIG, EXIT_UNAVAILABLE, EXIT_NOT_FOUND = 0, 1, 2, 3, 4, 5


class Exit(Exception):
    """Leave with a message on stderr and an exit code."""

    def __init__(self, code: int, message: str = "") -> None:
        self.code = code
        super().__init__(message)


def load(args: argparse.Namespace) -> CorralConfig:
    try:
        return load_config(find_config(args.config))
    except ConfigError as exc:
        raise Exit(EXIT_CONFIG, f"corral: invalid config:\n{exc}") from None


def print_json(value: Any) -> None:
    print(json.dumps(value, indent=2, default=str, ensure_ascii=False))


def reader(config: CorralConfig) -> Any:
    from corral.store import Records, Store

    try:
        store = Store.open(config.home / "store", readonly=True)
    except StoreError as exc:
        raise Exit(EXIT_UNAVAILABLE, f"corral: {exc}") from None
    return store, Records(store.dbs)
