"""``polymodal tune`` on the demo cohort: a search against the default config, both scored once
on the test split at the end.

Both arms get the same cohort, encoders (the small CPU encoders of bench/robustness.py), epoch
budget (``--epochs``) and sample cache. The *default* arm fits the base run config as it is
(synergy, dim 128, its default latents and depth, lr 2e-3). The *tuned* arm runs ``tune`` on the
same base config with the shipped synergy space and keeps its best trial, chosen on the
validation split. Only then is each arm's model folder evaluated on the test split, once: the
first target's headline metric with its patient-grouped bootstrap CI. Writes
``bench/results/tune_demo.{md,json}`` (``--name`` changes the stem).

Usage::

    python bench/tune_demo.py [--trials 20] [--n 2000] [--epochs 10] [--out runs/tune_demo]
    python bench/tune_demo.py --trials 2 --n 300 --epochs 1 --name tune_demo_smoke \
        --out runs/tune_demo_smoke                                          # smoke run
    python bench/tune_demo.py ... --reuse   # an interrupted run: keep its default arm and trials
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from collections import Counter
from datetime import datetime
from pathlib import Path
from typing import Any

import optuna
import torch

from _common import cell, load_average, machine, table, write_report
from polymodal import targets
from polymodal.data.manifest import load_cohort
from polymodal.data.spec import CohortSpec, load_spec
from polymodal.datasets.demo import make_demo_cohort
from polymodal.evaluation.evaluate import evaluate_model
from polymodal.predictor import Predictor
from polymodal.training.fit import fit
from polymodal.tuning import BaseConfig, tune

REPO_ROOT = Path(__file__).resolve().parents[1]
RESULTS = REPO_ROOT / "bench" / "results"
# The end-to-end encoders: small enough for a CPU (bench/robustness.py, docs/benchmarks.md).
DEMO_ENCODERS = [
    "model.encoders.lesion={name: image_timm, options: {backbone: resnet10t}}",
    "model.encoders.ct={name: volume_monai, options: {network_options: "
    "{init_features: 8, growth_rate: 8, block_config: [2, 2]}}}",
    "model.encoders.note={options: {depth: 1}}",
]


def main() -> None:
    args = parse_args()
    args.load_start = load_average()
    torch.set_num_threads(args.threads)
    optuna.logging.set_verbosity(optuna.logging.ERROR)
    args.out.mkdir(parents=True, exist_ok=True)
    # One folder per size and seed: a smoke run's small cohort is never reused at full size.
    spec_path = args.out / f"cohort_n{args.n}_seed{args.seed}" / "spec.yaml"
    if not spec_path.is_file():
        make_demo_cohort(spec_path.parent, n=args.n, seed=args.seed, image_size=32, volume_size=16)
    spec = load_spec(spec_path)
    base = BaseConfig(
        None,
        (
            *DEMO_ENCODERS,
            "model.core=synergy",
            "train.batch_size=32",
            "train.lr=2e-3",
            f"train.max_epochs={args.epochs}",
            f"train.seed={args.seed}",
            f"train.cache_dir={(args.out / 'cache').resolve()}",
        ),
    )
    default = fit_default(spec, base, args.out / "default", args.reuse)
    tuned = run_search(spec, base, args.out / "search", args)
    # The test split, once per arm, after both are chosen.
    cohort = load_cohort(spec)
    for arm in (default, tuned):
        arm["test"] = test_score(Path(arm["model"]), cohort, args)
    report(args, spec, default, tuned)


def fit_default(
    spec: CohortSpec, base: BaseConfig, out: Path, reuse: bool = False
) -> dict[str, Any]:
    if reuse and (out / "model" / "config.json").is_file():
        return reused_default(out)
    start = time.perf_counter()
    result = fit(spec, out, base.load(), progress=False)
    return {
        "arm": "default config",
        "model": str(result.model_dir),
        "monitor": result.monitor,
        "val": result.best_score,
        "seconds": time.perf_counter() - start,
        "epochs": result.epochs_run,
    }


def reused_default(out: Path) -> dict[str, Any]:
    """The default arm of an earlier run in ``out``: its model folder's monitor and best score;
    its time from the first line of its fit log to the model folder's config."""
    config = out / "model" / "config.json"
    saved = json.loads(config.read_text())
    first = (out / "logs" / "fit.log").read_text().split(",", 1)[0]
    started = datetime.strptime(first, "%Y-%m-%d %H:%M:%S").timestamp()
    return {
        "arm": "default config",
        "model": str(out / "model"),
        "monitor": saved["monitor"],
        "val": saved["best_score"],
        "seconds": config.stat().st_mtime - started,
    }


