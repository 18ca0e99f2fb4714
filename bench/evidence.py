"""The evidence a reviewer asks for, on one cohort: paired model comparisons, recalibration,
conformal coverage and cross-validation, each through the library as a user calls it.

Three models are fitted on the cohort's ``train`` split, each selecting its epoch on ``val``:

* ``synergy`` (``configs/ablations/synergy.yaml``), with ``calibration: {method: temperature}``
  and ``conformal: {coverage: 0.9}``, both fitted on ``val`` after training;
* ``PB+KD+GM``: pooled bottleneck (``configs/ablations/pb_kd_gm.yaml``) distilled from the
  synergy model folder (logits only: another core than the teacher's) with gradient modulation;
* ``concat``.

Then the ``test`` split is scored once:

1. ``evaluate_model`` of each model's own (uncalibrated) probabilities with all modalities,
   keeping the predictions; ``compare_predictions`` of every pair on every table metric
   (paired patient bootstrap, DeLong for AUROC, McNemar for accuracy, Holm over all rows);
2. synergy's reliability before and after its temperature (ECE with bootstrap CIs; a PNG);
3. synergy's split-conformal sets: empirical coverage with its CI and the mean set size;
4. ``cross_validate`` (``polymodal cv``) of the synergy recipe, 5 grouped folds over the
   non-test rows: each fold's headline metric, their mean with a t-interval and their spread.

Cohorts: ``demo`` (``make_demo_cohort``, the small CPU encoders of bench/tune_demo.py) or
``ham10000`` (../shared/data/ham10000, frozen EfficientNet-Lite0 tokens as in
bench/ham10000.py; its shared copy has only train/val, so a lesion-grouped 1/7 of ``train``
becomes ``test``). Writes ``bench/results/evidence_<cohort>.{md,json}`` and
``evidence_<cohort>_reliability.png``.

Usage::

    python bench/evidence.py [--cohort demo] [--n 2000] [--epochs 10] [--folds 5]
    python bench/evidence.py --quick        # smoke: --n 300 --epochs 1, fewer resamples
    python bench/evidence.py --cohort ham10000 --epochs 15
"""

from __future__ import annotations

import argparse
import json
import math
import time
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import torch
import yaml
from sklearn.model_selection import StratifiedGroupKFold

from _common import cell, load_average, machine, table, write_report
from polymodal import targets
from polymodal.data.manifest import load_cohort
from polymodal.data.spec import CohortSpec, load_spec
from polymodal.datasets.demo import make_demo_cohort
from polymodal.evaluation.compare import Comparison, compare_predictions
from polymodal.evaluation.evaluate import evaluate_model
from polymodal.evaluation.figures.calibration_plot import reliability, reliability_figure
from polymodal.evaluation.kept_predictions import read_predictions
from polymodal.evaluation.paired_tests import holm
from polymodal.evaluation.report_figures import png_bytes
from polymodal.predictor import Predictor
from polymodal.training.cross_validation import cross_validate
from polymodal.training.fit import fit
from polymodal.training.run_config import RunConfig, load_run_config

REPO_ROOT = Path(__file__).resolve().parents[1]
RESULTS = REPO_ROOT / "bench" / "results"
ABLATIONS = REPO_ROOT / "configs" / "ablations"
HAM_SPEC = REPO_ROOT / "configs" / "ham10000.yaml"
# The end-to-end encoders small enough for a CPU (bench/tune_demo.py, bench/robustness.py).
DEMO_ENCODERS = [
    "model.encoders.lesion={name: image_timm, options: {backbone: resnet10t}}",
    "model.encoders.ct={name: volume_monai, options: {network_options: "
    "{init_features: 8, growth_rate: 8, block_config: [2, 2]}}}",
    "model.encoders.note={options: {depth: 1}}",
]
# Frozen packaged EfficientNet-Lite0 with a trainable token projection (bench/ham10000.py); the
# feature cache runs the backbone once per image for every fit of this process.
HAM_ENCODERS = [
    "model.encoders.skin={name: image_timm, options: {backbone: efficientnet_lite0, "
    "pretrained: 'package:efficientnet-lite0', freeze: all, feature_cache: true}}",
    "train.lr=1e-3",
    "train.monitor=val/dx/auroc_macro",
]
SYNERGY, STUDENT, CONCAT = "synergy", "PB+KD+GM", "concat"
COVERAGE = 0.9
CV_PENDING = "Not run yet (the report is rewritten when it ends)."


