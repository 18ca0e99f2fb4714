"""Progress of long steps with counts and an ETA, on a terminal and in a log file alike.

On a terminal a rich bar shows progress. When the output goes to a file (stderr is not a TTY,
e.g. ``polymodal fit ... 2> fit.log`` or a batch job), a bar writes nothing readable, so
progress becomes plain log lines instead: one every ``every_fraction`` of the work or every
``every_seconds``, whichever comes first, each with the count, the elapsed time and the ETA.
Lines go through the ``polymodal`` logger; :func:`log_to_file` also writes them to a file.
"""

from __future__ import annotations

import logging
import sys
import time
from collections.abc import Callable, Iterable, Iterator, Sized
from contextlib import contextmanager
from pathlib import Path
from typing import TypeVar

T = TypeVar("T")

logger = logging.getLogger("polymodal.progress")

_FORMAT = "%(asctime)s %(levelname)s %(name)s: %(message)s"


def is_terminal(stream=None) -> bool:
    """Whether ``stream`` (default stderr) is an interactive terminal."""
    stream = sys.stderr if stream is None else stream
    try:
        return bool(stream.isatty())
    except (AttributeError, ValueError):  # closed or replaced streams
        return False


def format_seconds(seconds: float) -> str:
    """``42s``, ``3m05s``, ``1h02m``: short enough for a progress line."""
    seconds = max(0.0, seconds)
    if seconds < 60:
        return f"{seconds:.0f}s"
    minutes, secs = divmod(round(seconds), 60)
    if minutes < 60:
        return f"{minutes}m{secs:02d}s"
    hours, minutes = divmod(minutes, 60)
    return f"{hours}h{minutes:02d}m"


class PlainProgress:
    """Log lines ``description: done/total (pct), elapsed, ETA`` for work of known size.

    Args:
        total: units of work (rows, batches, epochs); 0 or less: unknown (no percentage/ETA).
        description: what is being done, e.g. ``"epoch 1/30"``.
        every_fraction: log at least every this fraction of ``total``.
        every_seconds: and at least this often.
        log: where lines go (default: the ``polymodal.progress`` logger at INFO).
        clock: seconds, monotonic (a test passes a fake one).
    """

    def __init__(
        self,
        total: int,
        description: str,
        *,
        every_fraction: float = 0.1,
        every_seconds: float = 30.0,
        log: Callable[[str], None] | None = None,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.total = total
        self.description = description
        self.every_fraction = every_fraction
        self.every_seconds = every_seconds
        self.log = log or logger.info
        self.clock = clock
        self.done = 0
        self.start = clock()
        self._last_time = self.start
        self._last_done = 0

    def line(self) -> str:
        """The current state as one line."""
        elapsed = self.clock() - self.start
        if self.total <= 0:
            return f"{self.description}: {self.done} done, {format_seconds(elapsed)}"
        pct = 100.0 * self.done / self.total
        eta = elapsed / self.done * (self.total - self.done) if self.done else float("nan")
        eta_text = format_seconds(eta) if eta == eta else "?"
        return (
            f"{self.description}: {self.done}/{self.total} ({pct:.0f}%), "
            f"{format_seconds(elapsed)} elapsed, ETA {eta_text}"
        )

    def update(self, n: int = 1) -> str | None:
        """Count ``n`` more units; returns the line when one was logged."""
        self.done += n
        now = self.clock()
        step = max(1, int(self.total * self.every_fraction)) if self.total > 0 else None
        due = now - self._last_time >= self.every_seconds
        if step is not None and self.done - self._last_done >= step:
            due = True
        if self.total > 0 and self.done >= self.total:
            due = True
        if not due:
            return None
        self._last_time, self._last_done = now, self.done
        text = self.line()
        self.log(text)
        return text


def track(
    items: Iterable[T],
    description: str,
    *,
    total: int | None = None,
    terminal: bool | None = None,
) -> Iterator[T]:
    """``items`` with progress: a rich bar on a terminal, :class:`PlainProgress` lines otherwise.

    A drop-in for ``rich.progress.track(items, description=..., total=...)``.
    """
    if total is None and isinstance(items, Sized):
        total = len(items)
    if is_terminal() if terminal is None else terminal:
        from rich.progress import track as rich_track

        yield from rich_track(items, description=description, total=total)
        return
    progress = PlainProgress(total or 0, description)
    for item in items:
        yield item
        progress.update()


class _StderrHandler(logging.StreamHandler):
    """Writes to whatever ``sys.stderr`` is when a line is logged, not the stream of the moment
    the handler was made: a handler kept for the process must not write into a redirect (or a
    test's capture) that has since been closed."""

    @property  # type: ignore[override]
    def stream(self):
        return sys.stderr

    @stream.setter
    def stream(self, _value) -> None:  # StreamHandler.__init__ assigns it
        pass


def _has_handler(log: logging.Logger) -> bool:
    current: logging.Logger | None = log
    while current is not None:
        if current.handlers:
            return True
        current = current.parent if current.propagate else None
    return False


@contextmanager
def log_to_file(path: Path | str) -> Iterator[Path]:
    """INFO lines of the ``polymodal`` loggers go to ``path`` (appended) while the block runs,
    and to stderr too when no handler is configured (Python would otherwise show only
    warnings there)."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    root = logging.getLogger("polymodal")
    added: list[logging.Handler] = [logging.FileHandler(path, encoding="utf-8")]
    if not _has_handler(root):
        added.append(_StderrHandler())
    for handler in added:
        handler.setFormatter(logging.Formatter(_FORMAT))
        handler.setLevel(logging.INFO)
        root.addHandler(handler)
    level = root.level
    if level == logging.NOTSET or level > logging.INFO:
        root.setLevel(logging.INFO)
    try:
        yield path
    finally:
        root.setLevel(level)
        for handler in added:
            root.removeHandler(handler)
            handler.close()


def log_to_stderr() -> None:
    """INFO lines of the ``polymodal`` loggers on stderr (the command line's entry point calls
    this once): progress, epochs and settings such as the thread count are seen on a terminal
    and kept when stderr is redirected to a file."""
    root = logging.getLogger("polymodal")
    if any(getattr(h, "_polymodal_cli", False) for h in root.handlers):
        return
    handler = _StderrHandler()
    handler.setFormatter(logging.Formatter("%(asctime)s %(message)s", "%H:%M:%S"))
    handler.setLevel(logging.INFO)
    handler._polymodal_cli = True  # type: ignore[attr-defined]
    root.addHandler(handler)
    if root.level == logging.NOTSET or root.level > logging.INFO:
        root.setLevel(logging.INFO)
