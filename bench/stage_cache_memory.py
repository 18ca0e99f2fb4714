"""Memory of HAM10000's CPU recipe over its first epochs: the process's RSS against the tensors
Python can see (a census by ``gc``), at each epoch's end.

The partially frozen recipe (configs/ham10000_cpu_image.yaml) keeps one 29 KB frozen-prefix
output per image and view in memory. Kept one allocation each, between the training loop's
large transient buffers, they fragmented the heap: the process grew ~400 KB per entry (5.3 GB
after two epochs, 24 GB after fourteen) while the live tensors held 0.4 GB. The entries now live
in shared blocks (polymodal/slabs.py). Run it on an older checkout
(``PYTHONPATH=<checkout>/src``) to see the growth.

Usage::

    python bench/stage_cache_memory.py [--epochs 2] [--out runs/bench_stage_cache_memory]

Reads the frozen-stage cache of ``runs/bench_ham10000_cache`` (bench/ham10000_finetune.py fills
it; a cold cache adds the first epoch's prefix pass). Skips (exit 0) without
../shared/data/ham10000.
"""

from __future__ import annotations

import argparse
import gc
import shutil
from pathlib import Path

import lightning as L
import torch

import ham10000_finetune as recipe
from _common import machine
from polymodal.data.manifest import load_cohort
from polymodal.training.fit import fit
from polymodal.training.run_config import load_run_config


def rss_mb() -> float:
    """This process's resident memory in MB (Linux)."""
    return int(Path("/proc/self/statm").read_text().split()[1]) * 4096 / 2**20


def live_tensor_mb() -> tuple[int, float]:
    """(storages, MB) of every tensor storage reachable from Python objects."""
    gc.collect()
    storages = {}
    for obj in gc.get_objects():
        if isinstance(obj, torch.Tensor):
            storage = obj.untyped_storage()
            storages[storage.data_ptr()] = storage.nbytes()
    return len(storages), sum(storages.values()) / 2**20


class Census(L.Callback):
    """Prints RSS and the live tensors at the end of every training epoch."""

    def on_train_epoch_end(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        count, held = live_tensor_mb()
        print(
            f"epoch {trainer.current_epoch + 1}: RSS {rss_mb():.0f} MB, "
            f"live tensors {held:.0f} MB in {count} storages",
            flush=True,
        )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--epochs", type=int, default=2)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument(
        "--out", type=Path, default=recipe.REPO_ROOT / "runs" / "bench_stage_cache_memory"
    )
    args = parser.parse_args()
    if not recipe.DATA.is_dir():
        print(f"skipped: HAM10000 not found at {recipe.DATA}")
        return
    torch.set_num_threads(args.threads)
    shutil.rmtree(args.out, ignore_errors=True)
    spec = recipe.cohort_spec(args.out, quick=False)
    cache = recipe.REPO_ROOT / "runs" / "bench_ham10000_cache"
    run = load_run_config(
        recipe.RECIPES["image"], [f"train.cache_dir={cache}", f"train.max_epochs={args.epochs}"]
    )
    print(f"{machine(args.threads)}; before training: RSS {rss_mb():.0f} MB", flush=True)
    fit(spec, args.out / "run", run, cohort=load_cohort(spec), progress=False, callbacks=[Census()])


if __name__ == "__main__":
    main()
