"""How busy the GPU is while HAM10000's GPU recipe fine-tunes: issue 12's target "on a lent
GPU, the GPU busy ≥ 80 % of a fine-tuning epoch".

Runs ``polymodal.training.fit.fit`` with configs/ham10000_gpu_image.yaml (image only, the
default) or configs/ham10000_gpu.yaml (``--recipe synergy``) on configs/ham10000.yaml for 2
epochs on the GPU, while ``nvidia-smi`` samples the GPU's utilisation every 100 ms (NVML's
"fraction of the last sample period in which a kernel ran"; ``torch.cuda.utilization()``, which
needs ``pynvml``, where nvidia-smi is absent). It reports the mean utilisation within the
second epoch's training window (the first one fills the sample cache and warms cuDNN), the
window's seconds and training images per second, and the machine.

The window comes from the run's ``RUN/logs/fit.log``: it ends at the ``epoch 2/2 training: T/T``
progress line and starts where epoch 2's summary line (``epoch 2/2: train loss …, S s``) says
the epoch began, S seconds before it was written; so the loader's restart is inside it, and
epoch 1's checkpoint writes and epoch 2's validation are not. Progress lines within an epoch
are written only when stderr is not a terminal, so the fit's stderr goes to
``<out>/fit_stderr.log``. nvidia-smi's own timestamps date the samples (its output through a
pipe may arrive in blocks); fit.log's and nvidia-smi's clocks are both the machine's local
time.

Usage (not yet run on a GPU: a few minutes expected on an H100 for the full training split)::

    python bench/gpu_busy.py                              # image-only recipe, 8 loader workers
    python bench/gpu_busy.py --recipe synergy             # the fused recipe
    python bench/gpu_busy.py --rows 2000 --num-workers 12 # a class-stratified 2000-image subset
    python bench/gpu_busy.py --batch-size 128             # the recipe with another batch size

On a lent device machine, which gets only the checkout and whose Python lacks pydantic and
MONAI: copy ../shared/data/ham10000 (44 MB) into an ignored folder such as ``.ham10000/``,
download wheels of pydantic, pydantic-core, annotated-types, typing-inspection and monai into
``.whl/`` (the device notes say how), carry both and run::

    python3 -m pip install -q --no-index --no-deps --target /tmp/site .whl/*.whl
    PYTHONPATH=/tmp/site:src python3 bench/gpu_busy.py --data .ham10000

Skips (exit 0, one line) without CUDA or without the HAM10000 folder (``--data``, default
../shared/data/ham10000). Prints one line and writes ``<out>/gpu_busy.json`` (default
``runs/bench_gpu_busy_<recipe>``) and the samples as ``<out>/gpu_samples.csv``; the run itself,
``<out>/run``, is replaced each time (a fresh sample cache, filled in epoch 1).
"""

from __future__ import annotations

import argparse
import contextlib
import json
import math
import re
import shutil
import subprocess
import threading
import time
from datetime import datetime
from pathlib import Path

import pandas as pd
import torch
import yaml

from _common import machine

REPO_ROOT = Path(__file__).resolve().parents[1]
SPEC = REPO_ROOT / "configs" / "ham10000.yaml"
RECIPES = {
    "image": REPO_ROOT / "configs" / "ham10000_gpu_image.yaml",
    "synergy": REPO_ROOT / "configs" / "ham10000_gpu.yaml",
}
DATA = REPO_ROOT.parent / "shared" / "data" / "ham10000"
EPOCH = 2  # the measured epoch: epoch 1 fills the caches
TARGET = 80.0  # issue 12: busy at least this % of an epoch
SMI_QUERY = ["--query-gpu=timestamp,utilization.gpu", "--format=csv,noheader,nounits"]
PERIOD_MS = 100

