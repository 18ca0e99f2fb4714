"""HAM10000 on a CPU: the recipes configs/ham10000_cpu_image.yaml (image only) and
configs/ham10000_cpu.yaml (image + clinical table, synergy), partial fine-tuning with cached
frozen stages.

The recipe: the packaged ImageNet EfficientNet-Lite0 (or Lite1/Lite2) at HAM10000's native
150×200 (H×W); the stem and the first ``--frozen-stages`` stages frozen, their output cached as
float16 once per image and dihedral view (the 4 views that keep a 150×200 image's shape:
identity, 180°, horizontal and vertical mirror), so an epoch runs only the last stages, the
projection and the head; each training sample gets a random one of its views (seeded). Trains
on `train`, selects the epoch on `val` balanced accuracy and reports on `val` (HAM10000's
official test part is not in ../shared/data), without and with test-time augmentation over the
same views, with 95 % bootstrap CIs resampled by lesion (polymodal's evaluate).

Usage::

    python bench/ham10000_finetune.py --quick            # 200 images, 1 epoch: does it run?
    python bench/ham10000_finetune.py                    # the image-only recipe (2 cores)
    python bench/ham10000_finetune.py --model synergy    # the fused recipe
    python bench/ham10000_finetune.py --model bottleneck # bottleneck + KD (synergy teacher) + GM
    python bench/ham10000_finetune.py --timing           # seconds per image / per step, 1 thread
    polymodal compare runs/bench_ham10000_synergy/predictions_one_view.parquet \
        runs/bench_ham10000_image/predictions_one_view.parquet \
        --name synergy --name image --own-inputs   # the paired difference, each on its inputs

Skips (exit 0) when ../shared/data/ham10000 is absent. Prints the metrics and writes
``<out>/results.json``.
"""

from __future__ import annotations

import argparse
import json
import os
import time
from pathlib import Path

import pandas as pd
import torch
import yaml

from _common import machine
from polymodal.data.manifest import load_cohort
from polymodal.data.spec import parse_spec
from polymodal.encoders import create_encoder
from polymodal.evaluation.evaluate import evaluate_model
from polymodal.predictor import Predictor
from polymodal.training.fit import fit
from polymodal.training.run_config import load_run_config

REPO_ROOT = Path(__file__).resolve().parents[1]
SPEC = REPO_ROOT / "configs" / "ham10000.yaml"
RECIPES = {
    "image": REPO_ROOT / "configs" / "ham10000_cpu_image.yaml",
    "synergy": REPO_ROOT / "configs" / "ham10000_cpu.yaml",
    "bottleneck": REPO_ROOT / "configs" / "ham10000_cpu_bottleneck.yaml",
}
DATA = REPO_ROOT.parent / "shared" / "data" / "ham10000"
IMAGE = "skin"
SIZE = (150, 200)  # HAM10000's JPEGs are 200 wide, 150 high
BACKBONES = {
    "lite0": ("efficientnet_lite0", "package:efficientnet-lite0"),
    "lite1": ("efficientnet_lite1", "package:efficientnet-lite1"),
    "lite2": ("efficientnet_lite2", "package:efficientnet-lite2"),
}


def cohort_spec(out: Path, quick: bool) -> object:
    """configs/ham10000.yaml (native 150×200 images); ``quick``: a class-stratified 200-image
    subset (147 train, 49 val) written beside the run."""
    spec = yaml.safe_load(SPEC.read_text())
    assert tuple(spec["modalities"][IMAGE]["size"]) == SIZE, "the recipe assumes native size"
    manifest = DATA / "metadata.csv"
    if quick:
        rows = pd.read_csv(manifest)
        per_class = {"train": 21, "val": 7}
        subset = pd.concat(
            rows[rows["split"] == split].groupby("dx").head(n) for split, n in per_class.items()
        )
        out.mkdir(parents=True, exist_ok=True)
        manifest = out / "metadata_quick.csv"
        subset.to_csv(manifest, index=False)
    spec["manifest"] = str(manifest)
    spec["root"] = str(DATA)  # images resolve in the data folder, wherever the subset lives
    return parse_spec(spec, base_dir=SPEC.parent, source=str(SPEC))


def recipe_overrides(args: argparse.Namespace) -> list[str]:
    """What this run changes in the recipe file (nothing, with the defaults)."""
    backbone, pretrained = BACKBONES[args.backbone]
    options = f"model.encoders.{IMAGE}.options"
    overrides = [
        f"{options}.backbone={backbone}",
        f"{options}.pretrained='{pretrained}'",
        f"{options}.freeze='stages:{args.frozen_stages}'",
        f"train.cache_dir={args.cache_dir}",
    ]
    if args.epochs is not None:
        overrides.append(f"train.max_epochs={args.epochs}")
    if args.model == "bottleneck":  # distillation needs its teacher: the fused synergy run
        overrides.append(f"distill.teacher={json.dumps(str(args.teacher))}")
    return overrides


