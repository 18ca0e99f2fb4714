"""Robustness to missing modalities: every-subset tables, distillation and gradient modulation.

Trains, on one cohort, the models that issue 4 compares and scores each on every subset of its
modalities (encode once, fuse per subset; missing = the modality's availability set to False,
exactly as a missing file arrives):

* ``single (<m>)``: one model per modality, trained on it alone;
* ``without <m>`` (demo only, five modalities): the plain PB model trained on every modality but
  ``m``, the yardstick for "one modality missing" (for two modalities this is ``single``);
* ``concat``, ``synergy`` (``configs/ablations/synergy.yaml``), ``bottleneck``
  (``configs/ablations/pb.yaml``): the same modality dropout (0.3) for all three;
* ``teacher``: ``configs/ablations/pb_teacher.yaml`` (PB + GM, all modalities, no dropout);
* ``PB+KD``, ``PB+GM``, ``PB+KD+GM``: the ablation configs, the KD students distilled from the
  teacher.

Every fused model uses the ablation configs as they ship, with the cohort's encoders set below
(the same for all). The time per epoch is ``train/epoch_seconds`` of each run's metrics (the
optimisation steps only, validation excluded), so the KD and GM cost ratios compare like with
like. Writes ``bench/results/robustness_<cohort>.{md,json}`` and the HTML report with its PNGs
into ``docs/robustness/<cohort>/``.

Usage::

    python bench/robustness.py --cohort demo [--n 2000] [--epochs 15] [--n-boot 500]
    python bench/robustness.py --cohort ham10000 [--epochs 12] [--n-boot 500]
"""

from __future__ import annotations

import argparse
import json
import time
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pandas as pd
import torch

from _common import cell, device_name, machine, table, table_row, write_report
from polymodal.data.manifest import load_cohort
from polymodal.data.spec import load_spec
from polymodal.evaluation.evaluate import evaluate_model
from polymodal.evaluation.report import build_report
from polymodal.evaluation.tables import EvaluationResult
from polymodal.predictor import Predictor
from polymodal.training.fit import fit
from polymodal.training.run_config import load_run_config

REPO_ROOT = Path(__file__).resolve().parents[1]
ABLATIONS = REPO_ROOT / "configs" / "ablations"
RESULTS = REPO_ROOT / "bench" / "results"
DOCS = REPO_ROOT / "docs" / "robustness"


@dataclass
class Cohort:
    """What differs between the two cohorts: data, encoders, split, metrics."""

    spec: Path
    modalities: tuple[str, ...]
    target: str
    split: str
    metrics: tuple[str, ...]
    overrides: list[str] = field(default_factory=list)


def demo_cohort(out: Path, n: int, seed: int, modalities: tuple[str, ...]) -> Cohort:
    from polymodal.datasets.demo import make_demo_cohort

    spec = out / "cohort" / "spec.yaml"
    if not spec.is_file():
        spec = make_demo_cohort(out / "cohort", n=n, seed=seed, image_size=32, volume_size=16)
    return Cohort(
        spec=spec,
        modalities=modalities,
        target="label",
        split="test",
        metrics=("auroc", "auprc"),
        overrides=[
            # The encoders of the end-to-end test: small enough for CPU, and each learns its
            # factor alone (docs/benchmarks.md, e2e section).
            "model.encoders.lesion={name: image_timm, options: {backbone: resnet10t}}",
            "model.encoders.ct={name: volume_monai, options: {network_options: "
            "{init_features: 8, growth_rate: 8, block_config: [2, 2]}}}",
            "model.encoders.note={options: {depth: 1}}",
            "train.batch_size=32",
            "train.lr=2e-3",
            # Every fused model reads the chosen modalities only (the singles read one anyway).
            f"model.modalities={list(modalities)}",
        ],
    )


