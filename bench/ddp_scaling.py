"""Training on 1 vs N processes: samples/s, the scaling efficiency, and whether the selected
epoch and its validation metrics are the same.

Every run trains the same model on the same cohort with the same *global* batch (per-device
batch = global ÷ devices), launched as a user launches it (``polymodal fit`` in a fresh
process; Lightning starts the other ranks). Samples/s is training rows ÷ the median
``train/epoch_seconds`` of the epochs after the first (the first builds caches).

The runs differ by float rounding (the summation order changes with the process count, as it
does with the thread count) and, on CPU processes, by BatchNorm statistics taken per process
(PyTorch's SyncBatchNorm runs on CUDA only; on GPUs they are synchronised). The report gives
the largest weight difference and the BatchNorm statistics' difference separately. On a CPU
with other work on it, give each process one thread (``--threads 1``): two threads
that wait for each other on a busy core can make one process several times slower.

Usage::

    python bench/ddp_scaling.py                                   # CPU: 1 vs 2 processes (gloo)
    python bench/ddp_scaling.py --accelerator gpu --devices 1 2 4 8 --rows 20000 --batch 256 \
        --workers 4

Writes ``bench/results/ddp_scaling_<accelerator>[_<precision>].md`` (no suffix for 32-bit).
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import pandas as pd
from safetensors.torch import load_file

from _common import load_average, machine, table, timed_cli_fit, write_report
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
        f"train.num_workers={args.workers}",
        f"train.cache_dir={out.parent / 'cache'}",
    ]
    if args.threads is not None:
        settings.append(f"train.num_threads={args.threads}")
    if args.precision != "32":  # "32" on the command line would be read as a number
        settings.append(f"train.precision={args.precision}")
    return timed_cli_fit(spec, out, settings)


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


def per_epoch(runs: dict[int, Path]) -> list[str]:
    """A table of every epoch: each run's training seconds and validation AUROC, side by side."""
    columns = {}
    for devices, run in runs.items():
        metrics = pd.read_csv(run / "logs" / "metrics.csv")
        seconds = metrics.dropna(subset=["train/epoch_seconds"]).set_index("epoch")
        val = metrics.dropna(subset=["val/label/auroc"]).set_index("epoch")
        columns[f"{devices} proc. s"] = seconds["train/epoch_seconds"].map("{:.0f}".format)
        columns[f"{devices} proc. val AUROC"] = val["val/label/auroc"].map("{:.6f}".format)
    frame = pd.DataFrame(columns)
    rows = [
        [int(epoch), *cells]
        for epoch, cells in zip(frame.index, frame.to_numpy().tolist(), strict=True)
    ]
    return table(["epoch", *frame.columns], rows, "r" * (1 + len(frame.columns)))


def weights_gap(first: Path, other: Path, statistics: bool = False) -> float:
    """The largest absolute difference between two runs' saved weights (``statistics``: their
    BatchNorm running statistics instead, which DDP takes from rank 0's share of each batch)."""
    a = load_file(first / "model" / "model.safetensors")
    b = load_file(other / "model" / "model.safetensors")
    keys = [k for k in a if ("running_" in k) == statistics and "num_batches" not in k]
    return max((float((a[k].float() - b[k].float()).abs().max()) for k in keys), default=0.0)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--accelerator", default="cpu")
    parser.add_argument("--devices", type=int, nargs="+", default=[1, 2])
    parser.add_argument("--rows", type=int, default=600, help="demo cohort rows")
    parser.add_argument("--epochs", type=int, default=4)
    parser.add_argument("--batch", type=int, default=32, help="global batch")
    parser.add_argument(
        "--workers", type=int, default=0, help="loader workers per process (GPUs: several)"
    )
    parser.add_argument(
        "--threads", type=int, default=None, help="torch threads per process (default: polymodal's)"
    )
    parser.add_argument("--precision", default="32", help="train.precision, e.g. bf16-mixed")
    parser.add_argument("--out", type=Path, default=REPO_ROOT / "runs" / "bench_ddp")
    args = parser.parse_args()
    load_start = load_average()
    # One folder per size: a small trial run's cohort is never reused at full size.
    cohort = args.out / f"cohort_{args.rows}"
    if not (cohort / "spec.yaml").is_file():
        make_demo_cohort(cohort, n=args.rows, seed=0, image_size=32, volume_size=16)
    train_rows = int((pd.read_csv(cohort / "manifest.csv")["split"] == "train").sum())
    rows, results, runs = [], {}, {}
    for devices in args.devices:
        run = runs[devices] = args.out / f"devices_{devices}"
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
        f"Machine: {machine()}; load average {load_start:.1f} at the start, "
        f"{load_average():.1f} at the end (a shared machine: other processes only add time).",
        f"Demo cohort, {args.rows} rows ({train_rows} training), synergy D = 64, global batch "
        f"{args.batch}, {args.epochs} epochs, {args.workers} loader workers per process, "
        f"precision {args.precision}, torch threads per process "
        f"{args.threads or 'as polymodal chooses'}; "
        "samples/s from the median epoch after the first.",
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
        "",
        "Every epoch (training seconds, validation AUROC on the whole validation split):",
        "",
        *per_epoch(runs),
        "",
        "Largest absolute difference from the first run's model: "
        + "; ".join(
            f"{d} processes: weights {weights_gap(runs[args.devices[0]], runs[d]):.2e}, "
            f"BatchNorm running statistics {weights_gap(runs[args.devices[0]], runs[d], True):.2e}"
            for d in args.devices[1:]
        )
        + ".",
    ]
    stem = f"ddp_scaling_{args.accelerator}"
    stem += "" if args.precision == "32" else f"_{args.precision}"
    print(write_report(REPO_ROOT / "bench" / "results" / f"{stem}.md", lines))


if __name__ == "__main__":
    main()
