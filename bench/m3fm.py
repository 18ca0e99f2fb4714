"""M3FM benchmarks (issue 6): multitask vs single-task, few-shot adaptation, AdrenalMNIST3D,
volume throughput.

Parts (run one at a time; each writes ``bench/results/m3fm_<part>.{md,json}``)::

    python bench/m3fm.py multitask  [--n 1200] [--epochs 20]   # one prompted model, 5 tasks,
                                                               # vs one model per task
    python bench/m3fm.py adapt      [--n 1200] [--shots 25,50,100,200]
    python bench/m3fm.py adrenal    [--epochs 30]               # real 3D, MedMNIST split
    python bench/m3fm.py throughput                             # volumes/s, tokenizer + encoder

The multitask and adapt parts use the multitask demo cohort (``polymodal demo-data
--multitask``: a 32³ CT-like volume, labs, clinical text from the tabular columns and a note;
five tasks of five kinds). Every model there has the same encoders and the ``prompted`` core
with the sentence prompt encoder; a single-task model is the same model with one target. The
adaptation part holds ``lung_rads`` out: a model trained on the four other tasks is adapted
(``polymodal adapt``, encoders frozen) to it from k labelled training rows, against the same
model trained from scratch on the same k rows; both select on the same 60 labelled validation
rows and are scored on the whole test split.
"""

from __future__ import annotations

import argparse
import json
import os
import time
from pathlib import Path

import numpy as np
import pandas as pd
import torch
import yaml

from _common import cell, machine, table, table_row, write_report
from polymodal.data.manifest import load_cohort
from polymodal.data.spec import load_spec
from polymodal.evaluation.evaluate import evaluate_model
from polymodal.predictor import Predictor
from polymodal.training.adapt import adapt
from polymodal.training.fit import fit
from polymodal.training.run_config import RunConfig, load_run_config

REPO_ROOT = Path(__file__).resolve().parents[1]
RESULTS = REPO_ROOT / "bench" / "results"
RUNS = Path(os.environ.get("POLYMODAL_BENCH_RUNS", REPO_ROOT / "runs")) / "bench_m3fm"
# Main metric per task of the multitask demo cohort, and a second one.
TASK_METRICS = {
    "lung_cancer": ("c_index", "auroc_mean"),
    "cardiac": ("auroc", "auprc"),
    "lung_rads": ("auroc_macro", "balanced_accuracy"),
    "fev1": ("r2", "rmse"),
    "pack_years": ("exact_match", "mae"),
}
MODEL = [
    "model.core=prompted",
    "model.dim=64",
    "model.core_options={depth: 2, num_registers: 3, prompt_encoder: sentence}",
    "model.encoders.ct={name: volume_monai, options: {network_options: "
    "{init_features: 8, growth_rate: 8, block_config: [2, 2]}}}",
    "model.encoders.clinical={options: {depth: 1}}",
    "model.encoders.note={options: {depth: 1}}",
    "model.modality_dropout=0.1",
]


def machine_line(started: float) -> str:
    minutes = (time.perf_counter() - started) / 60
    return f"Machine: {machine()} (shared); total {minutes:.1f} min."


def train_config(epochs: int, patience: int, seed: int, cache: Path, extra=()):
    return load_run_config(
        None,
        [
            *MODEL,
            f"train.max_epochs={epochs}",
            f"train.early_stopping_patience={patience}",
            "train.monitor=val/loss",
            "train.batch_size=32",
            "train.lr=2e-3",
            f"train.seed={seed}",
            f"train.cache_dir={cache}",
            *extra,
        ],
    )


def multitask_cohort(n: int, seed: int) -> Path:
    from polymodal.datasets.demo_multitask import make_multitask_cohort

    folder = RUNS / f"cohort_n{n}_s{seed}"
    spec = folder / "spec.yaml"
    return spec if spec.is_file() else make_multitask_cohort(folder, n=n, seed=seed)