_LOG_LINE = re.compile(r"^(\d{4}-\d\d-\d\d \d\d:\d\d:\d\d,\d{3}) \S+ (\S+): (.*)$")
_TRAINING = re.compile(r"^epoch (\d+)/\d+ training: (\d+)/(\d+) ")
_PROGRESS_LOGGER = "polymodal.progress"
_SUMMARY = re.compile(r"^epoch (\d+)/\d+: train loss .*, (\d+(?:\.\d+)?) s, ETA ")
_SUMMARY_LOGGER = "polymodal.training.timing"

Sample = tuple[float, float]  # (seconds since the epoch, utilisation in %)


def _log_lines(log_text: str) -> list[tuple[float, str, str]]:
    """fit.log's lines as ``(time, logger, message)``; lines of another shape (a traceback's
    continuation) are left out."""
    lines = []
    for raw in log_text.splitlines():
        match = _LOG_LINE.match(raw)
        if match:
            stamp = datetime.strptime(match[1], "%Y-%m-%d %H:%M:%S,%f").timestamp()
            lines.append((stamp, match[2], match[3]))
    return lines


def _training_progress(logger: str, message: str) -> tuple[int, int, int] | None:
    """``(epoch, done, total)`` of an ``epoch E/N training: done/total`` progress line."""
    match = _TRAINING.match(message) if logger == _PROGRESS_LOGGER else None
    return (int(match[1]), int(match[2]), int(match[3])) if match else None


def epoch_window(log_text: str, epoch: int) -> tuple[float, float]:
    """``(start, end)`` in seconds since the epoch of ``epoch``'s training phase in a fit.log
    (the latest run's, as fit appends to the log). The end is its last ``epoch E/N training:
    T/T`` progress line; the start is the time of the ``epoch E/N: train loss …, S s, ETA …``
    summary that follows, less its S seconds (counted from the epoch's start hook: the
    previous epoch's checkpoint writes are before it, the loader's restart after it). Raises
    ValueError when the log holds no finished training phase of ``epoch`` with its summary."""
    lines = _log_lines(log_text)
    ends = [
        i
        for i, (_, logger, message) in enumerate(lines)
        if (p := _training_progress(logger, message)) and p[0] == epoch and p[1] == p[2]
    ]
    if not ends:
        raise ValueError(f"fit.log: no finished 'epoch {epoch}/N training: T/T' progress line")
    for stamp, logger, message in lines[ends[-1] + 1 :]:
        match = _SUMMARY.match(message) if logger == _SUMMARY_LOGGER else None
        if match and int(match[1]) == epoch:
            return stamp - float(match[2]), lines[ends[-1]][0]
    raise ValueError(f"fit.log: no 'epoch {epoch}/N: train loss ..., S s' line after its training")


def busy_in_window(samples: list[Sample], start: float, end: float) -> float:
    """Mean utilisation (%) of the samples taken in ``[start, end]``; the samples are evenly
    spaced, so this is the time-weighted mean. Raises ValueError when none fall inside."""
    inside = [busy for stamp, busy in samples if start <= stamp <= end]
    if not inside:
        raise ValueError(f"no utilisation sample between {start:.3f} and {end:.3f}")
    return sum(inside) / len(inside)


def parse_smi_line(line: str) -> Sample | None:
    """``"2026/12/07 15:18:29.052, 45"`` (nvidia-smi's local timestamp and utilisation) ->
    ``(seconds since the epoch, 45.0)``; None for a line without a number (``[N/A]``)."""
    stamp, _, busy = line.partition(",")
    try:
        when = datetime.strptime(stamp.strip(), "%Y/%m/%d %H:%M:%S.%f").timestamp()
        return when, float(busy)
    except ValueError:
        return None


