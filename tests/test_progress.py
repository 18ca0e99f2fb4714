"""Progress lines with counts and an ETA when the output is not a terminal (polymodal.progress)."""

from __future__ import annotations

import io
import logging
import sys

import pytest

from polymodal.progress import PlainProgress, format_seconds, is_terminal, log_to_file, track


class FakeClock:
    def __init__(self) -> None:
        self.now = 0.0

    def __call__(self) -> float:
        return self.now


def test_lines_every_tenth_with_count_and_eta():
    clock, lines = FakeClock(), []
    progress = PlainProgress(100, "caching", log=lines.append, clock=clock)
    for _ in range(100):
        clock.now += 0.5
        progress.update()
    assert len(lines) == 10
    assert lines[0] == "caching: 10/100 (10%), 5s elapsed, ETA 45s"
    assert lines[-1].startswith("caching: 100/100 (100%), 50s elapsed, ETA 0s")


def test_slow_work_logs_every_thirty_seconds_too():
    clock, lines = FakeClock(), []
    progress = PlainProgress(1000, "backbone", log=lines.append, clock=clock)
    clock.now = 31.0
    progress.update()  # 0.1 % done, but half a minute has passed
    assert lines == ["backbone: 1/1000 (0%), 31s elapsed, ETA 8h36m"]


def test_format_seconds():
    assert [format_seconds(s) for s in (4.2, 65, 3720)] == ["4s", "1m05s", "1h02m"]


def test_track_without_terminal_yields_every_item_and_logs(caplog):
    with caplog.at_level(logging.INFO, logger="polymodal.progress"):
        assert list(track(range(20), "scoring", terminal=False)) == list(range(20))
    assert "scoring: 20/20 (100%)" in caplog.text


def test_a_file_is_not_a_terminal():
    assert not is_terminal(io.StringIO())


def test_log_to_file_gets_info_lines(tmp_path):
    path = tmp_path / "logs" / "fit.log"
    with log_to_file(path):
        logging.getLogger("polymodal.training.timing").info("epoch 1/3: train loss 0.5")
    logging.getLogger("polymodal.training.timing").info("after the block")
    text = path.read_text()
    assert "epoch 1/3: train loss 0.5" in text and "after the block" not in text


def test_command_line_logging_is_installed_once(monkeypatch):
    from polymodal.progress import log_to_stderr

    root = logging.getLogger("polymodal")
    monkeypatch.setattr(root, "handlers", [])
    monkeypatch.setattr(root, "level", logging.NOTSET)
    log_to_stderr()
    log_to_stderr()
    assert len(root.handlers) == 1 and root.getEffectiveLevel() == logging.INFO


def test_the_stderr_handler_follows_stderr_after_a_redirect_closes(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """A command run under a redirect that later closes (a test's capture, a finished pipe) must
    not make every later log line a 'Logging error' traceback."""
    from polymodal.progress import log_to_stderr

    root = logging.getLogger("polymodal")
    before = list(root.handlers)
    first = io.StringIO()
    monkeypatch.setattr(sys, "stderr", first)
    try:
        log_to_stderr()
        first.close()
        second = io.StringIO()
        monkeypatch.setattr(sys, "stderr", second)
        logging.getLogger("polymodal.test").info("after the redirect")
        assert "after the redirect" in second.getvalue()
        assert "Logging error" not in second.getvalue()
    finally:
        for handler in [h for h in root.handlers if h not in before]:
            root.removeHandler(handler)