def spec_variant(
    spec_path: Path, name: str, targets: list[str], manifest: str | None = None
) -> Path:
    """A spec beside ``spec_path`` (same relative paths) with only ``targets`` (and a manifest)."""
    data = yaml.safe_load(spec_path.read_text())
    data["targets"] = {t: data["targets"][t] for t in targets}
    if manifest is not None:
        data["manifest"] = manifest
    data["name"] = f"{data['name']}-{name}"
    out = spec_path.parent / f"spec_{name}.yaml"
    out.write_text(yaml.safe_dump(data, sort_keys=False))
    return out


def score(model_dir: Path, spec_path: Path, n_boot: int, seed: int, split: str = "test"):
    cohort = load_cohort(load_spec(spec_path))
    return evaluate_model(
        Predictor.load(model_dir),
        cohort,
        split=split,
        subsets=False,
        n_boot=n_boot,
        seed=seed,
        progress=False,
    )


def part_multitask(args) -> None:
    started = time.perf_counter()
    spec_path = multitask_cohort(args.n, args.seed)
    tasks = list(TASK_METRICS)
    cache = RUNS / "sample_cache"
    runs: dict[str, dict] = {}
    for name, targets in [("multitask", tasks), *((f"single {t}", [t]) for t in tasks)]:
        variant = spec_variant(spec_path, name.replace(" ", "_"), targets)
        multitask = len(targets) > 1
        extra = ["train.sampling=tasks_sqrt"] if multitask else []
        patience = args.multitask_patience if multitask else args.patience
        run = train_config(args.epochs, patience, args.seed, cache, extra)
        run_dir = RUNS / name.replace(" ", "_")
        t0 = time.perf_counter()
        if name in args.reuse.split(",") and (run_dir / "model" / "config.json").is_file():
            # Fitted by an earlier run of this command with the same settings: score it again.
            model_dir = run_dir / "model"
            metrics = pd.read_csv(run_dir / "logs" / "metrics.csv")
            epochs = int(metrics["epoch"].max()) + 1
        else:
            print(f"[{(time.perf_counter() - started) / 60:5.1f} min] fitting {name}", flush=True)
            result = fit(
                load_spec(variant),
                run_dir,
                run,
                progress=False,
            )
            model_dir, epochs = result.model_dir, result.epochs_run
        evaluation = score(model_dir, spec_path if multitask else variant, args.n_boot, args.seed)
        runs[name] = {
            "epochs": epochs,
            "minutes": (time.perf_counter() - t0) / 60,
            "evaluation": evaluation,
        }
    lines = [
        "# M3FM: one prompted multitask model vs one model per task",
        "",
        f"Command: `python bench/m3fm.py multitask --n {args.n} --epochs {args.epochs} "
        f"--patience {args.patience} --multitask-patience {args.multitask_patience} "
        f"--n-boot {args.n_boot}`"
        + (f" (models reused from the previous run: {args.reuse})" if args.reuse else ""),
        "",
        machine_line(started) + f" Multitask demo cohort, n = {args.n}, seed {args.seed}; test "
        f"split, 95 % CIs from {args.n_boot} bootstrap resamples of patients. Same encoders, "
        "prompted core (depth 2, 3 registers, sentence prompt encoder) for every model; the "
        "multitask model samples tasks by the square-root rule; selection on val/loss.",
        "",
        *table(["task", "metric", "multitask", "single-task"], align="llrr"),
    ]
    for task, metrics in TASK_METRICS.items():
        multi = runs["multitask"]["evaluation"].targets[task].subsets[0].metrics
        single = runs[f"single {task}"]["evaluation"].targets[task].subsets[0].metrics
        for metric in metrics:
            lines.append(
                table_row([task, metric, cell(multi.get(metric)), cell(single.get(metric))])
            )
    timing = [(k, v["epochs"], f"{v['minutes']:.1f}") for k, v in runs.items()]
    lines += ["", *table(["model", "epochs", "fit + evaluation, min"], timing, align="lrr")]
    write(
        "m3fm_multitask", lines, {k: json.loads(v["evaluation"].to_json()) for k, v in runs.items()}
    )