def run_search(spec: CohortSpec, base: BaseConfig, out: Path, args: argparse.Namespace) -> dict:
    def progress(trial: Any) -> None:
        value = "" if trial.value is None else f" {trial.value:.4f}"
        print(f"trial {trial.number}: {trial.state.name.lower()}{value} {trial.params}", flush=True)

    result = tune(spec, out, base, trials=args.trials, seed=args.seed, on_trial=progress)
    if result.best_config is None:
        raise SystemExit(f"no trial of {out} completed; see {out / 'tune.md'}")
    study = optuna.load_study(study_name=result.study_name, storage=f"sqlite:///{out / 'study.db'}")
    best = study.best_trial
    return {
        "arm": f"tuned (best of {len(study.trials)} trials)",
        "model": str(out / best.user_attrs["folder"] / "model"),
        "monitor": result.monitor,
        "val": best.value,
        "seconds": search_seconds(study),
        "trial": best.number,
        "params": best.params,
        "states": dict(Counter(t.state.name.lower() for t in study.trials)),
    }


def search_seconds(study: optuna.Study) -> float:
    """From the first trial's start to the last finished trial's end (a resumed study: the
    trials of every run, without the time between runs' trials)."""
    starts = [t.datetime_start for t in study.trials if t.datetime_start is not None]
    ends = [t.datetime_complete for t in study.trials if t.datetime_complete is not None]
    return (max(ends) - min(starts)).total_seconds() if starts and ends else float("nan")


def test_score(model: Path, cohort: Any, args: argparse.Namespace) -> dict[str, Any]:
    """The first target's headline metric on the test split (all modalities), with its CI."""
    predictor = Predictor.load(model)
    evaluation = evaluate_model(
        predictor, cohort, split="test", subsets=False, n_boot=args.n_boot, progress=False
    )
    name, target = next(iter(evaluation.targets.items()))
    metric, _ = targets.headline(target.kind)
    ci = target.subsets[0].metrics[metric]
    return {"target": name, "metric": metric, "point": ci.point, "low": ci.low, "high": ci.high}


def report(args: argparse.Namespace, spec: CohortSpec, default: dict, tuned: dict) -> None:
    test = default["test"]
    header = [
        "arm",
        f"{default['monitor']} (validation)",
        f"{test['target']} {test['metric']} (test)",
    ]
    rows = [
        [arm["arm"], f"{arm['val']:.3f}", cell(arm["test"]), f"{arm['seconds'] / 60:.1f}"]
        for arm in (default, tuned)
    ]
    lines = [
        "# polymodal tune on the demo cohort",
        "",
        f"Machine: {machine(args.threads)}; load average {args.load_start:.1f} at the start, "
        f"{load_average():.1f} at the end (a shared machine: other processes only add time).",
        f"Command: `python bench/tune_demo.py {' '.join(sys.argv[1:])}`",
        f"Cohort: {spec.name}, n = {args.n} (seed {args.seed}); {args.epochs} epochs per fit; "
        f"{args.trials} trials, TPE sampler and median pruner (the defaults), the shipped "
        "synergy space. Each arm is scored on the test split once, after the search; 95 % "
        f"patient-grouped bootstrap CIs ({args.n_boot} resamples).",
        "",
        *table([*header, "minutes"], rows, "lrrr"),
        "",
        f"Trials: {tuned['states']}. Best trial {tuned['trial']}: "
        + ", ".join(f"{k} = {_value(v)}" for k, v in tuned["params"].items())
        + ".",
    ]
    stem = RESULTS / args.name
    write_report(stem.with_suffix(".md"), lines)
    settings = {k: str(v) if isinstance(v, Path) else v for k, v in vars(args).items()}
    stem.with_suffix(".json").write_text(
        json.dumps({"settings": settings, "default": default, "tuned": tuned}, indent=2)
    )
    print("\n".join(lines))


def _value(value: Any) -> str:
    return f"{value:.3g}" if isinstance(value, float) else str(value)


def parse_args() -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--trials", type=int, default=20)
    parser.add_argument("--n", type=int, default=2000, help="demo cohort rows")
    parser.add_argument("--epochs", type=int, default=10, help="max epochs of every fit")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--n-boot", type=int, default=500)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--out", type=Path, default=REPO_ROOT / "runs" / "tune_demo")
    parser.add_argument("--name", default="tune_demo", help="stem of the result files")
    parser.add_argument(
        "--reuse",
        action="store_true",
        help="keep a finished default arm in --out; the study resumes up to --trials finished",
    )
    return parser.parse_args()


if __name__ == "__main__":
    main()