class UtilisationSampler:
    """The GPU's utilisation every 100 ms in a background thread, from ``nvidia-smi -lms``
    where it exists, else from ``torch.cuda.utilization()``; ``samples`` holds them."""

    def __init__(self, gpu: int = 0) -> None:
        self.gpu = gpu
        self.samples: list[Sample] = []
        self.source = "nvidia-smi" if shutil.which("nvidia-smi") else "torch.cuda.utilization"
        self._stop = threading.Event()
        self._process: subprocess.Popen | None = None
        self._thread = threading.Thread(target=self._run, daemon=True)

    def __enter__(self) -> UtilisationSampler:
        if self.source == "nvidia-smi":
            # Line-buffered where stdbuf exists: a block-buffered pipe loses its last block on
            # termination.
            prefix = ["stdbuf", "-oL"] if shutil.which("stdbuf") else []
            command = [
                *prefix,
                "nvidia-smi",
                *SMI_QUERY,
                "-lms",
                str(PERIOD_MS),
                "-i",
                str(self.gpu),
            ]
            self._process = subprocess.Popen(command, stdout=subprocess.PIPE, text=True)
        else:
            torch.cuda.utilization(self.gpu)  # fails here, not in the thread, without pynvml
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        if self._process is not None:
            self._process.terminate()
            try:
                self._process.wait(timeout=10)
            except subprocess.TimeoutExpired:
                self._process.kill()
        self._thread.join(timeout=10)

    def _run(self) -> None:
        if self._process is not None:
            for line in self._process.stdout:
                if (sample := parse_smi_line(line)) is not None:
                    self.samples.append(sample)
            return
        while not self._stop.wait(PERIOD_MS / 1000):
            self.samples.append((time.time(), float(torch.cuda.utilization(self.gpu))))


def stratified_rows(rows: pd.DataFrame, n: int) -> pd.DataFrame:
    """About ``n`` training rows with the classes' shares kept (at least one per class), and
    the same fraction of every other split; the first rows of each class, as
    bench/ham10000_finetune.py's quick mode takes them."""
    fraction = n / int((rows["split"] == "train").sum())
    parts = [
        group.head(max(1, round(len(group) * fraction)))
        for _, group in rows.groupby(["split", "dx"], sort=False)
    ]
    return pd.concat(parts)


def cohort_spec(out: Path, rows: int | None, data: Path) -> object:
    """configs/ham10000.yaml on the HAM10000 folder ``data``; with ``rows``, on a
    class-stratified subset written beside the run."""
    from polymodal.data.spec import parse_spec

    spec = yaml.safe_load(SPEC.read_text())
    manifest = data / "metadata.csv"
    if rows is not None:
        out.mkdir(parents=True, exist_ok=True)
        manifest = out / f"metadata_{rows}.csv"
        stratified_rows(pd.read_csv(data / "metadata.csv"), rows).to_csv(manifest, index=False)
    spec["manifest"] = str(manifest)
    spec["root"] = str(data)  # images resolve in the data folder, wherever the subset lives
    return parse_spec(spec, base_dir=SPEC.parent, source=str(SPEC))


def recipe_overrides(args: argparse.Namespace) -> list[str]:
    """Two epochs on the GPU, with the loader's workers and the batch size where asked."""
    overrides = [f"train.max_epochs={EPOCH}", "train.accelerator=gpu"]
    if args.num_workers is not None:
        overrides.append(f"train.num_workers={args.num_workers}")
    if args.batch_size is not None:
        overrides.append(f"train.batch_size={args.batch_size}")
    return overrides


def skip_reason(data: Path) -> str | None:
    """Why this machine cannot run the benchmark on the HAM10000 folder ``data``, or None."""
    if not torch.cuda.is_available():
        return "skipped: no CUDA device (this benchmark measures a GPU)"
    if not (data / "metadata.csv").is_file():
        return f"skipped: HAM10000 not found at {data} (no metadata.csv)"
    if not shutil.which("nvidia-smi"):
        try:
            torch.cuda.utilization(0)
        except Exception as err:  # pynvml missing or NVML unusable: nothing can sample
            return f"skipped: no nvidia-smi and torch.cuda.utilization() fails ({err})"
    return None