def part_adapt(args) -> None:
    started = time.perf_counter()
    spec_path = multitask_cohort(args.n, args.seed)
    cache = RUNS / "sample_cache"
    held_out = "lung_rads"
    others = [t for t in TASK_METRICS if t != held_out]
    base_spec = spec_variant(spec_path, "without_lung_rads", others)
    run = train_config(
        args.epochs, args.multitask_patience, args.seed, cache, ["train.sampling=tasks_sqrt"]
    )
    base_dir = RUNS / "adapt_base"
    if not (base_dir / "model" / "config.json").is_file():
        print("fitting the base model on the four other tasks", flush=True)
        fit(
            load_spec(base_spec),
            base_dir,
            run,
            progress=False,
        )

    manifest = pd.read_csv(spec_path.parent / "manifest.csv", dtype=str, keep_default_na=False)
    labelled = manifest[manifest["lung_rads"] != ""]
    val_rows = labelled[labelled["split"] == "val"].head(60)
    test_rows = manifest[manifest["split"] == "test"]
    hows = [f"adapt ({t})" for t in args.adapt_train.split(",")] + ["scratch"]
    shots = [int(s) for s in args.shots.split(",")]
    # curve[repeat][k][how] = {metric: CI}. Repeat r draws its own k training rows and
    # initialisation (seed + r); the base model, validation and test rows are shared.
    curve: list[dict[int, dict[str, dict]]] = []
    for repeat in range(args.repeats):
        seed = args.seed + repeat
        rng = np.random.default_rng(seed)
        train_rows = labelled[labelled["split"] == "train"].sample(
            frac=1.0, random_state=rng.integers(1 << 31)
        )
        curve.append({})
        for k in shots:
            subset = pd.concat([train_rows.head(k), val_rows, test_rows])
            tag = f"{k}" + (f"_r{repeat}" if repeat else "")
            name = f"manifest_lung_rads_{tag}.csv"
            subset.to_csv(spec_path.parent / name, index=False)
            few_spec = load_spec(
                spec_variant(spec_path, f"lung_rads_{tag}", [held_out], manifest=name)
            )
            cohort = load_cohort(few_spec)
            few = train_config(args.epochs, args.patience, seed, cache, ["train.batch_size=16"])
            curve[repeat][k] = {}
            for how in hows:
                trainable = how[len("adapt (") : -1] if how.startswith("adapt") else None
                slug = {"core": "adapt", None: "scratch"}.get(trainable, f"adapt_{trainable}")
                out = RUNS / (f"adapt_{k}_{slug}" + (f"_r{repeat}" if repeat else ""))
                clock = f"[{(time.perf_counter() - started) / 60:5.1f} min]"
                if args.reuse and (out / "model" / "config.json").is_file():
                    model_dir = out / "model"  # fitted by an earlier run with the same settings
                elif trainable is not None:
                    print(f"{clock} repeat {repeat} k={k} {how}", flush=True)
                    model_dir = adapt(
                        base_dir / "model",
                        few_spec,
                        out,
                        # The trained model's architecture; this run's training settings.
                        RunConfig(train=few.train),
                        train=trainable,
                        cohort=cohort,
                        progress=False,
                    )[0].model_dir
                else:
                    print(f"{clock} repeat {repeat} k={k} {how}", flush=True)
                    model_dir = fit(
                        few_spec,
                        out,
                        few,
                        cohort=cohort,
                        progress=False,
                    ).model_dir
                evaluation = evaluate_model(
                    Predictor.load(model_dir),
                    cohort,
                    split="test",
                    subsets=False,
                    n_boot=args.n_boot,
                    seed=args.seed,
                    progress=False,
                )
                curve[repeat][k][how] = {
                    m: evaluation.targets[held_out].subsets[0].metrics[m]
                    for m in TASK_METRICS[held_out]
                }
    lines = [
        "# M3FM: adapting to a new task from few labelled samples",
        "",
        f"Command: `python bench/m3fm.py adapt --n {args.n} --epochs {args.epochs} --patience "
        f"{args.patience} --n-boot {args.n_boot} --shots {args.shots} --adapt-train "
        f"{args.adapt_train} --repeats {args.repeats}"
        + (f" --reuse {args.reuse}`" if args.reuse else "`"),
        "",
        machine_line(started) + f" New task `{held_out}` (Lung-RADS-like category 1-4 from the "
        "nodule size in mm); base model trained on the four other tasks of the multitask demo "
        "cohort; `adapt (core)` trains the core and a new head with the encoders frozen, "
        "`adapt (all)` every weight from the trained ones; `scratch` is the same architecture "
        "from random weights. All select on the same 60 labelled validation rows and are "
        f"scored on the test split. Repeat r (of {args.repeats}) draws its own labelled rows "
        "and initial weights (seed + r).",
        "",
        f"## Macro AUROC, mean (SD) over {args.repeats} repeats",
        "",
        *table(
            ["labelled rows", *hows, "repeats where adapt (all) > scratch"],
            align="r" * (len(hows) + 2),
        ),
    ]
    points = {
        (k, how): [curve[r][k][how]["auroc_macro"].point for r in range(args.repeats)]
        for k in shots
        for how in hows
    }
    for k in shots:
        cells = [
            f"{np.mean(points[k, h]):.3f} ({np.std(points[k, h], ddof=1) if args.repeats > 1 else 0:.3f})"
            for h in hows
        ]
        wins = "n/a"
        if "adapt (all)" in hows:
            better = sum(
                a > b for a, b in zip(points[k, "adapt (all)"], points[k, "scratch"], strict=True)
            )
            wins = f"{better} / {args.repeats}"
        lines.append(table_row([k, *cells, wins]))
    lines += [
        "",
        f"## Each repeat: macro AUROC and balanced accuracy with 95 % CIs ({args.n_boot} "
        "resamples)",
        "",
        *table(
            [
                "repeat",
                "labelled rows",
                *(f"{h} macro AUROC" for h in hows),
                *(f"{h} bal. acc." for h in hows),
            ],
            align="r" * (2 * len(hows) + 2),
        ),
    ]
    for repeat, by_k in enumerate(curve):
        for k, row in by_k.items():
            cells = [cell(row[h]["auroc_macro"]) for h in hows]
            cells += [cell(row[h]["balanced_accuracy"]) for h in hows]
            lines.append(table_row([repeat, k, *cells]))
    write(
        "m3fm_adapt",
        lines,
        [
            {
                k: {h: {m: list(c) for m, c in v.items()} for h, v in row.items()}
                for k, row in by_k.items()
            }
            for by_k in curve
        ],
    )