def timing(args: argparse.Namespace) -> None:
    """Seconds per image of the frozen prefix and per training step of the suffix, 1 thread."""
    torch.set_num_threads(1)
    backbone, pretrained = BACKBONES[args.backbone]
    encoder = create_encoder(
        "image_timm",
        input_info={"kind": "image", "channels": 3, "size": list(SIZE), "views": 1},
        dim=128,
        backbone=backbone,
        pretrained=pretrained,
        freeze=f"stages:{args.frozen_stages}",
    )
    head = torch.nn.Linear(128, 7)
    images = torch.randn(args.batch_size, 3, *SIZE)
    views = torch.zeros(args.batch_size, dtype=torch.long)
    encoder._prefix(images[:2], views[:2])  # warm-up
    started = time.perf_counter()
    prefix = encoder._prefix(images, views)
    per_image = (time.perf_counter() - started) / args.batch_size
    trainable = [p for p in [*encoder.parameters(), *head.parameters()] if p.requires_grad]
    optimizer = torch.optim.AdamW(trainable, lr=1e-3)
    labels = torch.randint(7, (args.batch_size,))
    encoder.train()

    def step() -> None:
        features = run_suffix(encoder, prefix)
        loss = torch.nn.functional.cross_entropy(head(features.mean(1)), labels)
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()

    step()  # warm-up
    started = time.perf_counter()
    for _ in range(3):
        step()
    per_step = (time.perf_counter() - started) / 3
    print(
        f"{backbone} at {SIZE[0]}×{SIZE[1]}, frozen stages {args.frozen_stages}, 1 thread, "
        f"load average {os.getloadavg()[0]:.1f} on {os.cpu_count()} CPUs:\n"
        f"  frozen prefix: {per_image:.4f} s per image (batch {args.batch_size}, one view)\n"
        f"  suffix training step (batch {args.batch_size}): {per_step:.3f} s "
        f"({per_step / args.batch_size:.4f} s per image)"
    )


def run_suffix(encoder, prefix: torch.Tensor) -> torch.Tensor:
    """The trainable stages and projection on cached prefix outputs -> (B, N, D) tokens."""
    from polymodal.encoders.stages import run_modules

    features = run_modules(encoder.backbone, encoder.split.suffix, prefix.float())
    return encoder.proj(encoder._as_tokens(features))


def _relative(value: object) -> str:
    """A path inside the repository as a relative one (results hold no machine paths)."""
    if isinstance(value, Path) and value.resolve().is_relative_to(REPO_ROOT):
        return str(value.resolve().relative_to(REPO_ROOT))
    return str(value)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="200 images, 1 epoch")
    parser.add_argument("--timing", action="store_true", help="only time prefix and suffix")
    parser.add_argument("--backbone", choices=sorted(BACKBONES), default="lite0")
    parser.add_argument("--frozen-stages", type=int, default=5, help="K of freeze 'stages:K'")
    parser.add_argument("--cache-dir", type=Path, default=None, help="sample + stage cache")
    parser.add_argument("--model", choices=sorted(RECIPES), default="image", help="recipe")
    parser.add_argument(
        "--teacher",
        type=Path,
        default=None,
        help="--model bottleneck: the teacher's model folder (default: the synergy run's)",
    )
    parser.add_argument("--epochs", type=int, default=None, help="default: the recipe's")
    parser.add_argument("--batch-size", type=int, default=32, help="--timing only")
    parser.add_argument("--threads", type=int, default=2, help="torch threads")
    parser.add_argument("--n-boot", type=int, default=1000)
    parser.add_argument(
        "--resume",
        action="store_true",
        help="continue an interrupted run from <out>/run/checkpoints/last.ckpt (fit --resume)",
    )
    parser.add_argument(
        "--out", type=Path, default=None, help="default: runs/bench_ham10000_<model>"
    )
    args = parser.parse_args()
    args.out = args.out or REPO_ROOT / "runs" / f"bench_ham10000_{args.model}"
    # One cache for both recipes: the second run reads the first one's frozen-stage outputs.
    args.cache_dir = args.cache_dir or args.out.parent / "bench_ham10000_cache"
    args.teacher = args.teacher or args.out.parent / "bench_ham10000_synergy" / "run" / "model"
    if args.timing:
        timing(args)
        return
    if not DATA.is_dir():
        print(f"skipped: HAM10000 not found at {DATA}")
        return
    if args.quick:
        args.epochs, args.n_boot, args.out = 1, 50, args.out.with_name(args.out.name + "_quick")
    torch.set_num_threads(args.threads)
    started = time.perf_counter()
    spec = cohort_spec(args.out, args.quick)
    cohort = load_cohort(spec)
    run = load_run_config(RECIPES[args.model], recipe_overrides(args))
    result = fit(spec, args.out / "run", run, resume=args.resume, cohort=cohort, progress=False)
    fit_seconds = time.perf_counter() - started
    rows = {}
    for name, tta in (("one view", False), ("TTA, 4 views", True)):
        # Kept per-sample predictions: `polymodal compare` pairs the fused and image-only runs.
        kept = args.out / f"predictions_{'tta' if tta else 'one_view'}.parquet"
        evaluation = evaluate_model(
            Predictor.load(result.model_dir, tta=tta),
            cohort,
            split="val",
            subsets=False,
            n_boot=args.n_boot,
            progress=False,
            predictions_path=kept,
        )
        metrics = evaluation.targets["dx"].subsets[0].metrics
        rows[name] = {k: metrics[k] for k in ("balanced_accuracy", "auroc_macro")}
    print(
        f"HAM10000 val ({len(cohort.indices('val'))} images), {args.model}, {args.backbone} stages:"
        f"{args.frozen_stages}, {result.epochs_run} epoch(s), fit {fit_seconds / 60:.1f} min, "
        f"{machine(args.threads)}, load average {os.getloadavg()[0]:.1f}"
    )
    for name, metrics in rows.items():
        cells = ", ".join(
            f"{k} {ci.point:.3f} ({ci.low:.3f}–{ci.high:.3f})" for k, ci in metrics.items()
        )
        print(f"  {name}: {cells}")
    summary = {
        "args": {k: _relative(v) for k, v in vars(args).items()},
        "epochs_run": result.epochs_run,
        "fit_seconds": fit_seconds,
        "metrics": {
            name: {k: [ci.point, ci.low, ci.high] for k, ci in m.items()}
            for name, m in rows.items()
        },
    }
    (args.out / "results.json").write_text(json.dumps(summary, indent=2))


if __name__ == "__main__":
    main()
