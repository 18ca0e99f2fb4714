"""A fit that dies mid-epoch, for the resume tests (from files and from shards)."""

from __future__ import annotations

from collections.abc import Callable

import pytest

from polymodal.training.module import PolymodalModule


class Killed(Exception):
    """Stands for the process dying mid-epoch: nothing after it runs."""


def kill_in_the_second_epoch(
    monkeypatch: pytest.MonkeyPatch, run_fit: Callable[[], object]
) -> None:
    """Runs ``run_fit`` with training dying at the second batch of its second epoch."""
    original_step = PolymodalModule.training_step

    def dies_in_the_second_epoch(self, batch, batch_idx):
        if self.current_epoch == 1 and batch_idx == 1:
            raise Killed
        return original_step(self, batch, batch_idx)

    with monkeypatch.context() as patch:
        patch.setattr(PolymodalModule, "training_step", dies_in_the_second_epoch)
        with pytest.raises(Killed):
            run_fit()
