"""The sample cache's account of its entries: size and last use of each, hits and misses.

``entries.sqlite`` in the cache folder holds one row per entry (key, bytes on disk, last use)
and the cache's hit and miss counts. It is what the size cap (``train.cache_max_gb``) works by:
when the entries' bytes exceed the cap, the least recently used are removed until they fit
(policy ``lru``), or, with ``keep``, a new entry is not stored once the cap is reached.

Loader workers and DDP ranks share one cache folder, so every change is one SQLite transaction
taken with ``BEGIN IMMEDIATE`` (one writer at a time, across processes): an entry is renamed
into place and recorded in the same transaction, and eviction removes rows and files in one,
so one process never evicts a file another is just publishing under the same key without the
row saying so. The counts are shared the same way, so a hit in a loader worker counts too.

A cache folder filled before this index existed is taken into account on first use (each
entry's modification time stands in for its last use). A database that cannot be read is moved
aside and rebuilt; when SQLite cannot be written at all (a read-only folder, a lock held past
the timeout) the cache still works, without its account, and says so once.
"""

from __future__ import annotations

import contextlib
import logging
import sqlite3
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path

logger = logging.getLogger(__name__)

ENTRIES_NAME = "entries.sqlite"
ENTRY_SUFFIXES = (".safetensors", ".stz")
_SCHEMA = (
    "CREATE TABLE IF NOT EXISTS entries (key TEXT PRIMARY KEY, size INTEGER NOT NULL, "
    "used REAL NOT NULL)",
    "CREATE INDEX IF NOT EXISTS entries_by_use ON entries (used)",
    "CREATE TABLE IF NOT EXISTS counts (name TEXT PRIMARY KEY, value INTEGER NOT NULL)",
)