def ham_cohort(workers: int) -> Cohort:
    return Cohort(
        spec=REPO_ROOT / "configs" / "ham10000.yaml",
        modalities=("skin", "clinical"),
        target="dx",
        # The official HAM10000 test images are not in ../shared/data: report on val.
        split="val",
        metrics=("auroc_macro", "balanced_accuracy"),
        overrides=[
            # Frozen packaged EfficientNet-Lite0, trainable token projection; the feature cache
            # runs the backbone once per image for every model of this process.
            "model.encoders.skin={name: image_timm, options: {backbone: efficientnet_lite0, "
            "pretrained: 'package:efficientnet-lite0', freeze: all, feature_cache: true}}",
            "train.lr=1e-3",
            "train.batch_size=64",
            "train.monitor=val/dx/auroc_macro",
            f"train.num_workers={workers}",
        ],
    )


def plan(cohort: Cohort) -> list[tuple[str, Path | None, list[str], str | None]]:
    """(name, ablation config, extra overrides, teacher name) in training order."""
    models: list[tuple[str, Path | None, list[str], str | None]] = [
        (
            f"single ({m})",
            None,
            ["model.core=single", f"model.core_options.modality={m}", "model.dim=64"],
            None,
        )
        for m in cohort.modalities
    ]
    if len(cohort.modalities) > 2:
        models += [
            (
                f"without {m}",
                ABLATIONS / "pb.yaml",
                [f"model.modalities={[o for o in cohort.modalities if o != m]}"],
                None,
            )
            for m in cohort.modalities
        ]
    models += [
        ("concat", None, ["model.core=concat", "model.dim=64", "model.modality_dropout=0.3"], None),
        ("synergy", ABLATIONS / "synergy.yaml", [], None),
        ("bottleneck", ABLATIONS / "pb.yaml", [], None),
        ("teacher", ABLATIONS / "pb_teacher.yaml", [], None),
        ("PB+GM", ABLATIONS / "pb_gm.yaml", [], None),
        ("PB+KD", ABLATIONS / "pb_kd.yaml", [], "teacher"),
        ("PB+KD+GM", ABLATIONS / "pb_kd_gm.yaml", [], "teacher"),
    ]
    return models


def fit_run(spec, run_dir: Path, run, cohort):
    """``fit`` with a whole run config (model, train, distillation, modulation), quietly."""
    return fit(
        spec,
        run_dir,
        run,
        cohort=cohort,
        progress=False,
    )


def epoch_seconds(run_dir: Path) -> float:
    """Median ``train/epoch_seconds`` over the run's epochs (robust to a noisy neighbour)."""
    metrics = pd.read_csv(run_dir / "logs" / "metrics.csv")
    return float(metrics["train/epoch_seconds"].dropna().median())


def reused_row(run_dir: Path) -> dict:
    """The row of a model fitted and scored by an earlier run (``--reuse``)."""
    metrics = pd.read_csv(run_dir / "logs" / "metrics.csv")
    saved = run_dir / "bench.json"
    facts = json.loads(saved.read_text()) if saved.is_file() else {}
    return {
        "model_dir": str(run_dir / "model"),
        "epochs": facts.get("epochs", int(metrics["epoch"].max()) + 1),
        "fit_minutes": facts.get("fit_minutes", float("nan")),
        "device": facts.get("device", "unknown"),
        "epoch_seconds": epoch_seconds(run_dir),
        "evaluation": json.loads((run_dir / "evaluation.json").read_text()),
    }


def run_name(args) -> str:
    """The cohort, with the seed when it is not 0 (a replicate keeps its own results)."""
    return args.cohort + (f"_seed{args.seed}" if args.seed else "")


