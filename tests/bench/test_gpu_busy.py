"""bench/gpu_busy.py: the second epoch's training window in fit.log, the mean utilisation
inside it, nvidia-smi's lines and the stratified subset (the parts that run without a GPU)."""

from __future__ import annotations

import importlib.util
import os
import sys
import time
from datetime import datetime
from pathlib import Path

import pandas as pd
import pytest

BENCH = Path(__file__).resolve().parents[2] / "bench"
spec = importlib.util.spec_from_file_location("bench_gpu_busy", BENCH / "gpu_busy.py")
gpu_busy = importlib.util.module_from_spec(spec)
sys.path.insert(0, str(BENCH))  # the script imports _common as its neighbour; only while loading
try:
    spec.loader.exec_module(gpu_busy)
finally:
    sys.path.remove(str(BENCH))


def _at(clock: str) -> float:
    return datetime.strptime(f"2026-12-07 {clock}", "%Y-%m-%d %H:%M:%S.%f").timestamp()


def _line(clock: str, logger: str, message: str) -> str:
    return f"2026-12-07 {clock.replace('.', ',')} INFO {logger}: {message}"


P, T, C = "polymodal.progress", "polymodal.training.timing", "polymodal.training.cache_log"


def _run(offset: int) -> list[str]:
    """One 2-epoch fit's lines, starting ``offset`` minutes past 10:00."""
    m = f"10:{offset:02d}"
    return [
        _line(f"{m}:00.000", "polymodal.runtime", "torch threads: 8 in the main process"),
        _line(f"{m}:05.000", P, "epoch 1/2 training: 2/4 (50%), 5s elapsed, ETA 5s"),
        _line(f"{m}:10.000", P, "epoch 1/2 training: 4/4 (100%), 10s elapsed, ETA 0s"),
        _line(f"{m}:12.000", P, "epoch 1/2 validation: 1/1 (100%), 2s elapsed, ETA 0s"),
        _line(
            f"{m}:12.250",
            T,
            "epoch 1/2: train loss 1.7, val/dx/balanced_accuracy 0.4, 11.5 s, ETA 12s",
        ),
        _line(f"{m}:12.500", C, "epoch 1: sample cache 0 hits, 8 misses (hit rate 0.0%)"),
        _line(f"{m}:14.000", P, "epoch 2/2 training: 1/4 (25%), 1s elapsed, ETA 3s"),
        _line(f"{m}:15.000", "py.warnings", "a warning in the middle of the epoch"),
        "Traceback-like continuation line without a timestamp",
        _line(f"{m}:16.000", P, "epoch 2/2 training: 2/4 (50%), 3s elapsed, ETA 3s"),
        _line(f"{m}:20.500", P, "epoch 2/2 training: 4/4 (100%), 8s elapsed, ETA 0s"),
        _line(f"{m}:22.000", P, "epoch 2/2 validation: 1/1 (100%), 1s elapsed, ETA 0s"),
        _line(
            f"{m}:22.100",
            T,
            "epoch 2/2: train loss 1.5, val/dx/balanced_accuracy 0.5, 8.6 s, ETA 0s",
        ),
    ]


def test_the_window_runs_from_epoch_2s_start_to_its_last_training_batch() -> None:
    log = "\n".join(_run(0))
    # start: epoch 2's summary (22.1 s) less its 8.6 s; end: its 4/4 training line
    assert gpu_busy.epoch_window(log, 2) == pytest.approx(
        (_at("10:00:13.500"), _at("10:00:20.500"))
    )
    assert gpu_busy.epoch_window(log, 1) == pytest.approx(
        (_at("10:00:00.750"), _at("10:00:10.000"))
    )


def test_an_appended_log_gives_the_latest_run_and_other_epochs_never_match() -> None:
    earlier, later = _run(0), _run(30)
    assert gpu_busy.epoch_window("\n".join(earlier + later), 2) == pytest.approx(
        (_at("10:30:13.500"), _at("10:30:20.500"))
    )
    renamed = [line.replace("epoch 2/2", "epoch 12/20") for line in later]
    assert gpu_busy.epoch_window("\n".join(earlier + renamed), 2) == pytest.approx(
        (_at("10:00:13.500"), _at("10:00:20.500"))
    )
    unfinished = [line for line in earlier if "2/2 training: 4/4" not in line]
    with pytest.raises(ValueError, match="no finished 'epoch 2/N training"):
        gpu_busy.epoch_window("\n".join(unfinished), 2)
    no_summary = [line for line in earlier if "epoch 2/2: train loss" not in line]
    with pytest.raises(ValueError, match="no 'epoch 2/N: train loss"):
        gpu_busy.epoch_window("\n".join(no_summary), 2)


def test_the_busy_mean_counts_only_the_samples_inside_the_window() -> None:
    samples = [(9.9, 0.0), (10.0, 90.0), (10.1, 60.0), (10.2, 30.0), (10.3, 100.0), (10.31, 0.0)]
    assert gpu_busy.busy_in_window(samples, 10.0, 10.3) == pytest.approx(70.0)
    assert gpu_busy.busy_in_window(samples, 10.05, 10.25) == pytest.approx(45.0)
    with pytest.raises(ValueError, match="no utilisation sample"):
        gpu_busy.busy_in_window(samples, 11.0, 12.0)


def test_nvidia_smi_lines_give_their_own_timestamp_and_busy_percent() -> None:
    stamp = datetime(2026, 12, 7, 15, 18, 29, 52000).timestamp()
    assert gpu_busy.parse_smi_line("2026/12/07 15:18:29.052, 45\n") == (stamp, 45.0)
    assert gpu_busy.parse_smi_line("2026/12/07 15:18:29.052, [N/A]") is None
    assert gpu_busy.parse_smi_line("") is None


def test_a_row_subset_keeps_every_class_and_the_splits_shares() -> None:
    rows = pd.DataFrame(
        {
            "split": ["train"] * 100 + ["val"] * 20,
            "dx": ["nv"] * 90 + ["df"] * 10 + ["nv"] * 18 + ["df"] * 2,
        }
    )
    subset = gpu_busy.stratified_rows(rows, 20)
    counts = subset.groupby(["split", "dx"]).size().to_dict()
    assert counts == {("train", "nv"): 18, ("train", "df"): 2, ("val", "nv"): 4, ("val", "df"): 1}


def test_the_sampler_reads_nvidia_smis_lines_until_it_stops(tmp_path: Path, monkeypatch) -> None:
    fake = tmp_path / "nvidia-smi"  # prints what `nvidia-smi --query-gpu=timestamp,... -lms` does
    fake.write_text(
        '#!/bin/sh\necho "$@" > "$(dirname "$0")/args"\n'
        'while true; do echo "$(date "+%Y/%m/%d %H:%M:%S.%3N"), 73"; sleep 0.05; done\n'
    )
    fake.chmod(0o755)
    monkeypatch.setenv("PATH", f"{tmp_path}:{os.environ['PATH']}")
    started = time.time()
    with gpu_busy.UtilisationSampler() as sampler:
        time.sleep(0.5)
    assert sampler.source == "nvidia-smi" and len(sampler.samples) >= 3
    assert {busy for _, busy in sampler.samples} == {73.0}
    assert all(started - 1 <= stamp <= time.time() for stamp, _ in sampler.samples)
    assert "timestamp,utilization.gpu" in (tmp_path / "args").read_text()