def part_adrenal(args) -> None:
    from polymodal.datasets.prepare import prepare_adrenalmnist3d

    started = time.perf_counter()
    archive = REPO_ROOT.parent / "shared" / "data" / "adrenalmnist3d" / "adrenalmnist3d.npz"
    folder = RUNS / "adrenal"
    spec_path = folder / "spec.yaml"
    if not spec_path.is_file():
        prepare_adrenalmnist3d(archive, folder)
    run = load_run_config(
        None,
        [
            "model.core=prompted",
            "model.dim=64",
            "model.core_options={depth: 2, num_registers: 3}",
            "model.encoders.adrenal={name: volume_monai, options: {network_options: "
            "{init_features: 8, growth_rate: 8, block_config: [2, 2]}}}",
            f"train.max_epochs={args.epochs}",
            f"train.early_stopping_patience={args.patience}",
            "train.batch_size=32",
            "train.lr=1e-3",
            f"train.seed={args.seed}",
        ],
    )
    result = fit(
        load_spec(spec_path),
        RUNS / "adrenal_run",
        run,
        progress=False,
    )
    evaluation = score(result.model_dir, spec_path, args.n_boot, args.seed)
    metrics = evaluation.targets["hyperplasia"].subsets[0].metrics
    lines = [
        "# AdrenalMNIST3D (real 3D): prompted core over a small 3D DenseNet",
        "",
        f"Command: `python bench/m3fm.py adrenal --epochs {args.epochs} --patience {args.patience} "
        f"--n-boot {args.n_boot}`",
        "",
        machine_line(started) + " MedMNIST v2 official split (1,188 train / 98 val / 298 test, "
        f"28³ padded to 32³); selection on val AUROC; {result.epochs_run} epochs. MedMNIST v2 reports ResNet "
        "baselines around 0.83-0.87 test AUROC for reference.",
        "",
        *table(
            ["metric", "test"],
            [(m, cell(metrics.get(m))) for m in ("auroc", "auprc", "balanced_accuracy")],
            align="lr",
        ),
    ]
    write("m3fm_adrenal", lines, json.loads(evaluation.to_json()))