def main() -> None:
    args = parse_args()
    torch.set_num_threads(args.threads)
    start = time.perf_counter()
    args.out.mkdir(parents=True, exist_ok=True)
    spec, encoders = prepare_cohort(args)
    cohort = load_cohort(spec)
    common = [
        *encoders,
        f"train.max_epochs={args.epochs}",
        f"train.batch_size={args.batch_size}",
        f"train.seed={args.seed}",
        f"train.cache_dir={(args.out / 'cache').resolve()}",
    ]
    models = fit_models(spec, args, common)
    evaluations = score_on_test(models, cohort, args)
    comparison = compare_models(evaluations, args)
    calibration = calibration_section(models[SYNERGY], evaluations, args)
    conformal = conformal_section(models[SYNERGY], evaluations)
    sections = (models, evaluations, comparison, calibration, conformal)
    # Written before the cross-validation too, so that its folds' hours never cost the rest.
    report(args, cohort_facts(spec, cohort, args, time.perf_counter() - start), *sections, None)
    if not args.folds:
        return
    cv = cv_section(spec, synergy_run(common, calibrated=False), args)
    report(args, cohort_facts(spec, cohort, args, time.perf_counter() - start), *sections, cv)


# ---- the cohort ---------------------------------------------------------------------------------


def prepare_cohort(args: argparse.Namespace) -> tuple[CohortSpec, list[str]]:
    """The cohort's spec (written on first use) and the encoder overrides its fits share."""
    if args.cohort == "demo":
        spec_path = args.out / "cohort" / "spec.yaml"
        if not spec_path.is_file():
            make_demo_cohort(
                spec_path.parent, n=args.n, seed=args.seed, image_size=32, volume_size=16
            )
        spec = load_spec(spec_path)
        if len(load_cohort(spec)) != args.n:
            raise SystemExit(f"{spec_path.parent} holds another --n; remove it or change --out")
        return spec, DEMO_ENCODERS
    return load_spec(ham_with_test(args.out / "cohort", args.seed)), HAM_ENCODERS


def ham_with_test(folder: Path, seed: int) -> Path:
    """HAM10000's spec over a copy of its manifest whose ``train`` rows give a lesion-grouped,
    dx-stratified 1/7 to a new ``test`` split (``val`` unchanged); returns the new spec's path."""
    spec_path = folder / "spec.yaml"
    if spec_path.is_file():
        return spec_path
    spec = load_spec(HAM_SPEC)
    source = load_cohort(spec)
    frame = pd.read_csv(source.manifest_path, dtype=str, keep_default_na=False)
    train = np.flatnonzero(frame["split"].to_numpy() == "train")
    # One of 7 lesion-grouped folds stratified by dx: about 14 % of train, every class in it.
    cut = StratifiedGroupKFold(n_splits=7, shuffle=True, random_state=seed)
    labels, lesions = frame["dx"].to_numpy()[train], frame["lesion_id"].to_numpy()[train]
    _, held = next(cut.split(train, labels, groups=lesions))
    frame.loc[train[held], "split"] = "test"
    folder.mkdir(parents=True, exist_ok=True)
    frame.to_csv(folder / "metadata.csv", index=False)
    raw = yaml.safe_load(HAM_SPEC.read_text())
    raw.update(
        name="ham10000-with-test",
        manifest="metadata.csv",
        root=str(source.manifest_path.parent.resolve()),
    )
    spec_path.write_text(yaml.safe_dump(raw, sort_keys=False))
    return spec_path


def cohort_facts(spec: CohortSpec, cohort, args: argparse.Namespace, seconds: float) -> dict:
    """Rows and patients per split, the first target, how long the whole benchmark took."""
    splits = {
        s: {
            "rows": int((cohort.split == s).sum()),
            "patients": int(cohort.groups[cohort.split == s].nunique()),
        }
        for s in ("train", "val", "test")
    }
    target, entry = next(iter(spec.targets.items()))
    return {
        "cohort": spec.name,
        "target": target,
        "kind": entry.kind,
        "splits": splits,
        "minutes": seconds / 60,
        "load_average": load_average(),
    }


# ---- the three models -------------------------------------------------------------------------


