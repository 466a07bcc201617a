"""Opening the LMDB environment safely, as the one writer or as a reader.

The writer holds ``daemon.lock`` (flock) for as long as it lives, so a second daemon
on the same home refuses to start; the kernel drops the lock if the holder is killed.
"""

from __future__ import annotations

import fcntl
import os
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import lmdb

from corral.errors import StoreError, StoreLockedError
from corral.store import schema
from corral.store.schema import unpack


class StoreLock:
    """An exclusive, non-blocking flock on ``<home>/daemon.lock`` naming its holder."""

    def __init__(self, home: Path) -> None:
        self.path = home / "daemon.lock"
        self._fd: int | None = None

    def acquire(self) -> None:
        self.path.parent.mkdir(parents=True, exist_ok=True)
        fd = os.open(self.path, os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o600)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            holder = os.pread(fd, 64, 0).decode(errors="replace").strip() or "unknown"
            os.close(fd)
            raise StoreLockedError(
                f"another corral daemon (pid {holder}) owns {self.path.parent}; "
                "stop it first, or use another home with CORRAL_HOME"
            ) from None
        os.ftruncate(fd, 0)
        os.pwrite(fd, str(os.getpid()).encode(), 0)
        self._fd = fd

    def holder(self) -> int | None:
        """The pid holding the lock, or None if nobody does (used by the CLI)."""
        try:
            fd = os.open(self.path, os.O_RDONLY | os.O_CLOEXEC)
        except FileNotFoundError:
            return None
        try:
            try:
                fcntl.flock(fd, fcntl.LOCK_SH | fcntl.LOCK_NB)
            except BlockingIOError:
                text = os.pread(fd, 64, 0).decode(errors="replace").strip()
                return int(text) if text.isdigit() else -1
            fcntl.flock(fd, fcntl.LOCK_UN)
            return None
        finally:
            os.close(fd)

    def release(self) -> None:
        if self._fd is not None:
            os.close(self._fd)
            self._fd = None


class Store:
    """The environment plus its named databases, and the read queries on them."""

    def __init__(self, env: lmdb.Environment, dbs: dict[str, Any], *, readonly: bool) -> None:
        self.env = env
        self.dbs = dbs
        self.readonly = readonly

    @classmethod
    def open(cls, path: Path, *, readonly: bool = False, map_mb: int = 64) -> Store:
        """Open (and for a writer create and migrate) the store at ``path``.

        Only the lock holder may open with ``readonly=False``.
        """
        if readonly and not (path / "data.mdb").exists():
            raise StoreError(f"no store at {path} yet; start the daemon once (corral up)")
        path.mkdir(parents=True, exist_ok=True, mode=0o700)
        try:
            env = lmdb.open(
                str(path),
                map_size=map_mb * 2**20,
                max_dbs=len(schema.DATABASES) + 1,
                readonly=readonly,
                lock=True,
                sync=True,
                metasync=True,
                max_readers=256,
                mode=0o600,
            )
        except lmdb.Error as exc:
            raise StoreError(f"cannot open the store at {path}: {exc}") from None
        try:
            if readonly:
                dbs = cls._open_dbs_readonly(env)
            else:
                env.reader_check()
                dbs = {name: env.open_db(name.encode()) for name in schema.DATABASES}
                cls._migrate(env, dbs)
        except Exception:
            env.close()
            raise
        return cls(env, dbs, readonly=readonly)

    @staticmethod
    def _open_dbs_readonly(env: lmdb.Environment) -> dict[str, Any]:
        try:
            return {name: env.open_db(name.encode(), create=False) for name in schema.DATABASES}
        except lmdb.NotFoundError:
            raise StoreError("the store predates this corral's schema; start the daemon once to migrate it") from None

    @staticmethod
    def _migrate(env: lmdb.Environment, dbs: dict[str, Any]) -> None:
        with env.begin(write=True) as txn:
            raw = txn.get(b"schema", db=dbs["meta"])
            version = unpack(raw) if raw else 0
            if version > schema.SCHEMA_VERSION:
                raise StoreError(
                    f"the store was written by a newer corral (schema {version}, this one knows "
                    f"{schema.SCHEMA_VERSION}); upgrade corral"
                )
            for migration in schema.MIGRATIONS[version:]:
                migration(txn, dbs)
            txn.put(b"schema", schema.pack(schema.SCHEMA_VERSION), db=dbs["meta"])

    @contextmanager
    def read(self) -> Iterator[lmdb.Transaction]:
        """A read transaction that survives the writer having grown the map."""
        try:
            txn = self.env.begin()
        except lmdb.MapResizedError:
            self.env.set_mapsize(0)
            txn = self.env.begin()
        try:
            yield txn
        finally:
            txn.abort()

    def close(self) -> None:
        self.env.close()

    def size(self) -> dict[str, int]:
        """Bytes on disk and bytes in use, for ``corral status``."""
        info = self.env.info()
        stat = self.env.stat()
        data = Path(self.env.path()) / "data.mdb"
        return {
            "file_bytes": data.stat().st_size if data.exists() else 0,
            "used_bytes": (info["last_pgno"] + 1) * stat["psize"],
            "map_bytes": info["map_size"],
        }
