"""Speed of the evaluation statistics on 10,000 rows: grouped bootstrap CIs, DeLong, the paired
bootstrap, and the metric + CI part of ``polymodal evaluate`` for 31 modality subsets.

Synthetic predictions (no model): 10,000 rows of about 3,000 patients (1–6 rows each), a
binary target and a 7-class one (HAM10000's shape), probabilities informative but imperfect.
Each subset of the 31 gets its own noisy predictions, as a model's would differ by subset.

Timed, each once, in one process:

* ``bootstrap_metrics`` with 1,000 patient-grouped resamples (every metric of the kind), and
  the per-resample loop it replaced (``bootstrap_ci`` calling ``compute_metrics`` on every
  resample's rows; the seed draws the same resamples, so both give the same intervals);
* DeLong's test of two models (binary; one-vs-rest per class for the 7 classes);
* the paired bootstrap of ``polymodal compare`` (1,000 resamples, every metric, with DeLong
  and McNemar) for one target of one subset;
* evaluate's scoring loop over 31 subsets (``bootstrap_metrics`` then ``EvaluationResult.add``
  per subset, as ``evaluate_model`` does once the predictions are collected).

Usage::

    python bench/evaluation_speed.py [--rows 10000] [--patients 3000] [--n-boot 1000]
        [--subsets 31] [--no-loop] [--out bench/results/evaluation_speed.md]
"""

from __future__ import annotations

import argparse
import time
from collections.abc import Callable
from functools import partial
from pathlib import Path

import numpy as np

from _common import load_average, machine, table, write_report
from polymodal.evaluation.bootstrap import bootstrap_ci, bootstrap_metrics
from polymodal.evaluation.compare import _compare_target
from polymodal.evaluation.kept_predictions import LabelledRows
from polymodal.evaluation.metrics import compute_metrics
from polymodal.evaluation.paired_tests import delong
from polymodal.evaluation.tables import EvaluationResult, modality_subsets
from polymodal.targets import MetricOptions, get

CLASSES = ["akiec", "bcc", "bkl", "df", "mel", "nv", "vasc"]
MODALITIES = ["image", "tabular", "note", "ct", "series"]  # 2^5 − 1 = 31 subsets


def cohort(rows: int, patients: int, seed: int = 0) -> dict[str, np.ndarray]:
    """Patient ids ``(n,)``, a binary label ``(n,)`` and a 7-class label ``(n,)``."""
    rng = np.random.default_rng(seed)
    groups = np.sort(rng.integers(0, patients, rows))
    return {
        "groups": np.array([f"patient-{g}" for g in groups], dtype=object),
        "binary": (rng.random(rows) < 0.3).astype(np.int64),
        "multiclass": rng.choice(7, rows, p=[0.03, 0.05, 0.11, 0.01, 0.11, 0.67, 0.02]),
    }


