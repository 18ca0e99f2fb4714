"""Overhead of prediction: rows/s of ``Predictor.predict_cohort`` and of ``polymodal predict``
(end to end, in a subprocess) against the bare model forward on the same collated batches.

A tiny model (the test suite's ``TINY_MODEL`` settings, 1 epoch) is fitted on a demo cohort
(``--rows`` rows, 32 px images, 16³ volumes). Then, in one process, on the same rows:

* ``bare forward``: ``model(batch)`` and the heads' probabilities
  (``predictions_from_logits``), eval mode, no gradients, on batches collated beforehand (the
  predictor's dataset and ``collate_samples``, same batch size): the model's own work;
* ``predict_cohort``: reading and decoding the files, preprocessing, collating, the forward,
  collecting and the output table; without a cache, with an empty ``cache_dir`` (first run,
  writes it) and with the filled one (second run, reads it);
* ``polymodal predict``: the CLI in a fresh interpreter (import, model load, CSV written), with
  and without ``--cache-dir`` (the cache filled by a first run).

Overhead = bare rows/s ÷ rows/s of the path. ``--profile`` adds the functions where one
uncached ``predict_cohort`` spends its time (cProfile, cumulative).

Usage::

    python bench/predict_overhead.py [--rows 300] [--repeats 3] [--profile]
        [--out bench/results/predict_overhead.md]
"""

from __future__ import annotations

import argparse
import cProfile
import io
import pstats
import statistics
import subprocess
import sys
import tempfile
import time
import warnings
from collections.abc import Callable
from pathlib import Path

import torch
from torch.utils.data import DataLoader

from _common import load_average, machine, table, write_report
from polymodal.data.collate import collate_samples
from polymodal.data.dataset import CohortDataset
from polymodal.data.manifest import load_cohort
from polymodal.data.spec import load_spec
from polymodal.datasets.demo import make_demo_cohort
from polymodal.predictor import Predictor
from polymodal.runtime import setup_process
from polymodal.training.fit import fit
from polymodal.training.run_config import load_run_config

# tests/training/conftest.py TINY_MODEL, one epoch.
TINY_MODEL = [
    "model.core=synergy",
    "model.dim=16",
    "model.core_options={num_latents: 4, depth: 1}",
    "model.encoders.lesion={name: image_timm, options: {backbone: test_resnet}}",
    "model.encoders.ct={options: {patch_size: 8, depth: 0}}",
    "model.encoders.note={options: {depth: 1}}",
    "model.modality_dropout=0.25",
    "train.batch_size=16",
    "train.early_stopping_patience=null",
    "train.max_epochs=1",
]
BATCH = 64  # the predictor's and the CLI's default


def tiny_model(folder: Path, rows: int) -> tuple[Path, Path]:
    """(model folder, spec path) of a 1-epoch tiny model on a ``rows``-row demo cohort."""
    spec = make_demo_cohort(folder / "cohort", n=rows, seed=0, image_size=32, volume_size=16)
    fit(load_spec(spec), folder / "run", load_run_config(None, TINY_MODEL), progress=False)
    return folder / "run" / "model", spec


def seconds(fn: Callable[[], object], repeats: int) -> list[float]:
    """Wall seconds of ``repeats`` calls of ``fn``."""
    out = []
    for _ in range(repeats):
        start = time.perf_counter()
        fn()
        out.append(time.perf_counter() - start)
    return out


def collated(predictor: Predictor, cohort) -> list[dict]:
    """The batches the predictor's loop sees, collated once (the same dataset and collation)."""
    dataset = CohortDataset(
        cohort, predictor.loaded.preprocessor, None, modalities=predictor.modalities
    )
    loader = DataLoader(dataset, batch_size=BATCH, shuffle=False, collate_fn=collate_samples)
    return list(loader)


@torch.no_grad()
def bare_forward(model, batches: list[dict]) -> None:
    for batch in batches:
        model.predictions_from_logits(model(batch)["logits"])


def cli(model: Path, manifest: Path, out: Path, cache: Path | None) -> float:
    """Wall seconds of ``polymodal predict`` in a fresh interpreter."""
    command = [sys.executable, "-m", "polymodal", "predict", str(model), str(manifest)]
    command += ["--out", str(out), "--device", "cpu", "--batch-size", str(BATCH)]
    command += [] if cache is None else ["--cache-dir", str(cache)]
    start = time.perf_counter()
    subprocess.run(command, check=True, capture_output=True)
    return time.perf_counter() - start


def startup_seconds(model: Path) -> float:
    """Wall seconds of a fresh interpreter importing the predictor and loading the model: what
    every ``polymodal predict`` pays before its first row, whatever the row count."""
    code = f"from polymodal.predictor import Predictor; Predictor.load({str(model)!r})"
    start = time.perf_counter()
    subprocess.run([sys.executable, "-c", code], check=True, capture_output=True)
    return time.perf_counter() - start


def profile(predictor: Predictor, cohort, top: int = 16) -> list[str]:
    """polymodal's ``top`` functions by cumulative time in one ``predict_cohort`` call."""
    profiler = cProfile.Profile()
    profiler.runcall(predictor.predict_cohort, cohort)
    text = io.StringIO()
    stats = pstats.Stats(profiler, stream=text).sort_stats("cumulative")
    stats.print_stats("src/polymodal/", top)
    lines = text.getvalue().strip().splitlines()
    header = next(i for i, line in enumerate(lines) if line.lstrip().startswith("ncalls"))
    return ["```", *(line.replace(str(Path.cwd()) + "/", "") for line in lines[header:]), "```"]