class EntryIndex:
    """Sizes and last uses of the entries under ``folder`` (``folder/xx/<key>.<suffix>``).

    Args:
        path: the SQLite file (created when missing).
        folder: the cache folder, scanned once for entries written before the index existed.
    """

    def __init__(self, path: Path | str, folder: Path | str) -> None:
        self.path = Path(path)
        self.folder = Path(folder)
        self._db: sqlite3.Connection | None = None
        self._lock = threading.Lock()
        self._warned = False

    def __getstate__(self) -> dict:
        state = {**self.__dict__, "_db": None}
        del state["_lock"]
        return state

    def __setstate__(self, state: dict) -> None:
        self.__dict__.update(state)
        self._lock = threading.Lock()

    def added(
        self, key: str, size: int, publish: Callable[[], None], room: int | None = None
    ) -> bool:
        """Run ``publish()`` (rename the entry into place) and record the entry and a miss, in
        one transaction; ``publish`` runs even when the index cannot be written.

        ``room``: publish only if the entries, this one included, then hold at most ``room``
        bytes (checked in the same transaction, so two processes cannot both take the last
        room). Returns whether the entry was published."""
        published, full = False, False

        def write(db: sqlite3.Connection) -> None:
            nonlocal published, full
            _count(db, "misses")
            if room is not None:
                others = db.execute(
                    "SELECT COALESCE(SUM(size), 0) FROM entries WHERE key != ?", (key,)
                ).fetchone()[0]
                full = others + size > room
                if full:
                    return
            publish()
            published = True
            db.execute("INSERT OR REPLACE INTO entries VALUES (?, ?, ?)", (key, size, time.time()))

        self._transaction(write)
        if not published and not full:
            publish()
            published = True
        return published

    def used_many(self, hits: list[tuple[str, int | None]]) -> None:
        """Record hits in one transaction, each entry becoming the most recently used:
        ``(key, bytes on disk)`` for a hit read from disk (recorded even if its row was lost);
        ``(key, None)`` for a hit served from memory, which only refreshes the last use of an
        entry still on record (one evicted from disk meanwhile is not recorded again)."""
        if not hits:
            return
        now = time.time()

        def write(db: sqlite3.Connection) -> None:
            on_disk = [(key, size, now) for key, size in hits if size is not None]
            db.executemany(
                "INSERT INTO entries VALUES (?, ?, ?) "
                "ON CONFLICT(key) DO UPDATE SET used = excluded.used, size = excluded.size",
                on_disk,
            )
            in_memory = [(now, key) for key, size in hits if size is None]
            db.executemany("UPDATE entries SET used = ? WHERE key = ?", in_memory)
            _count(db, "hits", len(hits))

        self._transaction(write)

    def evict(self, max_bytes: int, remove: Callable[[str], None]) -> int:
        """Remove least recently used entries (``remove(key)`` deletes the files) until the
        entries hold at most ``max_bytes``; returns how many were removed."""
        removed = 0

        def write(db: sqlite3.Connection) -> None:
            nonlocal removed
            total = db.execute("SELECT COALESCE(SUM(size), 0) FROM entries").fetchone()[0]
            if total <= max_bytes:
                return
            for key, size in db.execute("SELECT key, size FROM entries ORDER BY used").fetchall():
                remove(key)
                db.execute("DELETE FROM entries WHERE key = ?", (key,))
                removed += 1
                total -= size
                if total <= max_bytes:
                    break

        self._transaction(write)
        return removed

    def counts(self) -> tuple[int, int]:
        """``(hits, misses)`` of every process since the cache was made."""
        rows = self._read("SELECT name, value FROM counts") or []
        values = dict(rows)
        return int(values.get("hits", 0)), int(values.get("misses", 0))

    def total_bytes(self) -> int:
        """Bytes of the entries on record."""
        rows = self._read("SELECT COALESCE(SUM(size), 0) FROM entries")
        return int(rows[0][0]) if rows else 0

    def _read(self, query: str) -> list[tuple] | None:
        with self._lock:
            try:
                return self._connection().execute(query).fetchall()
            except sqlite3.Error as err:
                self._failed(err)
                return None

    def _transaction(self, write: Callable[[sqlite3.Connection], None]) -> None:
        with self._lock:
            try:
                db = self._connection()
                db.execute("BEGIN IMMEDIATE")
                try:
                    write(db)
                except BaseException:
                    db.execute("ROLLBACK")
                    raise
                db.execute("COMMIT")
            except sqlite3.Error as err:
                self._failed(err)

    def _connection(self) -> sqlite3.Connection:
        if self._db is None:
            # Autocommit mode: transactions are the explicit BEGIN IMMEDIATE ... COMMIT above.
            # One connection shared by threads, one at a time (self._lock).
            db = sqlite3.connect(
                self.path, timeout=60, isolation_level=None, check_same_thread=False
            )
            try:
                db.execute("PRAGMA journal_mode=WAL")
                # No fsync per transaction: a crash may lose the last rows, never corrupt the
                # rest, and a lost row only makes the account a little short.
                db.execute("PRAGMA synchronous=NORMAL")
                fresh = not db.execute(
                    "SELECT 1 FROM sqlite_master WHERE type = 'table' AND name = 'entries'"
                ).fetchone()
                for statement in _SCHEMA:
                    db.execute(statement)
                if fresh:
                    _adopt(db, self.folder)
            except sqlite3.Error:
                db.close()
                raise
            self._db = db
        return self._db

    def _failed(self, err: sqlite3.Error) -> None:
        """Drop the connection; a damaged database is moved aside and rebuilt on next use."""
        if self._db is not None:
            self._db.close()
            self._db = None
        if not isinstance(err, sqlite3.OperationalError) and self.path.exists():
            with contextlib.suppress(FileNotFoundError):  # another process moved it first
                self.path.replace(self.path.with_name(f"{self.path.name}.damaged"))
        if not self._warned:
            self._warned = True
            logger.warning(
                "sample cache index %s: %s; the cache goes on, without its size cap and hit "
                "counts until the index can be written",
                self.path,
                err,
            )


def _count(db: sqlite3.Connection, name: str, by: int = 1) -> None:
    db.execute(
        "INSERT INTO counts VALUES (?, ?) ON CONFLICT(name) DO UPDATE SET value = value + ?",
        (name, by, by),
    )


def _entry_files(folder: Path) -> Iterator[tuple[str, int, float]]:
    """``(key, bytes, modification time)`` of each entry file under ``folder/xx/``."""
    for shard in folder.glob("??"):
        for file in shard.iterdir():
            if file.name.endswith(ENTRY_SUFFIXES) and not file.name.startswith("."):
                with contextlib.suppress(FileNotFoundError):  # evicted meanwhile
                    stat = file.stat()
                    yield file.name.split(".", 1)[0], stat.st_size, stat.st_mtime


def _adopt(db: sqlite3.Connection, folder: Path) -> None:
    """Record the entries a cache folder held before its index existed."""
    db.execute("BEGIN IMMEDIATE")
    db.executemany("INSERT OR IGNORE INTO entries VALUES (?, ?, ?)", _entry_files(folder))
    db.execute("COMMIT")
