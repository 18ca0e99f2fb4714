"""Train a ViT on HAM10000's training images alone and export its backbone weights.

No public foundation ViT ships in a package (``../shared/data/README.md``), and nothing can be
downloaded at run time, so the Early Intervention benchmark on HAM10000 (``bench/ei.py train
--cohort ham10000 --backbone-weights ...``) gets its frozen backbone from here: a timm ViT
trained end to end by polymodal on the dermoscopy image alone (train split, 7-class ``dx``,
flips/rotations, early stopping on validation macro AUROC). The result is an in-domain
stand-in for a foundation model: it tests whether a reference modality steering a frozen,
already competent image model helps, not whether EI transfers general-purpose pretraining.

The val split serves for early stopping here and for reporting in ``bench/ei.py`` (the official
HAM10000 test images are not in ``../shared/data``); the training rows are the same in both.

Writes ``<out>/vit.safetensors`` (timm state dict, no classifier), the model folder, and
``bench/results/pretrain_vit_ham10000.{md,json}`` with the image-only model's val metrics.

Usage::

    python bench/pretrain_vit.py --out runs/ham_vit --image-size 64 --epochs 60
"""

from __future__ import annotations

import argparse
import json
import shlex
import sys
import time
from pathlib import Path

import yaml
from safetensors.torch import save_file

from _common import cell, machine, table, write_report

REPO = Path(__file__).resolve().parents[1]
RESULTS = REPO / "bench" / "results"
# A ViT-S shape with 8-pixel patches and 6 blocks: 64 tokens at 64 px, trainable from scratch
# on 6,400 images (a 12-block ViT-B does not train well on so few).
DEFAULT_VIT_OPTIONS = {"patch_size": 8, "embed_dim": 384, "depth": 6, "num_heads": 6}


def ham_spec(image_size: int):
    from polymodal.data.spec import parse_spec

    path = REPO / "configs" / "ham10000.yaml"
    data = yaml.safe_load(path.read_text())
    manifest = (path.parent / data["manifest"]).resolve()
    if not manifest.is_file():
        raise SystemExit(f"{manifest} not found: HAM10000 lives in ../shared/data beside the repo")
    data["modalities"]["skin"].update(size=[image_size, image_size], augment=True)
    return parse_spec(data, base_dir=path.parent, source=str(path))


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--out", type=Path, required=True)
    parser.add_argument("--image-size", type=int, default=64)
    parser.add_argument("--vit", default="vit_small_patch16_224")
    parser.add_argument("--vit-options", default=json.dumps(DEFAULT_VIT_OPTIONS))
    parser.add_argument("--epochs", type=int, default=60)
    parser.add_argument("--patience", type=int, default=12)
    parser.add_argument("--batch", type=int, default=128)
    parser.add_argument("--lr", type=float, default=5e-4)
    parser.add_argument("--workers", type=int, default=4)
    parser.add_argument("--precision", default="32", choices=["32", "16-mixed", "bf16-mixed"])
    parser.add_argument("--n-boot", type=int, default=1000)
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args(argv)

    from polymodal.data.manifest import load_cohort
    from polymodal.evaluation.evaluate import evaluate_model
    from polymodal.model_folder import load_model_folder
    from polymodal.predictor import Predictor
    from polymodal.training.fit import fit
    from polymodal.training.run_config import RunConfig

    spec = ham_spec(args.image_size)
    cohort = load_cohort(spec)
    vit_options = {"img_size": args.image_size, **json.loads(args.vit_options)}
    run = RunConfig.model_validate(
        {
            "model": {
                "core": "single",
                "dim": 128,
                "modalities": ["skin"],
                "core_options": {"modality": "skin"},
                "encoders": {
                    "skin": {
                        "name": "image_timm",
                        "options": {"backbone": args.vit, "backbone_options": vit_options},
                    }
                },
            },
            "train": {
                "lr": args.lr,
                "weight_decay": 0.05,
                "warmup_epochs": 3,
                "batch_size": args.batch,
                "max_epochs": args.epochs,
                "early_stopping_patience": args.patience,
                "monitor": "val/dx/auroc_macro",
                "num_workers": args.workers,
                "precision": args.precision,
                "cache_dir": str(args.out / "cache"),
                "seed": args.seed,
            },
        }
    )
    started = time.perf_counter()
    result = fit(
        spec,
        args.out / "run",
        run,
        cohort=cohort,
        progress=False,
    )
    seconds = time.perf_counter() - started
    model = load_model_folder(result.model_dir).model
    backbone = model.encoders["skin"].backbone
    weights = args.out / "vit.safetensors"
    save_file({k: v.contiguous() for k, v in backbone.state_dict().items()}, str(weights))
    evaluation = evaluate_model(
        Predictor.load(result.model_dir),
        cohort,
        split="val",
        subsets=False,
        n_boot=args.n_boot,
        progress=False,
    )
    subset = evaluation.targets["dx"].subsets[0]
    metrics = {
        k: [subset.metrics[k].point, subset.metrics[k].low, subset.metrics[k].high]
        for k in ("balanced_accuracy", "auroc_macro")
    }
    row = {
        "vit": args.vit,
        "vit_options": vit_options,
        "epochs": result.epochs_run,
        "fit_seconds": seconds,
        "metrics": metrics,
        "weights": str(weights),
        "parameters": sum(p.numel() for p in backbone.parameters()),
    }
    command = "python bench/pretrain_vit.py " + shlex.join(
        argv if argv is not None else sys.argv[1:]
    )
    lines = [
        "# A ViT trained on HAM10000's training images alone (the EI benchmark's backbone)",
        "",
        f"Command: `{command}`",
        "",
        f"Machine: {machine()}. {result.epochs_run} epochs in {seconds / 60:.1f} min.",
        "",
        f"`{args.vit}` with {vit_options}: {row['parameters']:,} parameters, trained from random "
        f"weights on the skin image alone (train split, flips/rotations), AdamW lr {args.lr}, "
        f"batch {args.batch}, early stopping on val macro AUROC (patience {args.patience}).",
        "",
        *table(
            ["split", "balanced accuracy", "macro AUROC"],
            [("val", cell(metrics["balanced_accuracy"]), cell(metrics["auroc_macro"]))],
            align="lrr",
        ),
    ]
    text = write_report(RESULTS / "pretrain_vit_ham10000.md", lines)
    (RESULTS / "pretrain_vit_ham10000.json").write_text(json.dumps(row, indent=2) + "\n")
    print(text, end="", flush=True)


if __name__ == "__main__":
    main()