def predictions(kind: str, y: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """Informative probabilities: ``(n,)`` P(positive) or ``(n, 7)`` softmax."""
    if kind == "binary":
        return 1.0 / (1.0 + np.exp(-(1.5 * y - 0.8 + rng.normal(size=len(y)))))
    logits = rng.normal(size=(len(y), 7))
    logits[np.arange(len(y)), y] += 1.5
    e = np.exp(logits)
    return e / e.sum(axis=1, keepdims=True)


def timed(fn: Callable[..., object], *args, **kwargs) -> tuple[float, object]:
    """Seconds of one call of ``fn(*args, **kwargs)``, and its result."""
    start = time.perf_counter()
    out = fn(*args, **kwargs)
    return time.perf_counter() - start, out


def options(kind: str) -> dict:
    return {"classes": CLASSES} if kind == "multiclass" else {}


def bootstrap_rows(data, n_boot: int, loop: bool) -> tuple[list[list[str]], dict]:
    """Vectorised bootstrap against the old per-resample loop, per kind."""
    rows, seconds = [], {}
    rng = np.random.default_rng(1)
    for kind in ("binary", "multiclass"):
        y, groups = data[kind], data["groups"]
        p = predictions(kind, y, rng)
        fast_s, fast = timed(bootstrap_metrics, kind, y, p, groups, n_boot=n_boot, **options(kind))
        seconds[kind] = fast_s
        loop_cell, ratio, same = "not run", "", ""
        if loop:
            metric = partial(compute_metrics, kind, **options(kind))
            loop_s, old = timed(bootstrap_ci, metric, (y, p), groups, n_boot=n_boot)
            worst = max(
                float(np.max(np.abs(np.array(fast[m][:3]) - np.array(old[m][:3])))) for m in old
            )
            loop_cell, ratio, same = f"{loop_s:.2f}", f"{loop_s / fast_s:.1f}×", f"{worst:.1e}"
        rows.append([kind, len(fast), f"{fast_s:.2f}", loop_cell, ratio, same])
    return rows, seconds


def paired_rows(data, n_boot: int) -> list[list[str]]:
    """DeLong alone and the whole paired comparison of one target, per kind."""
    rows = []
    rng = np.random.default_rng(2)
    for kind in ("binary", "multiclass"):
        y, groups = data[kind], data["groups"]
        a, b = predictions(kind, y, rng), predictions(kind, y, rng)
        delong_s, _ = timed(delong_all, kind, y, a, b)
        ids = np.arange(len(y)).astype(str)
        labelled = LabelledRows(ids, groups.astype(str), y, a)
        settings = MetricOptions(classes=CLASSES if kind == "multiclass" else None)
        paired_s, (compared, _) = timed(
            _compare_target,
            get(kind),
            labelled,
            b,
            settings,
            metrics=None,
            n_boot=n_boot,
            seed=0,
            level=0.95,
        )
        tests = "DeLong (one-vs-rest ×7)" if kind == "multiclass" else "DeLong"
        rows.append([kind, f"{delong_s * 1000:.1f}", tests, f"{paired_s:.2f}", len(compared)])
    return rows


def delong_all(kind: str, y: np.ndarray, a: np.ndarray, b: np.ndarray) -> list:
    """DeLong's test of A against B: binary, or one-vs-rest for every class."""
    if kind == "binary":
        return [delong(y == 1, a, b)]
    return [delong(y == k, a[:, k], b[:, k]) for k in range(a.shape[1])]


def score_subsets(kind, y, groups, per_subset, n_boot: int) -> EvaluationResult:
    """What ``evaluate_model`` does with collected predictions: CIs per subset, recorded."""
    result = EvaluationResult(settings={"n_boot": n_boot})
    for subset, p in per_subset.items():
        ci = bootstrap_metrics(kind, y, p, groups, n_boot=n_boot, **options(kind))
        result.add("target", kind, subset, ci, classes=options(kind).get("classes"))
    return result


def evaluate_rows(data, n_boot: int, n_subsets: int) -> list[list[str]]:
    """evaluate's metric + CI loop: every subset scored with ``bootstrap_metrics``."""
    rows = []
    plan = modality_subsets(MODALITIES)[:n_subsets]
    for kind in ("binary", "multiclass"):
        y, groups = data[kind], data["groups"]
        rng = np.random.default_rng(3)
        per_subset = {subset: predictions(kind, y, rng) for subset in plan}
        seconds, _ = timed(score_subsets, kind, y, groups, per_subset, n_boot)
        verdict = "yes" if seconds < 60 else "no"
        rows.append([kind, len(plan), f"{seconds:.1f}", f"{seconds / len(plan):.2f}", verdict])
    return rows


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rows", type=int, default=10_000)
    parser.add_argument("--patients", type=int, default=3_000)
    parser.add_argument("--n-boot", type=int, default=1000)
    parser.add_argument("--subsets", type=int, default=31)
    parser.add_argument("--no-loop", action="store_true", help="skip the old per-resample loop")
    parser.add_argument("--out", type=Path, default=Path("bench/results/evaluation_speed.md"))
    args = parser.parse_args()
    data = cohort(args.rows, args.patients)
    n_groups = len(set(data["groups"]))
    load_start = load_average()
    boot, _ = bootstrap_rows(data, args.n_boot, loop=not args.no_loop)
    print(
        *table(
            ["kind", "metrics", "vectorised (s)", "loop (s)", "ratio", "max abs. difference"], boot
        ),
        sep="\n",
    )
    paired = paired_rows(data, args.n_boot)
    scored = evaluate_rows(data, args.n_boot, args.subsets)
    lines = [
        f"# Evaluation statistics: speed on {args.rows:,} rows",
        "",
        f"Machine: {machine()}; load average {load_start:.1f} at the start, "
        f"{load_average():.1f} at the end (shared machine: other jobs only add time).",
        f"Data: {args.rows:,} rows, {n_groups:,} patients, {args.n_boot:,} patient-grouped "
        "resamples; binary (30 % positive) and 7 classes (HAM10000 prevalences); synthetic "
        "probabilities. Command: `python bench/evaluation_speed.py`.",
        "",
        "## Bootstrap CIs of every metric (one subset)",
        "",
        *table(
            [
                "kind",
                "metrics",
                "vectorised (s)",
                "per-resample loop (s)",
                "loop ÷ vectorised",
                "max abs. difference of point/low/high",
            ],
            boot,
            "lrrrrr",
        ),
        "",
        "## Paired tests of two models (one subset)",
        "",
        *table(
            [
                "kind",
                "DeLong (ms)",
                "test",
                "paired bootstrap + DeLong + McNemar (s)",
                "metrics compared",
            ],
            paired,
            "lrlrr",
        ),
        "",
        f"## evaluate's metric + CI part, {args.subsets} modality subsets",
        "",
        *table(
            ["kind", "subsets", "total (s)", "per subset (s)", "under a minute"], scored, "lrrrl"
        ),
    ]
    print(write_report(args.out, lines))


if __name__ == "__main__":
    main()
