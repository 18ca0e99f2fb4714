"""Content hashes of a cohort's files, computed once and kept beside the sample cache.

The sample cache keys an entry by the file's content, so that a moved file still hits and an
edited one misses. Hashing the bytes on every access (every epoch, in every loader worker) read
each file again only to find its entry; this index remembers each file's hash under its
**stamp**: ``size:mtime_ns`` for a file, a digest of every member's (name, size, mtime_ns) for a
DICOM series folder. While the stamp is unchanged the recorded hash is used without reading the
file; when it changes (an edited file has a new size or modification time) the file is hashed
again and the row replaced, so an edited file is never served from its old entry.

Within a process the answer for a file is also remembered under the path as given, with its
size, modification time, inode and device (one ``stat``, which follows symbolic links): while
those are unchanged no ``realpath`` walk and no SQLite read is needed. A symbolic link pointed
at another file changes the inode, so it is never answered from the old file.

The index is a small SQLite database (``file_index.sqlite``): each row is written in its own
transaction, safe with several loader workers writing at once, and a crash leaves the previous
state. A database that cannot be read (damaged, or not SQLite) is moved aside and rebuilt, never
trusted; a row that does not look like a hash is ignored and recomputed.
"""

from __future__ import annotations

import contextlib
import hashlib
import logging
import os
import re
import sqlite3
import stat as stat_kind
import threading
from pathlib import Path

logger = logging.getLogger(__name__)

INDEX_NAME = "file_index.sqlite"
_CHUNK = 1 << 20
_DIGEST = re.compile(r"[0-9a-f]{40}")
# Paths remembered per process before the memory of them starts again (about 200 bytes each).
_SEEN_MAX = 1_000_000
_SCHEMA = "CREATE TABLE IF NOT EXISTS files (path TEXT PRIMARY KEY, stamp TEXT, digest TEXT)"


def _hash_file(digest: hashlib.blake2b, path: Path) -> None:
    with path.open("rb") as handle:
        while chunk := handle.read(_CHUNK):
            digest.update(chunk)


def content_hash(path: Path | str) -> str:
    """blake2b of a file's bytes, or of a folder's files (relative names + bytes, sorted)."""
    path = Path(path)
    digest = hashlib.blake2b(digest_size=20)
    if path.is_dir():
        for file in sorted(p for p in path.rglob("*") if p.is_file()):
            name = file.relative_to(path).as_posix().encode()
            # The length prefix keeps (name, bytes) pairs from running into each other.
            digest.update(len(name).to_bytes(8, "little") + name)
            digest.update(file.stat().st_size.to_bytes(8, "little"))
            _hash_file(digest, file)
    else:
        _hash_file(digest, path)
    return digest.hexdigest()


def file_stamp(path: Path) -> str:
    """``size:mtime_ns`` of a file; for a folder a digest of its files' names, sizes and times."""
    if not path.is_dir():
        stat = path.stat()
        return f"{stat.st_size}:{stat.st_mtime_ns}"
    digest = hashlib.blake2b(digest_size=16)
    for file in sorted(p for p in path.rglob("*") if p.is_file()):
        stat = file.stat()
        digest.update(
            f"{file.relative_to(path).as_posix()}\0{stat.st_size}:{stat.st_mtime_ns}\n".encode()
        )
    return "dir:" + digest.hexdigest()


def _identity(path: str) -> tuple[int, int, int, int] | None:
    """``(size, mtime_ns, inode, device)`` of a regular file; None for a folder or no file."""
    try:
        found = os.stat(path)
    except OSError:
        return None
    if not stat_kind.S_ISREG(found.st_mode):
        return None
    return found.st_size, found.st_mtime_ns, found.st_ino, found.st_dev


