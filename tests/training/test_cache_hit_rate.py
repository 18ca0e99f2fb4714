"""fit logs the sample cache's hit rate every epoch, and keeps the cache under train.cache_max_gb."""

from __future__ import annotations

from pathlib import Path

import pandas as pd

from polymodal.data.spec import load_spec
from polymodal.training.fit import fit

from .conftest import tiny_config


def _hit_rates(out: Path) -> list[float]:
    metrics = pd.read_csv(out / "logs" / "metrics.csv")
    return metrics["cache/hit_rate"].dropna().tolist()


def test_second_epoch_reads_everything_from_the_cache(run_dir: Path) -> None:
    # Epoch 1 decodes every file (the preprocessing fit reads without the cache); epoch 2 hits,
    # but for the few rows that epoch 1's dropped last batch (drop_last) never read.
    first, second = _hit_rates(run_dir)
    assert first == 0.0 and 0.9 < second < 1.0
    assert "sample cache" in (run_dir / "logs" / "fit.log").read_text()


def test_capped_compressed_cache_stays_under_the_cap(cohort_spec_path: Path, tmp_path: Path):
    cap_gb = 0.0004  # 400 kB: a fraction of the tiny cohort's decoded images and volumes
    run = tiny_config(
        "train.max_epochs=2", f"train.cache_max_gb={cap_gb}", "train.cache_compress=true"
    )
    out = tmp_path / "run"
    fit(load_spec(cohort_spec_path), out, run, progress=False)
    entries = [f for f in (out / "cache").glob("??/*") if f.suffix in (".stz", ".safetensors")]
    assert entries and all(f.suffix == ".stz" for f in entries)
    assert sum(f.stat().st_size for f in entries) <= cap_gb * 1e9
    rates = _hit_rates(out)
    assert len(rates) == 2 and rates[1] < 1.0  # evicted entries are decoded again