def subset_metric(evaluation: dict, target: str, modalities: tuple[str, ...], metric: str):
    for subset in evaluation["targets"][target]["subsets"]:
        if tuple(sorted(subset["modalities"])) == tuple(sorted(modalities)):
            return subset["metrics"].get(metric)
    return None


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--cohort", choices=("demo", "ham10000"), required=True)
    parser.add_argument("--n", type=int, default=2000, help="demo cohort size")
    parser.add_argument(
        "--modalities",
        default="lesion,ct,labs,note,vitals",
        help="demo only: the modalities every model reads (comma-separated)",
    )
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument(
        "--workers", type=int, default=2, help="HAM10000: DataLoader worker processes"
    )
    parser.add_argument("--epochs", type=int, default=15)
    parser.add_argument("--patience", type=int, default=5)
    parser.add_argument("--n-boot", type=int, default=500)
    parser.add_argument("--models", default=None, help="comma-separated subset of the models")
    parser.add_argument("--out", type=Path, default=None)
    parser.add_argument(
        "--reuse", action="store_true", help="read back models an earlier run fitted and scored"
    )
    parser.add_argument(
        "--seeds-summary",
        default=None,
        help="instead of the benchmark: the distilled student's targets over the results of "
        "earlier runs with these seeds (comma-separated)",
    )
    parser.add_argument(
        "--cost-rounds",
        type=int,
        default=0,
        help="instead of the benchmark: time PB, +GM, +KD, +KD+GM side by side, N rounds",
    )
    args = parser.parse_args()
    torch.set_num_threads(2)
    started = time.perf_counter()
    out = args.out or REPO_ROOT / "runs" / f"bench_robustness_{run_name(args)}"
    cohort_cfg = (
        demo_cohort(out, args.n, args.seed, tuple(args.modalities.split(",")))
        if args.cohort == "demo"
        else ham_cohort(args.workers)
    )
    if args.seeds_summary:
        seeds_summary(args, cohort_cfg)
        return
    spec = load_spec(cohort_cfg.spec)
    cohort = load_cohort(spec)
    chosen = None if args.models is None else set(args.models.split(","))

    if args.cost_rounds:
        cost_table(args, cohort_cfg, spec, cohort, out)
        return
    rows: dict[str, dict] = {}
    for name, config, extra, teacher in plan(cohort_cfg):
        if chosen is not None and name not in chosen:
            continue
        slug = name.replace(" ", "_").replace("(", "").replace(")", "").replace("+", "_")
        run_dir = out / slug
        if args.reuse and (run_dir / "evaluation.json").is_file():
            # Fitted and scored by an earlier run of this command: read it back.
            rows[name] = reused_row(run_dir)
            print(f"reusing {name} from {run_dir}", flush=True)
            continue
        overrides = [
            *cohort_cfg.overrides,
            *extra,
            f"train.max_epochs={args.epochs}",
            f"train.early_stopping_patience={args.patience}",
            f"train.seed={args.seed}",
            f"train.cache_dir={out / 'sample_cache'}",
        ]
        if teacher is not None:
            overrides.append(f"distill.teacher={rows[teacher]['model_dir']}")
        run = load_run_config(config, overrides)
        print(f"[{(time.perf_counter() - started) / 60:5.1f} min] fitting {name}", flush=True)
        t0 = time.perf_counter()
        result = fit_run(spec, run_dir, run, cohort)
        fit_seconds = time.perf_counter() - t0
        evaluation = evaluate_model(
            Predictor.load(result.model_dir),
            cohort,
            split=cohort_cfg.split,
            n_boot=args.n_boot,
            seed=args.seed,
            progress=False,
        )
        (run_dir / "bench.json").write_text(
            json.dumps(
                {
                    "epochs": result.epochs_run,
                    "fit_minutes": fit_seconds / 60,
                    "device": device_name(),
                }
            )
        )
        (run_dir / "evaluation.json").write_text(evaluation.to_json())
        rows[name] = {
            "model_dir": str(result.model_dir),
            "epochs": result.epochs_run,
            "fit_minutes": fit_seconds / 60,
            "device": device_name(),
            "epoch_seconds": epoch_seconds(run_dir),
            "evaluation": json.loads(evaluation.to_json()),
        }
        print(f"    {result.epochs_run} epochs, {fit_seconds / 60:.1f} min", flush=True)

    write_results(args, cohort_cfg, rows, started)