class FileIndex:
    """``content_key(path)``: the blake2b of a file's bytes, read only when its stamp changed.

    Args:
        path: the SQLite file (created when missing). Safe to share between processes; a
            DataLoader worker opens its own connection (the object pickles without one).

    Counters ``hashed`` (files read to hash them) and ``recalled`` (answered from the index)
    are per process.
    """

    def __init__(self, path: Path | str) -> None:
        self.path = Path(path)
        self.hashed = 0
        self.recalled = 0
        self._memo: dict[str, tuple[str, str]] = {}
        # path as given -> ((size, mtime_ns, inode, device), digest); files only.
        self._seen: dict[str, tuple[tuple[int, int, int, int], str]] = {}
        self._db: sqlite3.Connection | None = None
        self._lock = threading.Lock()  # one connection, used by one thread at a time

    def __getstate__(self) -> dict:
        state = {
            **self.__dict__,
            "_db": None,
            "_memo": {},
            "_seen": {},
            "hashed": 0,
            "recalled": 0,
        }
        del state["_lock"]
        return state

    def __setstate__(self, state: dict) -> None:
        self.__dict__.update(state)
        self._lock = threading.Lock()

    def content_key(self, path: Path | str) -> str:
        """The content hash of ``path`` (a file, or a folder of DICOM files)."""
        given = str(path)
        identity = _identity(given)
        seen = self._seen.get(given)
        if seen is not None and identity is not None and seen[0] == identity:
            self.recalled += 1
            return seen[1]
        path = Path(path)
        name = str(path.resolve())
        stamp = file_stamp(path)
        with self._lock:
            known = self._memo.get(name) or self._lookup(name)
        if known is not None and known[0] == stamp:
            self.recalled += 1
            self._memo[name] = known
            self._remember(given, identity, known[1])
            return known[1]
        digest = content_hash(path)
        self.hashed += 1
        # The stamp after hashing: a file written meanwhile gets hashed again next time.
        if file_stamp(path) == stamp:
            with self._lock:
                self._memo[name] = (stamp, digest)
                self._store(name, stamp, digest)
            self._remember(given, identity, digest)
        return digest

    def _remember(
        self, given: str, identity: tuple[int, int, int, int] | None, digest: str
    ) -> None:
        # The identity from before reading: a file changed meanwhile is looked at again.
        if identity is not None and identity == _identity(given):
            if len(self._seen) >= _SEEN_MAX:
                self._seen.clear()
            self._seen[given] = (identity, digest)

    def _connection(self) -> sqlite3.Connection:
        if self._db is None:
            self.path.parent.mkdir(parents=True, exist_ok=True)
            try:
                self._db = self._open()
            except sqlite3.DatabaseError as err:
                self._set_aside(err)
                self._db = self._open()
        return self._db

    def _open(self) -> sqlite3.Connection:
        db = sqlite3.connect(self.path, timeout=60, check_same_thread=False)
        try:
            # Write-ahead log without an fsync per row: a commit cost 14 ms of fsync on a shared
            # disk (minutes for a cohort's first epoch). A crash can lose the last rows, never
            # corrupt the rest, and a lost row only means hashing that file again.
            db.execute("PRAGMA journal_mode=WAL")
            db.execute("PRAGMA synchronous=NORMAL")
            db.execute(_SCHEMA)
            db.execute("SELECT path, stamp, digest FROM files LIMIT 1").fetchall()
            db.commit()
        except sqlite3.DatabaseError:
            db.close()
            raise
        return db

    def _set_aside(self, err: Exception) -> None:
        aside = self.path.with_name(f"{self.path.name}.damaged")
        logger.warning("file index %s is unreadable (%s); rebuilding it", self.path, err)
        with contextlib.suppress(FileNotFoundError):  # another process set it aside first
            self.path.replace(aside)

    def _lookup(self, name: str) -> tuple[str, str] | None:
        try:
            row = (
                self._connection()
                .execute("SELECT stamp, digest FROM files WHERE path = ?", (name,))
                .fetchone()
            )
        except sqlite3.DatabaseError as err:
            self._reset(err)
            return None
        if row is None or not isinstance(row[1], str) or not _DIGEST.fullmatch(row[1]):
            return None
        return str(row[0]), row[1]

    def _store(self, name: str, stamp: str, digest: str) -> None:
        try:
            db = self._connection()
            with db:  # one transaction per row
                db.execute("INSERT OR REPLACE INTO files VALUES (?, ?, ?)", (name, stamp, digest))
        except sqlite3.OperationalError as err:
            # Locked for longer than the timeout, or a read-only folder: the hash is still right,
            # only not remembered for the next process.
            logger.warning("file index %s: could not record %s (%s)", self.path, name, err)
        except sqlite3.DatabaseError as err:
            self._reset(err)

    def _reset(self, err: Exception) -> None:
        """Drop a connection to a database found damaged while in use; the next use rebuilds."""
        if self._db is not None:
            self._db.close()
            self._db = None
        if self.path.exists():
            self._set_aside(err)
