"""One writer per run folder: an exclusive lock on ``OUT/.polymodal.lock`` for a whole fit.

Two fits into one folder would interleave their metrics, load each other's checkpoints and export
a model folder that disagrees with run.json. The lock is an advisory ``flock`` on a file in the
folder: the operating system releases it when the holder exits, however it exits, so a killed
run never leaves a stale lock behind. The holder writes its pid, host and start time into the
file, and a second fit names them in its refusal.

POSIX only (``fcntl``); polymodal's training runs on Linux and macOS.
"""

from __future__ import annotations

import fcntl
import json
import os
import socket
from datetime import datetime, timezone
from pathlib import Path
from types import TracebackType

from polymodal.errors import PolymodalError

LOCK_NAME = ".polymodal.lock"


class RunFolderBusy(PolymodalError):
    """Another process holds the run folder's lock."""


class RunLock:
    """Context manager holding the exclusive lock of run folder ``folder``.

    Raises:
        RunFolderBusy: on entry, when another process (or another RunLock of this process)
            holds the lock; the message names its pid, host and start time.
    """

    def __init__(self, folder: Path) -> None:
        self.path = Path(folder) / LOCK_NAME
        self._fd: int | None = None

    def __enter__(self) -> RunLock:
        self.path.parent.mkdir(parents=True, exist_ok=True)
        # No O_TRUNC: a process that fails to get the lock must not erase the holder's details.
        fd = os.open(self.path, os.O_RDWR | os.O_CREAT, 0o644)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            os.close(fd)
            raise RunFolderBusy(
                f"{self.path.parent}: another polymodal process is writing to this run folder "
                f"({self._describe_holder()}). Wait for it to finish, stop it, or give another "
                "--out"
            ) from None
        owner = {
            "pid": os.getpid(),
            "host": socket.gethostname(),
            "started": datetime.now(timezone.utc).isoformat(timespec="seconds"),
        }
        os.ftruncate(fd, 0)
        os.write(fd, json.dumps(owner).encode())
        self._fd = fd
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        if self._fd is not None:
            # The file stays: removing it would let a third process lock a new file while a
            # second one still waits on the old one.
            os.ftruncate(self._fd, 0)
            fcntl.flock(self._fd, fcntl.LOCK_UN)
            os.close(self._fd)
            self._fd = None

    def _describe_holder(self) -> str:
        try:
            owner = json.loads(self.path.read_text())
            return f"pid {owner['pid']} on {owner['host']}, started {owner['started']}"
        except (OSError, ValueError, KeyError, TypeError):
            # The holder is between taking the lock and writing its details.
            return f"its details are not written yet; see {self.path}"
