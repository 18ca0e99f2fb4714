"""Training on 1 vs N processes: samples/s, the scaling efficiency, and whether the selected
epoch and its validation metrics are the same.

Every run trains the same model on the same cohort with the same *global* batch (per-device
batch = global ÷ devices), launched as a user launches it (``polymodal fit`` in a fresh
process; Lightning starts the other ranks). Samples/s is training rows ÷ the median
``train/epoch_seconds`` of the epochs after the first (the first builds caches).

Usage::

    python bench/ddp_scaling.py                                   # CPU: 1 vs 2 processes (gloo)
    python bench/ddp_scaling.py --accelerator gpu --devices 1 2 4 8 --rows 20000 --batch 256

Writes ``bench/results/ddp_scaling_<accelerator>.md``.
"""

from __future__ import annotations

import argparse
import subprocess
import sys
import time
from pathlib import Path

import pandas as pd

from _common import load_average, machine, table, write_report
from polymodal.datasets.demo import make_demo_cohort

REPO_ROOT = Path(__file__).resolve().parents[1]
# No random choice inside a step, so N processes can train what one process trains.
MODEL = [
    "model.core=synergy",
    "model.dim=64",
    "model.modality_dropout=0",
    "train.seed=0",
    "train.early_stopping_patience=null",
]


def fit(spec: Path, out: Path, accelerator: str, devices: int, args) -> float:
    """Run ``polymodal fit``; its wall-clock seconds."""
    settings = [
        *MODEL,
        f"train.accelerator={accelerator}",
        f"train.devices={devices}",
        f"train.strategy={'ddp' if devices > 1 else 'auto'}",
        f"train.batch_size={args.batch // devices}",
        f"train.max_epochs={args.epochs}",
        f"train.cache_dir={out.parent / 'cache'}",
    ]
    command = [sys.executable, "-m", "polymodal", "fit", str(spec), "-o", str(out)]
    for item in settings:
        command += ["--set", item]
    started = time.perf_counter()
    subprocess.run(command, check=True, capture_output=True, text=True)
    return time.perf_counter() - started


def summary(run: Path, train_rows: int) -> dict:
    metrics = pd.read_csv(run / "logs" / "metrics.csv")
    seconds = metrics["train/epoch_seconds"].dropna().to_numpy()
    val = metrics.dropna(subset=["val/label/auroc"])
    best = val.loc[val["val/label/auroc"].idxmax()]
    return {
        "samples/s": train_rows
        / float(pd.Series(seconds[1:] if len(seconds) > 1 else seconds).median()),
        "best epoch": int(best["epoch"]),
        "val AUROC": float(best["val/label/auroc"]),
        "val loss": float(best["val/loss"]),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--accelerator", default="cpu")
    parser.add_argument("--devices", type=int, nargs="+", default=[1, 2])
    parser.add_argument("--rows", type=int, default=600, help="demo cohort rows")
    parser.add_argument("--epochs", type=int, default=4)
    parser.add_argument("--batch", type=int, default=32, help="global batch")
    parser.add_argument("--out", type=Path, default=REPO_ROOT / "runs" / "bench_ddp")
    args = parser.parse_args()
    cohort = args.out / "cohort"
    if not (cohort / "spec.yaml").is_file():
        make_demo_cohort(cohort, n=args.rows, seed=0, image_size=32, volume_size=16)
    train_rows = int((pd.read_csv(cohort / "manifest.csv")["split"] == "train").sum())
    rows, results = [], {}
    for devices in args.devices:
        run = args.out / f"devices_{devices}"
        wall = fit(cohort / "spec.yaml", run, args.accelerator, devices, args)
        results[devices] = {**summary(run, train_rows), "wall s": wall}
    base = results[args.devices[0]]
    for devices, r in results.items():
        speedup = r["samples/s"] / base["samples/s"]
        rows.append(
            [
                devices,
                f"{r['samples/s']:.1f}",
                f"{speedup:.2f}×",
                f"{speedup / devices * args.devices[0]:.0%}",
                r["best epoch"],
                f"{r['val AUROC']:.6f}",
                f"{r['val loss']:.6f}",
                f"{r['wall s']:.0f}",
            ]
        )
    lines = [
        f"# Training on 1 vs N processes ({args.accelerator})",
        "",
        f"Command: `python {' '.join(sys.argv)}`",
        "",
        f"Machine: {machine()}; load average at the end {load_average():.1f}.",
        f"Demo cohort, {args.rows} rows ({train_rows} training), synergy D = 64, global batch "
        f"{args.batch}, {args.epochs} epochs; samples/s from the median epoch after the first.",
        "",
        *table(
            [
                "processes",
                "samples/s",
                "speed-up",
                "efficiency",
                "selected epoch",
                "val AUROC",
                "val loss",
                "wall s",
            ],
            rows,
        ),
    ]
    print(
        write_report(REPO_ROOT / "bench" / "results" / f"ddp_scaling_{args.accelerator}.md", lines)
    )


if __name__ == "__main__":
    main()