def part_throughput(args) -> None:
    from polymodal.encoders import create_encoder

    torch.manual_seed(0)
    started = time.perf_counter()
    scales = [
        {"size": [32, 32, 32], "patch": [8, 8, 8]},
        {"size": [16, 64, 64], "patch": [4, 16, 16]},
        {"size": [64, 128, 128], "patch": [8, 16, 16]},
    ]
    lines = [
        "# Volumes per second through the M3FM tokenizer and encoder (CPU)",
        "",
        "Command: `python bench/m3fm.py throughput`",
        "",
        "`volume_multiscale`, D = 128, depth 2, 4 heads, inference (no grad), batch 4, "
        "median of 5 timed batches after 2 warm-up batches; the same encoder serves every scale.",
        "",
        *table(["crop (D×H×W)", "patch", "tokens", "volumes / s"], align="llrr"),
    ]
    encoder = create_encoder(
        "volume_multiscale",
        input_info={"kind": "volume", "size": None},
        dim=128,
        scales=scales,
        depth=2,
    ).eval()
    rows = {}
    for scale in scales:
        batch = {
            "voxels": torch.randn(4, 1, *scale["size"]),
            "spacing": torch.tensor([[2.0, 0.7, 0.7]]).expand(4, -1),
        }
        times = []
        with torch.no_grad():
            for i in range(7):
                t0 = time.perf_counter()
                tokens, _ = encoder(batch)
                if i >= 2:
                    times.append(time.perf_counter() - t0)
        rate = 4 / float(np.median(times))
        size = "×".join(map(str, scale["size"]))
        rows[size] = rate
        patch = "×".join(map(str, scale["patch"]))
        lines.append(table_row([size, patch, tokens.shape[1], f"{rate:.1f}"]))
    lines.append("")
    lines.append(machine_line(started))
    write("m3fm_throughput", lines, rows)


def write(stem: str, lines: list[str], data) -> None:
    print(write_report(RESULTS / f"{stem}.md", lines), end="")
    (RESULTS / f"{stem}.json").write_text(json.dumps(data, indent=1, default=str))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("part", choices=("multitask", "adapt", "adrenal", "throughput"))
    parser.add_argument("--n", type=int, default=1200)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--epochs", type=int, default=20)
    parser.add_argument("--patience", type=int, default=5)
    parser.add_argument("--n-boot", type=int, default=500)
    parser.add_argument("--shots", default="25,50,100,200")
    parser.add_argument(
        "--multitask-patience",
        type=int,
        default=8,
        help="early-stopping patience of the multitask models (their val/loss averages the "
        "tasks' losses and moves more from epoch to epoch)",
    )
    parser.add_argument(
        "--reuse",
        default="",
        help="multitask part: comma-separated models to score, not refit; adapt part: any "
        "value reuses the fitted few-shot runs",
    )
    parser.add_argument(
        "--adapt-train", default="core", help="adapt part: comma-separated --train choices"
    )
    parser.add_argument(
        "--repeats",
        type=int,
        default=1,
        help="adapt part: repeat the curve with other labelled rows and seeds (seed + r)",
    )
    args = parser.parse_args()
    torch.set_num_threads(2)
    {
        "multitask": part_multitask,
        "adapt": part_adapt,
        "adrenal": part_adrenal,
        "throughput": part_throughput,
    }[args.part](args)


if __name__ == "__main__":
    main()