def synergy_run(common: list[str], *, calibrated: bool) -> RunConfig:
    """The synergy recipe; with ``calibrated`` its temperature and conformal sections."""
    extra = ["calibration.method=temperature", f"conformal.coverage={COVERAGE}"]
    return load_run_config(ABLATIONS / "synergy.yaml", [*common, *(extra if calibrated else [])])


def fit_models(spec: CohortSpec, args: argparse.Namespace, common: list[str]) -> dict[str, Any]:
    """Fit (or, with ``--reuse``, find) synergy, then its distilled student, then concat."""
    plans = {
        SYNERGY: lambda: synergy_run(common, calibrated=True),
        STUDENT: lambda: load_run_config(
            ABLATIONS / "pb_kd_gm.yaml",
            [
                *common,
                f"distill.teacher={args.out / SYNERGY / 'model'}",
                "distill.lambda_feature=0.0",  # another core than the teacher's: logits only
            ],
        ),
        CONCAT: lambda: load_run_config(
            None,
            [
                *common,
                "model.core=concat",
                "model.dim=64",
                "model.modality_dropout=0.3",
                *([] if args.cohort == "ham10000" else ["train.lr=2e-3"]),
            ],
        ),
    }
    models = {}
    for name, plan in plans.items():
        if name not in args.models:
            continue
        run_dir = args.out / name
        if not (args.reuse and (run_dir / "model" / "config.json").is_file()):
            fit(spec, run_dir, plan(), progress=False)
        logged = pd.read_csv(run_dir / "logs" / "metrics.csv")
        models[name] = {
            "model": str(run_dir / "model"),
            "epochs": int(logged["epoch"].max()) + 1,
            "epoch_minutes": epoch_minutes(run_dir),
        }
        print(f"{name}: {models[name]}", flush=True)
    return models


# ---- the test split, once ----------------------------------------------------------------------


def score_on_test(models: dict, cohort, args: argparse.Namespace) -> dict[str, Any]:
    """Each model's own probabilities on test (all modalities, predictions kept), and synergy's
    recalibrated ones (with its conformal sets)."""
    out = {}
    arms = [(name, False) for name in models] + [(SYNERGY, True)]
    for name, calibrated in arms:
        key = f"{name} (recalibrated)" if calibrated else name
        path = args.out / "eval" / f"{key.replace(' ', '_').replace('+', '')}.predictions.parquet"
        predictor = Predictor.load(models[name]["model"], calibrated=calibrated)
        result = evaluate_model(
            predictor,
            cohort,
            split="test",
            subsets=False,
            n_boot=args.n_boot,
            seed=args.seed,
            progress=False,
            predictions_path=path,
        )
        out[key] = {"result": result, "kept": read_predictions(path)}
    return out


def metrics_of(evaluation: dict) -> tuple[str, str, dict]:
    """``(target, kind, {metric: MetricCI})`` of the first target with all modalities."""
    target, entry = next(iter(evaluation["result"].targets.items()))
    return target, entry.kind, entry.subsets[0].metrics


def compare_models(evaluations: dict, args: argparse.Namespace) -> Comparison:
    """Every pair of the three models on every table metric of the first target."""
    _, kind, _ = metrics_of(evaluations[SYNERGY])
    comparison = compare_predictions(
        {name: evaluations[name]["kept"] for name in args.models},
        n_boot=args.n_boot,
        seed=args.seed,
        metrics=list(targets.get(kind).table_metrics),
    )
    # DeLong p-values, Holm-adjusted over the pairs (the library adjusts the bootstrap's).
    delong_rows = [r for r in comparison.rows if r.delong_p is not None]
    for row, adjusted in zip(delong_rows, holm([r.delong_p for r in delong_rows]), strict=True):
        row.delong_holm = float(adjusted)
    return comparison