COST_MODELS = {
    "PB": "pb.yaml",
    "PB+GM": "pb_gm.yaml",
    "PB+KD": "pb_kd.yaml",
    "PB+KD+GM": "pb_kd_gm.yaml",
}


def cost_table(args, cohort_cfg: Cohort, spec, cohort, out: Path) -> None:
    """Time per epoch of PB, +GM, +KD, +KD+GM, measured side by side.

    Each round fits every variant for one epoch, in turn, so a change in the machine's load
    falls on all of them; the teacher is the one the main run trained (``OUT/teacher``).
    """
    teacher = out / "teacher" / "model"
    if not (teacher / "config.json").is_file():
        raise SystemExit(f"{teacher}: run the main benchmark first (the KD rows need its teacher)")
    started = time.perf_counter()
    seconds: dict[str, list[float]] = {name: [] for name in COST_MODELS}
    for round_index in range(args.cost_rounds):
        for name, config in COST_MODELS.items():
            overrides = [
                *cohort_cfg.overrides,
                "train.max_epochs=1",
                "train.early_stopping_patience=null",
                f"train.seed={args.seed + round_index}",
                f"train.cache_dir={out / 'sample_cache'}",
            ]
            if "KD" in name:
                overrides.append(f"distill.teacher={teacher}")
            run = load_run_config(ABLATIONS / config, overrides)
            run_dir = out / "cost" / f"{name.replace('+', '_')}_{round_index}"
            fit_run(spec, run_dir, run, cohort)
            seconds[name].append(epoch_seconds(run_dir))
            print(f"round {round_index} {name}: {seconds[name][-1]:.1f} s", flush=True)
    base = float(np.median(seconds["PB"]))
    lines = [
        f"# Training cost of distillation and gradient modulation: {args.cohort}",
        "",
        f"Command: `python bench/robustness.py --cohort {args.cohort} --cost-rounds "
        f"{args.cost_rounds}"
        + (f" --n {args.n} --modalities {args.modalities}" if args.cohort == "demo" else "")
        + "`",
        "",
        f"Machine: {machine()} (shared); "
        f"total {(time.perf_counter() - started) / 60:.1f} min. Each round trains every variant "
        "for one epoch in turn (the ablation configs; the KD teacher is the main run's); time "
        "of the optimisation steps (`train/epoch_seconds`), median over the rounds.",
        "",
        *table(["variant", "s / epoch (median)", "per round", "× PB"], align="lrlr"),
    ]
    for name, values in seconds.items():
        median = float(np.median(values))
        rounds = ", ".join(f"{v:.1f}" for v in values)
        lines.append(table_row([name, f"{median:.1f}", rounds, f"{median / base:.2f}"]))
    print(write_report(RESULTS / f"robustness_cost_{args.cohort}.md", lines), end="")


STUDENT, TEACHER = "PB+KD+GM", "teacher"


def distilled_targets(rows: dict[str, dict], cohort: Cohort) -> dict | None:
    """The issue's two targets for the distilled student, or None without student and teacher.

    ``missing``: per modality m, the student on the other modalities against the model trained
    on them alone (``single (<m'>)`` for two modalities, ``without <m>`` for more), and Δ;
    ``all``: the student against its teacher with every modality present, and Δ.
    """
    if STUDENT not in rows or TEACHER not in rows:
        return None
    target, metric, mods = cohort.target, cohort.metrics[0], cohort.modalities
    student = rows[STUDENT]["evaluation"]
    missing = {}
    for m in mods:
        rest = tuple(o for o in mods if o != m)
        yard = f"single ({rest[0]})" if len(rest) == 1 else f"without {m}"
        if yard not in rows:
            continue
        s_ci = subset_metric(student, target, rest, metric)
        y_ci = subset_metric(rows[yard]["evaluation"], target, rest, metric)
        missing[m] = {
            "remaining": rest,
            "model": yard,
            "student": s_ci,
            "yardstick": y_ci,
            "delta": s_ci["point"] - y_ci["point"],
        }
    s_all = subset_metric(student, target, mods, metric)
    t_all = subset_metric(rows[TEACHER]["evaluation"], target, mods, metric)
    return {
        "missing": missing,
        "all": {"student": s_all, "teacher": t_all, "delta": s_all["point"] - t_all["point"]},
    }


