"""The sample cache with a size cap (``train.cache_max_gb``, least recently used evicted): hit
rate and epoch time per epoch, uncapped and capped at fractions of the full cache's size.

Every arm fits the same model on the same demo cohort (64 × 64 PNG images and 32³ NIfTI
volumes resampled to a fixed spacing, so a miss decodes and resamples files) with its own empty
cache folder, launched as a user launches it (``polymodal fit`` in a fresh process). The
uncapped arm runs first; its cache's bytes on disk are the full size, and the capped arms get
``--fractions`` of it. The hit rate is ``cache/hit_rate`` as the fit logs it (hits ÷ reads of
the epoch, training and validation); epoch time is ``train/epoch_seconds`` (training steps)
plus ``val/epoch_seconds``. Small CPU encoders (those of bench/tune_demo.py) keep the model's
share of each epoch small enough for the reading to show.

Usage::

    python bench/cache_cap.py [--rows 300] [--epochs 3] [--fractions 1.0 0.5 0.25]
    python bench/cache_cap.py --rows 60 --epochs 2 --out runs/bench_cache_cap_smoke \\
        --name cache_cap_smoke                                                   # smoke run

Writes ``bench/results/cache_cap.md`` (``--name`` changes the stem).
"""

from __future__ import annotations

import argparse
import math
import sys
from pathlib import Path

import pandas as pd

from _common import load_average, machine, table, timed_cli_fit, write_report
from polymodal.data.cache_index import ENTRIES_NAME, EntryIndex
from polymodal.datasets.demo import make_demo_cohort

REPO_ROOT = Path(__file__).resolve().parents[1]
SETTINGS = [
    "model.core=synergy",
    "model.dim=32",
    "model.encoders.lesion={name: image_timm, options: {backbone: resnet10t}}",
    "model.encoders.ct={name: volume_monai, options: {network_options: "
    "{init_features: 8, growth_rate: 8, block_config: [2, 2]}}}",
    "model.encoders.note={options: {depth: 1}}",
    "train.seed=0",
    "train.batch_size=32",
    "train.accelerator=cpu",
    "train.early_stopping_patience=null",
]


def fit(spec: Path, run: Path, epochs: int, cap_gb: float | None) -> float:
    """``polymodal fit`` with its own cache folder (``run/cache``); its wall-clock seconds."""
    settings = [*SETTINGS, f"train.max_epochs={epochs}", f"train.cache_dir={run / 'cache'}"]
    if cap_gb is not None:
        settings.append(f"train.cache_max_gb={cap_gb!r}")
    return timed_cli_fit(spec, run / "fit", settings)


def cache_bytes(run: Path) -> int:
    """The bytes on disk of the entries in ``run``'s cache, as its index records them."""
    cache = run / "cache"
    return EntryIndex(cache / ENTRIES_NAME, cache).total_bytes()


def epochs_of(run: Path) -> pd.DataFrame:
    """Per epoch: ``hit_rate`` and ``seconds`` (training steps + validation)."""
    metrics = pd.read_csv(run / "fit" / "logs" / "metrics.csv")
    rows = metrics.dropna(subset=["train/epoch_seconds"]).set_index("epoch")
    hits = metrics.dropna(subset=["cache/hit_rate"]).set_index("epoch")["cache/hit_rate"]
    seconds = rows["train/epoch_seconds"] + rows["val/epoch_seconds"].fillna(0.0)
    return pd.DataFrame({"hit_rate": hits, "seconds": seconds})


def side_by_side(arms: dict[str, pd.DataFrame]) -> list[str]:
    """One row per epoch: each arm's hit rate and seconds, and its time as a ratio of the
    uncapped arm's (the first)."""
    base = next(iter(arms.values()))["seconds"]
    header = ["epoch"]
    for name in arms:
        header += [f"{name}: hit rate", f"{name}: s", f"{name}: × uncapped"]
    rows = []
    for epoch in base.index:
        row: list[str] = [str(int(epoch) + 1)]
        for frame in arms.values():
            hit, seconds = frame.loc[epoch, "hit_rate"], frame.loc[epoch, "seconds"]
            row += [f"{hit:.0%}", f"{seconds:.0f}", f"{seconds / base[epoch]:.2f}"]
        rows.append(row)
    return table(header, rows, "r" * len(header))


def main() -> None:
    args = parse_args()
    load_start = load_average()
    cohort = args.out / f"cohort_{args.rows}"
    if not (cohort / "spec.yaml").is_file():
        make_demo_cohort(cohort, n=args.rows, seed=0)
    spec = cohort / "spec.yaml"
    uncapped = args.out / "uncapped"
    walls = {"no cap": fit(spec, uncapped, args.epochs, None)}
    full = cache_bytes(uncapped)
    arms, sizes = {"no cap": epochs_of(uncapped)}, {"no cap": full}
    for fraction in args.fractions:
        name = f"cap {fraction:.0%}"
        run = args.out / f"cap_{round(fraction * 100)}"
        # One byte over: the cap in GB goes through floats, and must not land a byte short.
        walls[name] = fit(spec, run, args.epochs, (math.ceil(full * fraction) + 1) / 1e9)
        arms[name], sizes[name] = epochs_of(run), cache_bytes(run)
    summary = [
        [
            name,
            f"{sizes[name] / 1e6:.1f}",
            f"{frame['hit_rate'].iloc[1:].mean():.0%}" if len(frame) > 1 else "n/a",
            f"{frame['seconds'].iloc[1:].sum():.0f}" if len(frame) > 1 else "n/a",
            f"{walls[name]:.0f}",
        ]
        for name, frame in arms.items()
    ]
    train_rows = int((pd.read_csv(cohort / "manifest.csv")["split"] == "train").sum())
    lines = [
        "# The sample cache with a size cap (`train.cache_max_gb`)",
        "",
        f"Command: `python {' '.join(sys.argv)}`",
        "",
        f"Machine: {machine()}; load average {load_start:.1f} at the start, "
        f"{load_average():.1f} at the end (a shared machine: other processes only add time, "
        "so compare the arms, measured one after another, with that in mind).",
        f"Demo cohort, {args.rows} rows ({train_rows} training), 64² images and 32³ volumes; "
        f"synergy D = 32 with small CPU encoders, batch 32, {args.epochs} epochs; each arm "
        f"its own empty cache. Full cache (no cap): {full / 1e6:.1f} MB; caps at "
        + ", ".join(f"{f:.0%}" for f in args.fractions)
        + " of it.",
        "",
        *table(
            ["arm", "cache MB at the end", "hit rate after epoch 1", "s after epoch 1", "wall s"],
            summary,
            "lrrrr",
        ),
        "",
        "Per epoch (hit rate: hits ÷ reads of the epoch, training and validation; s: training "
        "steps + validation; × uncapped: the epoch's time over the uncapped arm's):",
        "",
        *side_by_side(arms),
    ]
    print(write_report(REPO_ROOT / "bench" / "results" / f"{args.name}.md", lines))


def parse_args() -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rows", type=int, default=300, help="demo cohort rows")
    parser.add_argument("--epochs", type=int, default=3)
    parser.add_argument("--fractions", type=float, nargs="+", default=[1.0, 0.5, 0.25])
    parser.add_argument("--out", type=Path, default=REPO_ROOT / "runs" / "bench_cache_cap")
    parser.add_argument("--name", default="cache_cap", help="stem of the result file")
    return parser.parse_args()


if __name__ == "__main__":
    main()
