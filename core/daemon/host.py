"""Opening everything the engine needs, as the one writer of a corral home."""

from __future__ import annotations

import os
from collections.abc import Iterator
from contextlib import contextmanager
from typing import TextIO

from corral.config import CorralConfig
from corral.observe.logs import LogFiles
from corral.pluginmanager import load_plugins
from corral.run.engine import Engine
from corral.store import Store, StoreLock


@contextmanager
def host(config: CorralConfig, *, echo: TextIO | None) -> Iterator[Engine]:
    """Lock the home, open store, logs and plugins; close them all on the way out.

    Raises StoreLockedError when another process already owns the home.
    """
    config.home.mkdir(parents=True, exist_ok=True, mode=0o700)
    os.chmod(config.home, 0o700)
    lock = StoreLock(config.home)
    lock.acquire()
    logs = LogFiles(config.log_dir, max_bytes=config.log_max_bytes, backups=config.log_backups, echo=echo)
    log = logs.logger(None)
    try:
        store = Store.open(config.home / "store", map_mb=config.store_map_mb)
        try:
            plugins = load_plugins(config.plugins, config.home / "plugins", warn=log.warning)
            engine = Engine(config, store, plugins, logs)
            try:
                yield engine
            finally:
                engine.close()
                engine.processes.close()
        finally:
            store.close()
    finally:
        logs.close()
        lock.release()