def seeds_summary(args, cohort: Cohort) -> None:
    """The distilled student's targets over replicate runs (``--seed N`` results files)."""
    seeds = [int(x) for x in args.seeds_summary.split(",")]
    lines = [
        f"# Robustness targets of {STUDENT} over seeds: {args.cohort}",
        "",
        f"Command: `python bench/robustness.py --cohort {args.cohort} --seeds-summary "
        f"{args.seeds_summary}"
        + (f" --n {args.n} --modalities {args.modalities}" if args.cohort == "demo" else "")
        + "`, over the results of the replicate runs "
        + ", ".join(f"`robustness_{args.cohort}{f'_seed{s}' if s else ''}.json`" for s in seeds)
        + ". Each seed draws its own cohort (demo) and initial weights. Δ = student − "
        "yardstick (one modality missing) and student − teacher (all present); targets: Δ ≥ 0 "
        "and Δ ≥ −0.010.",
        "",
    ]
    by_seed: dict[int, dict] = {}
    for seed in seeds:
        path = RESULTS / f"robustness_{args.cohort}{f'_seed{seed}' if seed else ''}.json"
        if not path.is_file():
            raise SystemExit(f"{path} not found: run the benchmark with --seed {seed} first")
        targets = distilled_targets(json.loads(path.read_text()), cohort)
        if targets is None:
            raise SystemExit(f"{path} has no {STUDENT} and {TEACHER} rows")
        by_seed[seed] = targets
    missing = list(next(iter(by_seed.values()))["missing"])
    lines += [
        *table(
            ["seed", *(f"Δ, {m} missing" for m in missing), "Δ vs teacher, all"],
            align="r" * (len(missing) + 2),
        ),
    ]
    for seed, targets in by_seed.items():
        cells = [f"{targets['missing'][m]['delta']:+.3f}" for m in missing]
        lines.append(table_row([seed, *cells, f"{targets['all']['delta']:+.3f}"]))
    deltas = {m: [t["missing"][m]["delta"] for t in by_seed.values()] for m in missing}
    to_teacher = [t["all"]["delta"] for t in by_seed.values()]
    means = [f"{np.mean(v):+.3f}" for v in deltas.values()]
    lines.append(table_row(["mean", *means, f"{np.mean(to_teacher):+.3f}"]))
    met = [f"{sum(d >= 0 for d in v)} / {len(v)}" for v in deltas.values()]
    close = f"{sum(d >= -0.010 for d in to_teacher)} / {len(to_teacher)}"
    lines.append(table_row(["target met", *met, close]))
    stem = f"robustness_{args.cohort}_seeds"
    (RESULTS / f"{stem}.json").parent.mkdir(parents=True, exist_ok=True)
    (RESULTS / f"{stem}.json").write_text(
        json.dumps({str(k): v for k, v in by_seed.items()}, indent=1, default=list)
    )
    print(write_report(RESULTS / f"{stem}.md", lines), end="")