def calibration_section(synergy: dict, evaluations: dict, args: argparse.Namespace) -> dict:
    """ECE and Brier on test before/after the temperature fitted on val; the reliability PNG."""
    fitted = json.loads((Path(synergy["model"]) / "calibration.json").read_text())
    target, kind, _ = metrics_of(evaluations[SYNERGY])
    rows, curves = {}, {}
    for label, key in (("before", SYNERGY), ("after", f"{SYNERGY} (recalibrated)")):
        metrics = metrics_of(evaluations[key])[2]
        rows[label] = {m: metrics[m]._asdict() for m in ("ece", "brier") if m in metrics}
        kept = evaluations[key]["kept"]
        labelled = kept.arrays(kept.subsets[0], target)
        positive, probability = top_label(labelled.y_true, labelled.prediction)
        curves[f"{label} temperature scaling"] = reliability(
            positive, probability, labelled.groups, n_boot=args.n_boot, seed=args.seed
        )
    # For classes: the top class's hit rate, the level of a constant confidence.
    prevalence = float(np.mean(positive))
    what = "P(positive)" if kind == "binary" else "top-label confidence"
    figure = reliability_figure(curves, prevalence, f"{SYNERGY} on test: {what}")
    png = RESULTS / f"{args.name}_reliability.png"
    png.write_bytes(png_bytes(figure))
    return {"fitted_on_val": fitted["targets"][target], "test": rows, "figure": png.name}