def measure(args: argparse.Namespace) -> dict:
    """Fit 2 epochs while sampling; the second epoch's busy %, seconds and images/s."""
    from polymodal.data.manifest import load_cohort
    from polymodal.training.fit import fit
    from polymodal.training.run_config import load_run_config

    run_dir = args.out / "run"
    if run_dir.exists():  # a fresh run: its sample cache (RUN/cache) and log hold only this one
        shutil.rmtree(run_dir)
    spec = cohort_spec(args.out, args.rows, args.data)
    cohort = load_cohort(spec)
    run = load_run_config(RECIPES[args.recipe], recipe_overrides(args))
    print(f"fitting {EPOCH} epochs ({run_dir / 'logs' / 'fit.log'}) ...", flush=True)
    # Not a terminal: fit writes progress lines within epochs to fit.log, which the window needs.
    with (
        (args.out / "fit_stderr.log").open("w") as err,
        contextlib.redirect_stderr(err),
        UtilisationSampler() as sampler,
    ):
        fit(spec, run_dir, run, cohort=cohort, progress=False)
    start, end = epoch_window((run_dir / "logs" / "fit.log").read_text(), EPOCH)
    busy = busy_in_window(sampler.samples, start, end)
    inside = sum(start <= t <= end for t, _ in sampler.samples)
    pd.DataFrame(sampler.samples, columns=["time", "busy_percent"]).to_csv(
        args.out / "gpu_samples.csv", index=False
    )
    images = len(cohort.indices("train"))
    return {
        "recipe": RECIPES[args.recipe].name,
        "epoch": EPOCH,
        "busy_percent": busy,
        "target_percent": TARGET,
        "meets_target": busy >= TARGET,
        "epoch_seconds": end - start,
        "train_images": images,
        "images_per_second": images / (end - start),
        "samples_in_window": inside,
        "sample_coverage": inside * PERIOD_MS / 1000 / (end - start),
        "sampler": sampler.source,
        "batch_size": run.train.batch_size,
        "num_workers": run.train.num_workers,
        "rows": args.rows,
        "gpu": torch.cuda.get_device_name(0),
        "machine": machine(),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--recipe", choices=sorted(RECIPES), default="image")
    parser.add_argument("--rows", type=int, default=None, help="class-stratified training rows")
    parser.add_argument("--num-workers", type=int, default=None, help="default: the recipe's")
    parser.add_argument("--batch-size", type=int, default=None, help="default: the recipe's")
    parser.add_argument("--data", type=Path, default=DATA, help="the HAM10000 folder")
    parser.add_argument("--out", type=Path, default=None, help="default: runs/bench_gpu_busy_*")
    args = parser.parse_args()
    if args.rows is not None and args.rows < 1:
        parser.error("--rows must be at least 1")
    args.data = args.data.resolve()
    reason = skip_reason(args.data)
    if reason is not None:
        print(reason)
        return
    args.out = (args.out or REPO_ROOT / "runs" / f"bench_gpu_busy_{args.recipe}").resolve()
    args.out.mkdir(parents=True, exist_ok=True)
    summary = measure(args)
    (args.out / "gpu_busy.json").write_text(json.dumps(summary, indent=2))
    verdict = "meets" if summary["meets_target"] else "misses"
    print(
        f"{summary['recipe']}, epoch {EPOCH} of {EPOCH}: GPU busy {summary['busy_percent']:.1f} % "
        f"({verdict} the {TARGET:.0f} % target) over {summary['epoch_seconds']:.1f} s, "
        f"{summary['images_per_second']:.0f} images/s ({summary['train_images']} images, batch "
        f"{summary['batch_size']}, {summary['num_workers']} workers, "
        f"{summary['samples_in_window']} samples, coverage {summary['sample_coverage']:.0%}); "
        f"{summary['machine']}"
    )
    if not math.isclose(summary["sample_coverage"], 1.0, abs_tol=0.3):
        print("warning: the samples do not cover the window evenly; see gpu_samples.csv")


if __name__ == "__main__":
    main()