def write_results(args, cohort: Cohort, rows: dict[str, dict], started: float) -> None:
    target, metric = cohort.target, cohort.metrics[0]
    fused = [n for n in rows if not n.startswith(("single", "without"))]
    lines = [
        f"# Robustness to missing modalities: {run_name(args)}",
        "",
        f"Command: `python bench/robustness.py --cohort {args.cohort} --epochs {args.epochs} "
        f"--patience {args.patience} --n-boot {args.n_boot}"
        + (f" --seed {args.seed}" if args.seed else "")
        + (f" --n {args.n} --modalities {args.modalities}" if args.cohort == "demo" else "")
        + (f" --models '{args.models}'" if args.models else "")
        + (" --reuse" if args.reuse else "")
        + "`",
        "",
        f"Machine: {machine()} (shared); "
        f"total {(time.perf_counter() - started) / 60:.1f} min. Scored on the `{cohort.split}` "
        f"split with 95 % bootstrap CIs ({args.n_boot} resamples of patient groups). A missing "
        "modality is switched off in the availability mask, as a missing file is.",
        "",
        f"## {metric} on every subset of modalities (fused models)",
        "",
        *table(["available", *fused], align="l" + "r" * len(fused)),
    ]
    subsets = [s["modalities"] for s in rows[fused[0]]["evaluation"]["targets"][target]["subsets"]]
    for subset in subsets:
        cells = [
            cell(subset_metric(rows[n]["evaluation"], target, tuple(subset), metric)) for n in fused
        ]
        lines.append(table_row([" + ".join(subset), *cells]))

    # The two targets for the distilled model.
    targets = distilled_targets(rows, cohort)
    if targets is not None:
        lines += [
            "",
            f"## {STUDENT}: never worse than a model trained on what remains",
            "",
            "With one modality missing at test time, the distilled model against a model "
            "trained on the remaining modalities alone (the yardstick). Δ = student − yardstick.",
            "",
            *table(["missing", "remaining", STUDENT, "yardstick", "model", "Δ"], align="llrrlr"),
        ]
        for m, row in targets["missing"].items():
            remaining, delta = " + ".join(row["remaining"]), f"{row['delta']:+.3f}"
            student, yardstick = cell(row["student"]), cell(row["yardstick"])
            lines.append(table_row([m, remaining, student, yardstick, row["model"], delta]))
        full = targets["all"]
        lines += [
            "",
            f"All modalities present: {STUDENT} {cell(full['student'])} against its undistilled "
            f"teacher {cell(full['teacher'])}: Δ = {full['delta']:+.3f} (target: ≥ −0.010).",
        ]

    lines += [
        "",
        "## Single-modality models",
        "",
        *table(["model", *cohort.metrics], align="l" + "r" * len(cohort.metrics)),
    ]
    for name in rows:
        if name.startswith(("single", "without")):
            ev = rows[name]["evaluation"]
            full = ev["targets"][target]["subsets"][0]
            lines.append(table_row([name, *(cell(full["metrics"].get(k)) for k in cohort.metrics)]))

    base = rows.get("bottleneck")
    lines += [
        "",
        "## Training cost",
        "",
        "Median time of the optimisation steps per epoch (`train/epoch_seconds`, validation "
        "excluded). The runs follow one another while the machine's load changes, so these are not side-by-side ratios: `--cost-rounds` measures those (`robustness_cost_<cohort>.md`).",
        "",
        *table(
            ["model", "trained on", "epochs", "s / epoch", "× plain PB", "fit + export, min"],
            align="llrrrr",
        ),
    ]
    for name, row in rows.items():
        same = base is not None and row["device"] == base["device"]
        ratio = f"{row['epoch_seconds'] / base['epoch_seconds']:.2f}" if same else "n/a"
        seconds, minutes = f"{row['epoch_seconds']:.1f}", f"{row['fit_minutes']:.1f}"
        lines.append(table_row([name, row["device"], row["epochs"], seconds, ratio, minutes]))
    stem = f"robustness_{run_name(args)}"
    write_report(RESULTS / f"{stem}.md", lines)
    (RESULTS / f"{stem}.json").write_text(
        json.dumps(
            {k: {kk: vv for kk, vv in v.items() if kk != "model_dir"} for k, v in rows.items()},
            indent=1,
        )
    )
    # The fused models share all their subsets; single models are in the tables above.
    results = {name: EvaluationResult.from_dict(rows[name]["evaluation"]) for name in fused}
    html = build_report(
        results,
        DOCS / run_name(args),
        metric=metric,
        title=f"Robustness to missing modalities: {args.cohort}",
    )
    print("\n".join(lines))
    print(f"report: {html}")


if __name__ == "__main__":
    main()
