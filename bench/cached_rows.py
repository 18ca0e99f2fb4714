"""Reading cached rows: one epoch over a demo cohort's training rows, every file already cached.

Side by side in one run, the fastest of ``--repeats`` epochs each:

* the sample cache's memory tier off (``train.cache_memory_gb: 0``), rows read one at a time
  (each hit reads its safetensors file and records itself in its own SQLite transaction);
* memory tier off, rows read a batch at a time (``CohortDataset.__getitems__``: one transaction
  per batch);
* memory tier on, one at a time;
* memory tier on, a batch at a time (what ``fit`` does from its second epoch).

Usage::

    python bench/cached_rows.py [--rows 300] [--batch-size 32] [--repeats 5] [--out DIR]
"""

from __future__ import annotations

import polymodal.huge_pages  # noqa: F401  (before torch, as the command line does)

# isort: split
import argparse
import time
from pathlib import Path

from _common import machine, table
from polymodal.data.cache import SampleCache
from polymodal.data.dataset import CohortDataset
from polymodal.data.manifest import load_cohort
from polymodal.data.preprocessing import Preprocessor
from polymodal.data.spec import load_spec
from polymodal.datasets.demo import make_demo_cohort
from polymodal.runtime import setup_process

REPO_ROOT = Path(__file__).resolve().parents[1]


def epoch_seconds(dataset: CohortDataset, batch_size: int | None, repeats: int) -> float:
    """Fastest of ``repeats`` passes over ``dataset`` (row by row when ``batch_size`` is None)."""
    best = float("inf")
    for _ in range(repeats):
        start = time.perf_counter()
        if batch_size is None:
            for index in range(len(dataset)):
                dataset[index]
        else:
            for first in range(0, len(dataset), batch_size):
                dataset.__getitems__(list(range(first, min(len(dataset), first + batch_size))))
        best = min(best, time.perf_counter() - start)
    return best


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rows", type=int, default=300, help="demo cohort rows")
    parser.add_argument("--batch-size", type=int, default=32)
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--out", type=Path, default=REPO_ROOT / "runs" / "bench_cached_rows")
    args = parser.parse_args()
    setup_process()
    spec_path = make_demo_cohort(
        args.out / "demo", n=args.rows, seed=0, image_size=64, volume_size=32
    )
    cohort = load_cohort(load_spec(spec_path))
    prep = Preprocessor.fit(cohort)
    folder = args.out / "cache"
    fill = CohortDataset(cohort, prep, "train", cache=SampleCache(folder), modalities=["lesion", "labs"])  # fmt: skip
    epoch_seconds(fill, None, 1)  # every entry on disk before anything is timed

    rows = []
    for memory in (0, 10**9):
        cache = SampleCache(folder, memory_bytes=memory)
        dataset = CohortDataset(cohort, prep, "train", cache=cache, modalities=["lesion", "labs"])
        epoch_seconds(dataset, None, 1)  # fills the memory tier (when on)
        for batch_size in (None, args.batch_size):
            seconds = epoch_seconds(dataset, batch_size, args.repeats)
            how = "one row at a time" if batch_size is None else f"batches of {batch_size}"
            rows.append(
                (
                    f"memory tier {'on' if memory else 'off'}, {how}",
                    f"{seconds * 1e3:.1f} ms",
                    f"{seconds / len(dataset) * 1e6:.0f} µs",
                )
            )
    print(f"\nmachine: {machine()}; {len(dataset)} training rows (image 64×64 + tabular)")
    print("\n".join(table(["reading", "epoch", "per row"], rows)))


if __name__ == "__main__":
    main()
