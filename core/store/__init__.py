"""The LMDB store: one writer (the daemon), any number of read-only readers (the CLI).

See docs/store.md for the schema. Public names are re-exported here; the modules
behind them are private.
"""

from corral.store.env import Store, StoreLock
from corral.store.records import Records, new_run_id
from corral.store.writer import Writer

__all__ = ["Records", "Store", "StoreLock", "Writer", "new_run_id"]