def top_label(y: np.ndarray, prediction: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """What a reliability diagram bins: a binary outcome and its probability ``(n,)`` each;
    for classes, whether the top class is right and its probability (the top-label ECE)."""
    prediction = np.asarray(prediction, dtype=float)
    if prediction.ndim == 1:
        return np.asarray(y).astype(int) == 1, prediction
    return prediction.argmax(axis=1) == np.asarray(y).astype(int), prediction.max(axis=1)


def conformal_section(synergy: dict, evaluations: dict) -> dict:
    """Coverage of synergy's 90 % sets on test (CI over patients) and their mean size."""
    fitted = json.loads((Path(synergy["model"]) / "conformal.json").read_text())
    target, _, metrics = metrics_of(evaluations[f"{SYNERGY} (recalibrated)"])
    return {
        "coverage_target": fitted["coverage"],
        "threshold": fitted["targets"][target]["threshold"],
        "n_calibration": fitted["targets"][target]["n_calibration"],
        "coverage": metrics["coverage"]._asdict(),
        "set_size": metrics["set_size"]._asdict(),
    }


def cv_section(spec: CohortSpec, run: RunConfig, args: argparse.Namespace) -> dict:
    """``polymodal cv`` of the synergy recipe: K grouped folds over the non-test rows."""
    done = args.out / "cv" / "cv.json"
    if args.reuse and done.is_file():
        summary = json.loads(done.read_text())
    else:
        summary = cross_validate(
            spec,
            args.out / "cv",
            run,
            folds=args.folds,
            seed=args.seed,
            n_boot=args.n_boot,
            progress=False,
        ).summary
    target, entry = next(iter(summary["pooled"]["targets"].items()))
    metric = targets.get(entry["kind"]).headline
    pooled = entry["subsets"][0]["metrics"][metric]
    return {
        "target": target,
        "metric": metric,
        "folds": [
            {
                "fold": f["fold"],
                "rows": f["n_rows"],
                "patients": f["n_groups"],
                "best_epoch": f["best_epoch"],
                "value": f["metrics"][target][metric],
            }
            for f in summary["folds"]
        ],
        "across": summary["across_folds"][target][metric],
        "pooled": pooled,
        "epoch_minutes": sum(epoch_minutes(run) for run in (args.out / "cv").glob("fold_*")),
    }


def epoch_minutes(run_dir: Path) -> float:
    """Minutes of a run's training and validation epochs, from its own log (so that a fit
    reused from an earlier call is timed too)."""
    logged = pd.read_csv(run_dir / "logs" / "metrics.csv")
    return float(logged[["train/epoch_seconds", "val/epoch_seconds"]].sum().sum()) / 60


# ---- the report ----------------------------------------------------------------------------------


def _p(value: float | None) -> str:
    if value is None or not math.isfinite(value):
        return "—"
    return "<0.001" if value < 0.001 else f"{value:.3f}"


def _signed(row) -> str:
    return f"{row.difference:+.3f} ({row.low:+.3f}, {row.high:+.3f})"


def comparison_lines(comparison: Comparison) -> list[str]:
    """The compare table (one row per pair and metric) and which pairs differ."""
    rows = [
        [
            f"{r.model_a} − {r.model_b}",
            r.metric,
            f"{r.value_a:.3f}",
            f"{r.value_b:.3f}",
            _signed(r),
            _p(r.p),
            _p(r.p_holm),
            _p(r.delong_p),
            _p(getattr(r, "delong_holm", None)),
            _p(r.mcnemar_p),
            r.verdict,
        ]
        for r in comparison.rows
    ]
    header = [
        "A − B",
        "metric",
        "A",
        "B",
        "A − B (95 % CI)",
        "p",
        "p Holm",
        "DeLong p",
        "DeLong p Holm",
        "McNemar p",
        "verdict",
    ]
    lines = table(header, rows, "llrrrrrrrrl")
    lines += ["", *[f"> {note}" for note in comparison.notes], ""]
    for pair in dict.fromkeys((r.model_a, r.model_b) for r in comparison.rows):
        told = [r for r in comparison.rows if (r.model_a, r.model_b) == pair]
        decided = [f"{r.metric} ({r.verdict})" for r in told if r.verdict.endswith("better")]
        verdict = (
            ", ".join(decided)
            if decided
            else "none of the metrics: the data cannot tell them apart"
        )
        lines.append(f"- {pair[0]} vs {pair[1]}: told apart on {verdict}.")
    return lines


def calibration_lines(calibration: dict) -> list[str]:
    fitted = calibration["fitted_on_val"]
    rows = [
        [label, cell(values.get("ece")), cell(values.get("brier"))]
        for label, values in calibration["test"].items()
    ]
    return [
        f"Temperature T = {fitted['parameters']['temperature']:.3f}, fitted on "
        f"{fitted['n_calibration']} validation rows (validation NLL {fitted['nll_before']:.4f} → "
        f"{fitted['nll_after']:.4f}).",
        "",
        *table(["synergy on test", "ECE (95 % CI)", "Brier (95 % CI)"], rows, "lrr"),
        "",
        f"![reliability before and after temperature scaling]({calibration['figure']})",
    ]


def conformal_lines(conformal: dict) -> list[str]:
    threshold = conformal["threshold"]
    q = "∞ (too few rows)" if threshold is None else f"{threshold:.3f}"
    return [
        f"Split-conformal LAC sets for {conformal['coverage_target']:.0%} coverage, threshold "
        f"q = {q} from {conformal['n_calibration']} validation rows (recalibrated probabilities).",
        "",
        *table(
            ["synergy on test", "empirical coverage (95 % CI)", "mean set size (95 % CI)"],
            [["LAC sets", cell(conformal["coverage"]), cell(conformal["set_size"])]],
            "lrr",
        ),
    ]


def cv_lines(cv: dict) -> list[str]:
    across = cv["across"]
    rows = [
        [f["fold"], f["rows"], f["patients"], f["best_epoch"] or "—", f"{f['value']:.3f}"]
        for f in cv["folds"]
    ]
    mean = "n/a" if across["mean"] is None else f"{across['mean']:.3f}"
    interval = "" if across["low"] is None else f" ({across['low']:.3f}–{across['high']:.3f})"
    values = [f["value"] for f in cv["folds"]]
    return [
        *table(
            ["fold", "rows", "patients", "best epoch", f"{cv['target']} {cv['metric']}"],
            rows,
            "rrrrr",
        ),
        "",
        f"Mean over {len(values)} folds {mean}{interval} (95 % t-interval); SD "
        f"{across['sd'] or float('nan'):.3f}, range {min(values):.3f}–{max(values):.3f}. Pooled "
        f"out-of-fold predictions: {cell(cv['pooled'])} (patient bootstrap). "
        f"Epochs of the {len(values)} fits: {cv['epoch_minutes']:.1f} min.",
    ]


def models_lines(models: dict, evaluations: dict) -> list[str]:
    """Each model's run and its test headline metric (own probabilities, all modalities)."""
    target, kind, _ = metrics_of(evaluations[SYNERGY])
    metric = targets.get(kind).headline
    rows = [
        [
            name,
            info["epochs"],
            f"{info['epoch_minutes']:.1f}",
            cell(metrics_of(evaluations[name])[2][metric]),
        ]
        for name, info in models.items()
    ]
    header = ["model", "epochs run", "minutes (epochs)", f"{target} {metric} (test)"]
    return table(header, rows, "lrrr")


def comparison_dict(comparison: Comparison) -> dict:
    """``compare.json``'s content with each row's DeLong p Holm-adjusted over the pairs."""
    out = comparison.to_dict()
    for entry, row in zip(out["rows"], comparison.rows, strict=True):
        entry["delong_p_holm"] = getattr(row, "delong_holm", None)
    return out


def report(args, facts, models, evaluations, comparison, calibration, conformal, cv) -> None:
    splits = ", ".join(
        f"{s} {v['rows']} rows / {v['patients']} patients" for s, v in facts["splits"].items()
    )
    lines = [
        f"# Evidence: paired comparison, recalibration, conformal sets and CV ({facts['cohort']})",
        "",
        f"Command: `python bench/evidence.py {' '.join(args.argv)}`",
        "",
        f"Machine: {machine(args.threads)} (shared; load average {facts['load_average']:.1f} at "
        f"the end); this call {facts['minutes']:.1f} min"
        + (
            " (with --reuse, fits and CV already in the run folder are read, not redone; the "
            "tables give their epochs' minutes from their logs)."
            if args.reuse
            else "."
        ),
        f"Cohort: {facts['cohort']} ({splits}); target {facts['target']} ({facts['kind']}). "
        f"Every fit trains on train and selects its epoch on val (max {args.epochs} epochs, batch {args.batch_size}); "
        f"recalibration and conformal thresholds are fitted on val; test is scored once. 95 % "
        f"intervals from {args.n_boot} bootstrap resamples of patients.",
        "",
        "## Models",
        "",
        *models_lines(models, evaluations),
        "",
        "## Paired comparison on test (all modalities, each model's own probabilities)",
        "",
        *comparison_lines(comparison),
        "",
        "## Reliability before and after temperature scaling (synergy)",
        "",
        *calibration_lines(calibration),
        "",
        f"## Conformal prediction sets at {COVERAGE:.0%} (synergy)",
        "",
        *conformal_lines(conformal),
        "",
        f"## Grouped cross-validation of synergy ({args.folds} folds of the non-test rows)",
        "",
        *(cv_lines(cv) if cv else [CV_PENDING if args.folds else "Not run (`--folds 0`)."]),
    ]
    stem = RESULTS / args.name
    write_report(stem.with_suffix(".md"), lines)
    payload = {
        "settings": {k: str(v) if isinstance(v, Path) else v for k, v in vars(args).items()},
        "machine": machine(args.threads),
        "facts": facts,
        "models": models,
        "test": {k: v["result"].to_dict() for k, v in evaluations.items()},
        "comparison": comparison_dict(comparison),
        "calibration": calibration,
        "conformal": conformal,
        "cv": cv,
    }
    stem.with_suffix(".json").write_text(json.dumps(payload, indent=1, default=str))
    print("\n".join(lines), flush=True)


def parse_args() -> argparse.Namespace:
    import sys

    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--cohort", choices=("demo", "ham10000"), default="demo")
    parser.add_argument("--n", type=int, default=2000, help="demo cohort rows")
    parser.add_argument("--epochs", type=int, default=10, help="max epochs of every fit")
    parser.add_argument("--folds", type=int, default=5, help="0: no cross-validation")
    parser.add_argument(
        "--models",
        default=f"{SYNERGY},{STUDENT},{CONCAT}",
        help="comma-separated, synergy first (it is the teacher and gets the calibration)",
    )
    parser.add_argument("--batch-size", type=int, default=32, help="of every fit")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--n-boot", type=int, default=1000)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument(
        "--quick", action="store_true", help="smoke: --n 300 --epochs 1, 200 resamples"
    )
    parser.add_argument("--reuse", action="store_true", help="keep fits (and CV) already in --out")
    parser.add_argument("--out", type=Path, help="run folder (default runs/evidence_<cohort>)")
    parser.add_argument("--name", help="stem of the result files (default evidence_<cohort>)")
    args = parser.parse_args()
    args.argv = sys.argv[1:]
    args.models = args.models.split(",")
    if args.models[0] != SYNERGY or len(args.models) < 2:
        parser.error(f"--models: {SYNERGY} first, and at least one more of {STUDENT}, {CONCAT}")
    if args.quick:
        args.n, args.epochs, args.n_boot = 300, 1, 200
    suffix = "_quick" if args.quick else ""
    args.out = args.out or REPO_ROOT / "runs" / f"evidence_{args.cohort}{suffix}"
    args.name = args.name or f"evidence_{args.cohort}{suffix}"
    return args


if __name__ == "__main__":
    main()