def row(
    name: str, times: list[float], rows: int, bare: list[float], minima: bool = True
) -> list[str]:
    """A table row: median and min seconds, rows/s at the median, and the time over the bare
    forward's, median to median and min to min (the min is the run least slowed by others;
    ``minima=False`` for times less a median, where a minimum means nothing)."""
    median = statistics.median(times)
    return [
        name,
        f"{median:.2f}",
        f"{min(times):.2f}" if minima else "—",
        str(len(times)),
        f"{rows / median:,.0f}",
        f"{median / statistics.median(bare):.1f}×",
        f"{min(times) / min(bare):.1f}×" if minima else "—",
    ]


def measure(args, work: Path) -> tuple[list[list[str]], dict]:
    """Every path's timings on the same rows; returns table rows and extra facts."""
    model_dir, spec_path = tiny_model(work, args.rows)
    manifest = spec_path.parent / "manifest.csv"
    predictor = Predictor.load(model_dir, batch_size=BATCH)
    cohort = load_cohort(predictor.loaded.spec, manifest_override=manifest, for_inference=True)
    n = len(cohort)
    model = predictor.loaded.model.eval()
    batches = collated(predictor, cohort)
    bare_forward(model, batches)  # warm-up
    bare = seconds(lambda: bare_forward(model, batches), 3 * args.repeats)
    predictor.predict_cohort(cohort)  # warm-up (page cache, lazy imports)
    plain = seconds(lambda: predictor.predict_cohort(cohort), 2 * args.repeats)
    cached = Predictor.load(model_dir, batch_size=BATCH, cache_dir=work / "cache")
    first = seconds(lambda: cached.predict_cohort(cohort), 1)
    second = seconds(lambda: cached.predict_cohort(cohort), 2 * args.repeats)
    cli_plain = [cli(model_dir, manifest, work / "p.csv", None) for _ in range(args.repeats)]
    cli(model_dir, manifest, work / "c.csv", work / "cli_cache")  # fills the cache
    cli_cached = [
        cli(model_dir, manifest, work / "c.csv", work / "cli_cache") for _ in range(args.repeats)
    ]
    rows = [
        row("bare forward (collated batches)", bare, n, bare),
        row("predict_cohort, no cache", plain, n, bare),
        row("predict_cohort, cache_dir, first run (writes)", first, n, bare),
        row("predict_cohort, cache_dir, second run (reads)", second, n, bare),
        row("`polymodal predict` (subprocess), no cache", cli_plain, n, bare),
        row("`polymodal predict` (subprocess), --cache-dir filled", cli_cached, n, bare),
    ]
    startup = statistics.median(startup_seconds(model_dir) for _ in range(args.repeats))
    rows += [
        row(
            f"`polymodal predict`, no cache, less start-up ({startup:.1f} s)",
            [t - startup for t in cli_plain],
            n,
            bare,
            minima=False,
        ),
        row(
            f"`polymodal predict`, --cache-dir filled, less start-up ({startup:.1f} s)",
            [t - startup for t in cli_cached],
            n,
            bare,
            minima=False,
        ),
    ]
    facts = {"rows": n, "batches": len(batches), "startup": startup}
    if args.profile:
        facts["profile"] = profile(predictor, cohort)
        facts["profile_cached"] = profile(cached, cohort)
    return rows, facts


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rows", type=int, default=300)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--profile", action="store_true")
    parser.add_argument("--out", type=Path, default=Path("bench/results/predict_overhead.md"))
    args = parser.parse_args()
    threads = setup_process()
    # The demo rows hold a category the tiny model never learned: warned once per call.
    warnings.simplefilter("ignore", UserWarning)
    load_start = load_average()
    with tempfile.TemporaryDirectory() as tmp:
        rows, facts = measure(args, Path(tmp))
    header = [
        "path",
        "median (s)",
        "min (s)",
        "runs",
        "rows/s (median)",
        "÷ bare, medians",
        "÷ bare, minima",
    ]
    lines = [
        "# Prediction overhead: `predict_cohort` and `polymodal predict` against the bare forward",
        "",
        f"Machine: {machine(threads)}; load average {load_start:.1f} at the start, "
        f"{load_average():.1f} at the end (shared machine: other jobs only add time).",
        f"Setup: demo cohort, {facts['rows']} rows (32 px images, 16³ volumes, notes, series, "
        f"tabular), tiny `synergy` model (tests' TINY_MODEL, 1 epoch), CPU, batch {BATCH} "
        f"({facts['batches']} batches). Start-up: a fresh interpreter importing `polymodal.predictor` "
        f"and loading the model took {facts['startup']:.1f} s (median), paid once per command. "
        "Command: `python bench/predict_overhead.py --profile`.",
        "",
        *table(header, rows, "lrrrrrr"),
    ]
    if "profile" in facts:
        lines += ["", "One `predict_cohort` without a cache, cProfile (cumulative):", ""]
        lines += [*facts["profile"], "", "One with the filled `cache_dir`:", ""]
        lines += facts["profile_cached"]
    print(write_report(args.out, lines))


if __name__ == "__main__":
    main()
