"""Hit rate of a capped sample cache under reshuffled epochs: ``lru`` against ``keep``.

A loader reads every row once per epoch in a new order. This drives ``SampleCache`` exactly so
(a read; on a miss, a write), with no model and no decoding, so the figure is the cache
policy's alone: ``--rows`` entries of ``--kb`` kB of float32 noise, caps at 100 %, 75 %, 50 % and
25 % of the entries' bytes, ``--epochs`` epochs from one seed. Hit rate is hits ÷ reads of the
epoch; epoch 1 starts from an empty cache. Results: ``bench/results/cache_policy.md``.

Usage::

    python bench/cache_policy.py [--rows 1000] [--kb 64] [--epochs 4]
"""

from __future__ import annotations

import argparse
import tempfile
from pathlib import Path

import numpy as np
import torch

from _common import machine, table, write_report
from polymodal.data.cache import SampleCache

REPO_ROOT = Path(__file__).resolve().parents[1]
RESULTS = REPO_ROOT / "bench" / "results" / "cache_policy.md"
CAPS = (1.0, 0.75, 0.5, 0.25)


def entry(row: int, floats: int) -> dict[str, torch.Tensor]:
    noise = np.random.default_rng(row).normal(size=floats).astype("f4")
    return {"pixels": torch.from_numpy(noise)}


def epoch_hit_rates(cache: SampleCache, orders: list[np.ndarray], floats: int) -> list[float]:
    """Per epoch, the share of reads that hit."""
    rates = []
    for order in orders:
        hits = 0
        for row in order:
            key = f"{row:040x}"
            if cache.get(key) is None:
                cache.put(key, entry(int(row), floats))
            else:
                hits += 1
        rates.append(hits / len(order))
    return rates


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rows", type=int, default=1000)
    parser.add_argument("--kb", type=int, default=64, help="size of one entry")
    parser.add_argument("--epochs", type=int, default=4)
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args()
    floats = args.kb * 1024 // 4
    rng = np.random.default_rng(args.seed)
    orders = [rng.permutation(args.rows) for _ in range(args.epochs)]
    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        probe = SampleCache(Path(tmp) / "probe")
        probe.put("0" * 40, entry(0, floats))
        full = args.rows * probe.entry_path("0" * 40).stat().st_size
        for cap in CAPS:
            for policy in ("lru", "keep"):
                folder = Path(tmp) / f"{policy}_{cap}"
                cache = SampleCache(folder, max_bytes=int(cap * full) + 1, policy=policy)
                rates = epoch_hit_rates(cache, orders, floats)
                later = np.mean(rates[1:])
                rows.append([f"{cap:.0%}", policy, *(f"{r:.1%}" for r in rates), f"{later:.1%}"])
                print(rows[-1], flush=True)
    header = ["cap", "policy", *(f"epoch {e + 1}" for e in range(args.epochs)), "epochs 2+"]
    lines = [
        "# Capped sample cache under reshuffled epochs: hit rate, lru vs keep",
        "",
        f"Command: `python bench/cache_policy.py --rows {args.rows} --kb {args.kb} "
        f"--epochs {args.epochs}`",
        "",
        f"Machine: {machine()}. {args.rows} entries of {args.kb} kB ({full / 1e6:.1f} MB on "
        "disk uncapped); each epoch reads every entry once in a new order (seed "
        f"{args.seed}); a miss writes the entry.",
        "",
        *table(header, rows),
    ]
    print(write_report(RESULTS, lines))


if __name__ == "__main__":
    main()
