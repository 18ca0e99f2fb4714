"""One writer per run folder: a second fit into a folder in use is refused, naming the holder."""

from __future__ import annotations

import os
import socket
import subprocess
import sys
from pathlib import Path

import pytest

from polymodal.data.spec import load_spec
from polymodal.run_lock import LOCK_NAME, RunFolderBusy, RunLock
from polymodal.training.fit import fit

from .conftest import tiny_config

HOLD = """
import sys, time
from pathlib import Path
from polymodal.run_lock import RunLock
with RunLock(Path(sys.argv[1])):
    print("locked", flush=True)
    time.sleep(120)
"""


def _fit(spec_path: Path, out: Path):
    run = tiny_config("train.max_epochs=1")
    return fit(load_spec(spec_path), out, run, progress=False)


def test_a_fit_into_a_folder_another_process_writes_to_is_refused(
    cohort_spec_path: Path, tmp_path: Path
) -> None:
    out = tmp_path / "run"
    holder = subprocess.Popen(
        [sys.executable, "-c", HOLD, str(out)], stdout=subprocess.PIPE, text=True
    )
    try:
        assert holder.stdout.readline().strip() == "locked"
        with pytest.raises(RunFolderBusy) as err:
            _fit(cohort_spec_path, out)
    finally:
        holder.kill()
        holder.wait()
    message = str(err.value)
    assert f"pid {holder.pid} on {socket.gethostname()}, started " in message
    assert "another polymodal process is writing to this run folder" in message
    assert sorted(p.name for p in out.iterdir()) == [LOCK_NAME]  # nothing was written
    # The killed holder's lock is gone with it: the folder is free again.
    with RunLock(out):
        pass


def test_the_lock_is_held_for_the_whole_fit_and_released_after(
    cohort_spec_path: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from polymodal.training import fit as fit_module

    out = tmp_path / "run"
    seen = []
    original = fit_module.save_model_folder

    def export_while_checking_the_lock(*args, **kwargs):
        # The last step of a fit: a second writer is still refused here.
        with pytest.raises(RunFolderBusy, match=f"pid {os.getpid()} on"):
            RunLock(out).__enter__()
        seen.append(True)
        return original(*args, **kwargs)

    monkeypatch.setattr(fit_module, "save_model_folder", export_while_checking_the_lock)
    _fit(cohort_spec_path, out)
    assert seen == [True]
    with RunLock(out):  # released when fit returned
        pass
