"""Early Intervention benchmarks: shared frozen weights vs copies; EI + MoR vs baselines.

``memory``: the ``intervention`` core with M = 2 and 3 image modalities, its 2·M passes run
through one shared frozen ViT (polymodal's layout) or through 2·M deep copies of it, each with
its own adapter set (the official code's layout). For each: parameter bytes (unique storages),
trainable and frozen parameter counts, resident memory after building, and the peak of one
forward + backward pass at a fixed batch, each configuration in a fresh process (CPU: the
kernel's peak-RSS mark, as in ``bench/scaling.py``; CUDA: ``max_memory_allocated``).

``train``: on the two-image demo cohort (``polymodal demo-data --two-view``, target
``lesion_type`` = shape in the overview × colour in the close-up), the configs of
``configs/ei`` with a small ViT trained from scratch (no pretrained ViT ships in a package):
EI + MoR (paper recipe: SGD, cyclic lr; and AdamW), late fusion of two MoR-adapted ViTs, and
each image alone (MoR, and full fine-tuning of the overview). Test-split balanced accuracy and
macro AUROC with 95 % bootstrap CIs (polymodal's evaluation), time per epoch, peak RSS, trainable
parameters; each model in a fresh process. ``--cohort ham10000`` runs the same models on
HAM10000 (``configs/ham10000.yaml``: the dermoscopy image is the target, the clinical table its
reference; reported on ``val``).

With a random-init ViT frozen under adapters this measures the machinery (what trains, what it
costs, whether the routing works), not the effect of a foundation model; give a local weights
file with ``--backbone-weights`` (and the matching ``--backbone``/``--vit``) for that.

Usage::

    python bench/ei.py memory                    # ViT-B/16 at 64 px, batch 8, CPU
    python bench/ei.py train --quick             # a few minutes on 2 CPU threads
    python bench/ei.py train                     # the full demo run (~15 CPU-minutes)
    python bench/ei.py train --cohort ham10000 --image-size 64 --epochs 20

Writes ``bench/results/ei_memory[_cuda].{md,json}`` and ``bench/results/ei_<cohort>[_pretrained][_quick].{md,json}``.
"""

from __future__ import annotations

import argparse
import gc
import json
import shlex
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import timm
import torch
import yaml
from torch import nn

from _common import cell, device_name, load_average, machine, table, table_row, write_report
from polymodal.adapters import MoRConfig, freeze_except_adapters, inject_adapters, list_adapters
from polymodal.fusion import create_core
from polymodal.layers.vit_insertion import ViTWithInsertion
from scaling import current_rss, measure_peak_memory

REPO = Path(__file__).resolve().parents[1]
RESULTS = REPO / "bench" / "results"
EI_CONFIGS = REPO / "configs" / "ei"
# The demo cohort's image modalities, as the configs name them.
CONFIG_IMAGES = ("lesion", "closeup")
# name -> (config, index in CONFIG_IMAGES of the image a single-image model reads).
MODELS: dict[str, tuple[str, int]] = {
    "EI + MoR (SGD, cyclic lr)": ("ei_mor", 0),
    "EI + MoR (AdamW)": ("ei_mor_adamw", 0),
    "late fusion (MoR per image)": ("late_fusion", 0),
    "overview alone (MoR)": ("mor", 0),
    "close-up alone (MoR)": ("mor", 1),
    "overview alone (full fine-tuning)": ("full_finetune", 0),
}
# HAM10000 has one image (skin) and the clinical table.
HAM_MODELS: dict[str, tuple[str, int]] = {
    "EI + MoR (SGD, cyclic lr)": ("ei_mor", 0),
    "EI + MoR (AdamW)": ("ei_mor_adamw", 0),
    "late fusion (MoR image + table)": ("late_fusion", 0),
    "image alone (MoR)": ("mor", 0),
    "image alone (LoRA)": ("lora", 0),
    "image alone (linear probe)": ("linear_probe", 0),
    "image alone (full fine-tuning)": ("full_finetune", 0),
}
# The small ViT trained from scratch: 4 blocks of width 96, 8-pixel patches.
SMALL_VIT = {"patch_size": 8, "embed_dim": 96, "depth": 4, "num_heads": 3}


# --------------------------------------------------------------------------------------------
# (a) memory: one shared frozen ViT vs 2·M copies
# --------------------------------------------------------------------------------------------


class PassCopies(nn.Module):
    """Stands in for an ``intervention`` core's shared ViT with one copy of it per pass.

    Each copy carries only its own adapter set, so ``set_active_adapter(core.backbone, name)``
    activates exactly one copy and ``forward_views`` runs on that one: the core's own forward,
    with the official code's 2·M backbones instead of one.
    """

    def __init__(self, names: list[str], backbone: str, options: dict[str, Any]) -> None:
        super().__init__()
        self.copies = nn.ModuleDict()
        for name in names:
            replica = ViTWithInsertion(
                timm.create_model(backbone, pretrained=False, num_classes=0, **options)
            )
            inject_adapters(replica, MoRConfig(), adapter_name=name)
            freeze_except_adapters(replica)
            self.copies[name] = replica
        first = next(iter(self.copies.values()))
        self.embed_dim = first.embed_dim
        self.num_prefix_tokens = first.num_prefix_tokens

    @property
    def vit(self) -> nn.Module:
        return next(iter(self.copies.values())).vit

    def forward_views(self, *args: Any, **kwargs: Any) -> dict[str, torch.Tensor]:
        for name, replica in self.copies.items():
            if replica.vit.blocks[0].mlp.fc1.active_adapter == name:
                return replica.forward_views(*args, **kwargs)
        raise RuntimeError("no adapter set is active")


def unique_parameter_bytes(module: nn.Module) -> int:
    """Bytes of the distinct storages behind ``module``'s parameters (shared ones once)."""
    storages = {}
    for parameter in module.parameters():
        storage = parameter.untyped_storage()
        storages[storage.data_ptr()] = storage.nbytes()
    return sum(storages.values())


def memory_worker(args: argparse.Namespace) -> dict:
    """One (M, layout) in this process: build, then one forward + backward at ``args.batch``."""
    torch.set_num_threads(args.threads)
    n_images, layout = int(args.memory_worker[0]), args.memory_worker[1]
    device = torch.device(args.device)
    options = {"img_size": args.img_size}
    torch.manual_seed(0)
    rss_start = current_rss()
    modalities = {f"image_{i}": "image" for i in range(n_images)}
    core = create_core(
        "intervention",
        modalities=modalities,
        dim=args.dim,
        backbone=args.backbone,
        backbone_options=options,
    )
    if layout == "copies":
        names = list_adapters(core.backbone)
        core.backbone = nn.Identity()  # the shared weights go before the copies come
        gc.collect()
        core.backbone = PassCopies(names, args.backbone, options)
    core = core.to(device).train()
    rss_built = current_rss()
    g = torch.Generator().manual_seed(1)
    tokens = {
        m: torch.randn(args.batch, 1, 3, args.img_size, args.img_size, generator=g).to(device)
        for m in modalities
    }
    masks = {m: torch.ones(args.batch, 1, dtype=torch.bool, device=device) for m in modalities}
    available = {m: torch.ones(args.batch, dtype=torch.bool, device=device) for m in modalities}

    def step() -> None:
        core.zero_grad(set_to_none=True)
        core(tokens, masks, available).square().mean().backward()  # (B, D) -> scalar

    step()  # warm-up: thread pools and allocator caches
    if device.type == "cuda":
        torch.cuda.synchronize()
    started = time.perf_counter()
    step()
    if device.type == "cuda":
        torch.cuda.synchronize()
    seconds = time.perf_counter() - started
    growth = measure_peak_memory(step, device)
    frozen = sum(p.numel() for p in core.parameters() if not p.requires_grad)
    trainable = sum(p.numel() for p in core.parameters() if p.requires_grad)
    resident = torch.cuda.memory_allocated() if device.type == "cuda" else current_rss()
    return {
        "images": n_images,
        "layout": layout,
        "parameter_bytes": unique_parameter_bytes(core),
        "frozen_parameters": frozen,
        "trainable_parameters": trainable,
        "rss_model_bytes": rss_built - rss_start,
        "resident_bytes": resident,
        "step_growth_bytes": growth,
        "step_peak_bytes": resident + growth,
        "step_seconds": seconds,
    }


def run_memory(args: argparse.Namespace) -> None:
    rows = []
    for n_images in (2, 3):
        for layout in ("shared", "copies"):
            command = [
                sys.executable,
                str(Path(__file__).resolve()),
                "memory",
                "--memory-worker",
                str(n_images),
                layout,
                *passthrough(args, ("backbone", "img_size", "batch", "dim", "threads", "device")),
            ]
            print(f"M={n_images} {layout}", flush=True)
            done = subprocess.run(command, capture_output=True, text=True, check=False)
            if done.returncode != 0:
                raise SystemExit(done.stderr[-3000:])
            rows.append(json.loads(done.stdout.strip().splitlines()[-1]))
            print(rows[-1], flush=True)
    write_memory_report(args, rows)


def write_memory_report(args: argparse.Namespace, rows: list[dict]) -> None:
    mib = 2**20
    where = "CUDA allocated" if args.device == "cuda" else "process RSS"
    lines = [
        "# Early Intervention: one shared frozen ViT vs 2·M copies",
        "",
        f"Command: `python bench/ei.py memory --backbone {args.backbone} --img-size {args.img_size} "
        f"--batch {args.batch} --device {args.device} --threads {args.threads}`",
        "",
        f"Machine: {machine(args.threads)}; load average "
        f"{load_average():.1f}. The `intervention` core with M image modalities "
        f"({args.backbone}, {args.img_size}×{args.img_size} images, one view each, MoR adapters "
        f"2/4/8 on mlp.fc1/fc2), all 2·M passes (reference + target per image), batch "
        f"{args.batch}, one forward + backward; each configuration in a fresh process. "
        "`copies`: every pass has its own deep copy of the frozen ViT carrying only its adapter "
        "set (the official code's layout), run by the same core code.",
        "",
        *table(
            [
                "M",
                "layout",
                "parameters (MiB)",
                "frozen parameters",
                "trainable parameters",
                "model build, RSS growth (MiB)",
                f"{where} after build (MiB)",
                "peak during fwd+bwd (MiB)",
                "fwd+bwd (s)",
            ],
            align="rlrrrrrrr",
        ),
    ]
    for row in rows:
        lines.append(
            table_row(
                [
                    row["images"],
                    row["layout"],
                    f"{row['parameter_bytes'] / mib:,.0f}",
                    f"{row['frozen_parameters']:,}",
                    f"{row['trainable_parameters']:,}",
                    f"{row['rss_model_bytes'] / mib:,.0f}",
                    f"{row['resident_bytes'] / mib:,.0f}",
                    f"{row['step_peak_bytes'] / mib:,.0f}",
                    f"{row['step_seconds']:.2f}",
                ]
            )
        )
    lines.append("")
    for n_images in (2, 3):
        shared, copies = (
            next(r for r in rows if r["images"] == n_images and r["layout"] == layout)
            for layout in ("shared", "copies")
        )
        lines.append(
            f"- M = {n_images}: copies hold {copies['parameter_bytes'] / shared['parameter_bytes']:.1f}× "
            f"the parameter bytes ({(copies['parameter_bytes'] - shared['parameter_bytes']) / mib:,.0f} "
            f"MiB more) and peak at {copies['step_peak_bytes'] / shared['step_peak_bytes']:.2f}× "
            "the shared layout's memory during a training step."
        )
    stem = "ei_memory_cuda" if args.device == "cuda" else "ei_memory"
    print(write_report(RESULTS / f"{stem}.md", lines), end="")
    (RESULTS / f"{stem}.json").write_text(json.dumps(rows, indent=2) + "\n")


def passthrough(args: argparse.Namespace, names: tuple[str, ...]) -> list[str]:
    """``--name value`` for each of ``names`` (argparse dests), to hand to a worker process."""
    out: list[str] = []
    for name in names:
        value = getattr(args, name)
        if value is not None:
            out += [f"--{name.replace('_', '-')}", str(value)]
    return out


# --------------------------------------------------------------------------------------------
# (b) training: EI + MoR vs late fusion vs one image
# --------------------------------------------------------------------------------------------


def cohort_spec(args: argparse.Namespace) -> tuple[Any, tuple[str, ...], str]:
    """(spec, image modalities in config order, split reported on) of the benchmark cohort."""
    from polymodal.data.spec import load_spec, parse_spec

    if args.cohort == "ham10000":
        path = REPO / "configs" / "ham10000.yaml"
        data = yaml.safe_load(path.read_text())
        manifest = (path.parent / data["manifest"]).resolve()
        if not manifest.is_file():
            raise SystemExit(
                f"{manifest} not found: HAM10000 lives in ../shared/data beside the repo"
            )
        data["modalities"]["skin"]["size"] = [args.image_size, args.image_size]
        return parse_spec(data, base_dir=path.parent, source=str(path)), ("skin",), "val"
    return load_spec(args.work / "cohort" / "two_view.yaml"), CONFIG_IMAGES, "test"


def run_config(args: argparse.Namespace, config: str, image: int, images: tuple[str, ...]):
    """A ``configs/ei`` config renamed to the cohort's images, with the small ViT and the
    benchmark's epochs, batch and patience (the same for every model)."""
    from polymodal.training.run_config import RunConfig

    data = yaml.safe_load((EI_CONFIGS / f"{config}.yaml").read_text())
    rename = dict(zip(CONFIG_IMAGES, images, strict=False))
    model = data["model"]
    model["dim"] = args.dim
    weights = str(args.backbone_weights) if args.backbone_weights else None
    vit_options = {**SMALL_VIT, **json.loads(args.vit_options)}
    if model["core"] == "intervention":
        model["core_options"].update(
            backbone=args.vit,
            backbone_options={"img_size": args.image_size, **vit_options},
            pretrained=weights,
        )
    encoders = {}
    for name, choice in (model.get("encoders") or {}).items():
        if name in rename:
            choice["options"].update(
                backbone=args.vit, backbone_options=vit_options, pretrained=weights
            )
            encoders[rename[name]] = choice
    model["encoders"] = encoders
    if model["core"] == "single":
        model["core_options"]["modality"] = images[image]
    data["train"].update(
        max_epochs=args.epochs,
        batch_size=args.batch,
        early_stopping_patience=args.patience,
        cache_dir=str(args.work / "cache"),
        seed=args.seed,
        num_workers=args.workers,
        precision=args.precision,
    )
    return RunConfig.model_validate(data)


def fit_worker(args: argparse.Namespace) -> dict:
    """Fit and evaluate one model in this process; the numbers as a dict."""
    import resource

    import pandas as pd

    from polymodal.data.manifest import load_cohort
    from polymodal.evaluation.evaluate import evaluate_model
    from polymodal.model_folder import load_model_folder
    from polymodal.predictor import Predictor
    from polymodal.training.fit import fit

    torch.set_num_threads(args.threads)
    name = args.fit_worker
    config, image = models_of(args)[name]
    spec, images, split = cohort_spec(args)
    run = run_config(args, config, image, images)
    cohort = load_cohort(spec)
    out = args.work / "runs" / slug(name)
    started = time.perf_counter()
    result = fit(
        spec,
        out,
        run,
        cohort=cohort,
        progress=False,
    )
    seconds = time.perf_counter() - started
    evaluation = evaluate_model(
        Predictor.load(result.model_dir),
        cohort,
        split=split,
        subsets=False,
        n_boot=args.n_boot,
        progress=False,
    )
    target = next(iter(evaluation.targets))
    subset = evaluation.targets[target].subsets[0]
    metrics = {
        k: [subset.metrics[k].point, subset.metrics[k].low, subset.metrics[k].high]
        for k in ("balanced_accuracy", "auroc_macro")
    }
    logged = pd.read_csv(out / "logs" / "metrics.csv")
    epoch_seconds = logged["train/epoch_seconds"].dropna().tolist()
    model = load_model_folder(result.model_dir).model
    return {
        "model": name,
        "config": f"configs/ei/{config}.yaml",
        "metrics": metrics,
        "epochs": result.epochs_run,
        "best_score": result.best_score,
        "monitor": result.monitor,
        "epoch_seconds": statistics.median(epoch_seconds) if epoch_seconds else None,
        "fit_seconds": seconds,
        "peak_rss_bytes": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024,
        "device": device_name(),
        "trainable_parameters": sum(p.numel() for p in model.parameters() if p.requires_grad),
        "parameters": sum(p.numel() for p in model.parameters()),
    }


def models_of(args: argparse.Namespace) -> dict[str, tuple[str, int]]:
    """Benchmark name -> (config, index of the image a single-image model reads)."""
    table = HAM_MODELS if args.cohort == "ham10000" else MODELS
    if args.models:
        unknown = [m for m in args.models if m not in table]
        if unknown:
            raise SystemExit(f"unknown models {unknown}; choose from {list(table)}")
        table = {m: table[m] for m in args.models}
    return table


def slug(name: str) -> str:
    return "".join(c if c.isalnum() else "_" for c in name.lower()).strip("_")


def run_training(args: argparse.Namespace) -> None:
    from polymodal.datasets.demo import make_demo_cohort

    args.work.mkdir(parents=True, exist_ok=True)
    started = time.perf_counter()
    if args.cohort == "demo":
        print(f"two-image demo cohort: n={args.n}, {args.image_size} px", flush=True)
        make_demo_cohort(
            args.work / "cohort",
            n=args.n,
            seed=args.seed,
            image_size=args.image_size,
            volume_size=16,
            second_view=True,
        )
    rows = []
    for name in models_of(args):
        saved = args.work / "runs" / slug(name) / "row.json"
        if args.reuse and saved.is_file():
            # Fitted and scored by an earlier run of this command with the same --work.
            rows.append(json.loads(saved.read_text()))
            print(f"reusing {name} from {saved.parent}", flush=True)
            continue
        print(f"fitting {name}", flush=True)
        command = [
            sys.executable,
            str(Path(__file__).resolve()),
            "train",
            "--fit-worker",
            name,
            *passthrough(
                args,
                (
                    "cohort",
                    "n",
                    "seed",
                    "image_size",
                    "epochs",
                    "batch",
                    "patience",
                    "n_boot",
                    "dim",
                    "threads",
                    "workers",
                    "precision",
                    "vit",
                    "vit_options",
                    "backbone_weights",
                    "work",
                ),
            ),
        ]
        done = subprocess.run(command, capture_output=True, text=True, check=False)
        if done.returncode != 0:
            raise SystemExit(f"{name} failed:\n{done.stderr[-4000:]}")
        rows.append(json.loads(done.stdout.strip().splitlines()[-1]))
        saved.write_text(json.dumps(rows[-1]) + "\n")
        print(json.dumps(rows[-1]), flush=True)
    write_training_report(args, rows, time.perf_counter() - started)


def write_training_report(args: argparse.Namespace, rows: list[dict], seconds: float) -> None:
    stem = (
        f"ei_{args.cohort}"
        + ("_pretrained" if args.backbone_weights else "")
        + ("_quick" if args.quick else "")
    )
    # Where the runs went (--work) does not change a number: leave it out of the command.
    shown, skip = [], False
    for item in args.command_line:
        if skip or item == "--work":
            skip = not skip
            continue
        shown.append(item)
    command = "python bench/ei.py train " + shlex.join(shown)
    split = "val" if args.cohort == "ham10000" else "test"
    # Rows read back with --reuse may have been fitted on another machine: say where.
    fitted_on = sorted({row.get("device", "cpu") for row in rows})
    if args.cohort == "ham10000":
        what = (
            f"HAM10000 (`configs/ham10000.yaml`, images resized to {args.image_size} px): 7-class "
            "`dx`; the dermoscopy image is the EI target, the clinical table its reference. Train "
            "6,408 images, report on val 1,603 (grouped by lesion)"
        )
    else:
        what = (
            f"two-image demo cohort (`make_demo_cohort(n={args.n}, seed={args.seed}, "
            f"image_size={args.image_size}, second_view=True)`, `two_view.yaml`): 4-class "
            "`lesion_type` = shape in the overview × colour in the close-up; train/val/test "
            "≈ 70/15/15, grouped by patient; each image missing for about 20 % of samples (never "
            "both)"
        )
    vit = {**SMALL_VIT, **json.loads(args.vit_options)}
    lines = [
        f"# Early Intervention vs baselines: {args.cohort}" + (" (quick)" if args.quick else ""),
        "",
        f"Command: `{command}`",
        "",
        f"Machine: {machine(args.threads)}; load average at the end "
        f"{load_average():.1f}. Total {seconds / 60:.1f} min. Models fitted on: "
        f"{', '.join(fitted_on)}.",
        "",
        f"Cohort: {what}. Models: the configs of `configs/ei` with a small ViT ({args.vit}, "
        f"{vit}) {'from ' + str(args.backbone_weights) if args.backbone_weights else 'with random initial weights'}"
        f", width {args.dim}; up to {args.epochs} epochs, batch {args.batch}, early stopping "
        f"after {args.patience} epochs without gain in validation macro AP; each model in a fresh "
        f"process. Metrics on {split} with 95 % CIs from {args.n_boot} bootstrap resamples of "
        "patients (lesions).",
        "",
        *table(
            [
                "model",
                "config",
                "balanced accuracy",
                "macro AUROC",
                "epochs",
                "s / epoch",
                "peak RSS (MiB)",
                "trainable / all parameters",
            ],
            align="llrrrrrr",
        ),
    ]
    for row in rows:
        m = row["metrics"]
        epoch = "" if row["epoch_seconds"] is None else f"{row['epoch_seconds']:.1f}"
        lines.append(
            table_row(
                [
                    row["model"],
                    f"`{Path(row['config']).name}`",
                    cell(m["balanced_accuracy"]),
                    cell(m["auroc_macro"]),
                    row["epochs"],
                    epoch,
                    f"{row['peak_rss_bytes'] / 2**20:,.0f}",
                    f"{row['trainable_parameters']:,} / {row['parameters']:,}",
                ]
            )
        )
    print(write_report(RESULTS / f"{stem}.md", lines), end="")
    (RESULTS / f"{stem}.json").write_text(json.dumps(rows, indent=2) + "\n")


# --------------------------------------------------------------------------------------------


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    commands = parser.add_subparsers(dest="command", required=True)
    memory = commands.add_parser("memory", help="(a) shared frozen ViT vs 2·M copies")
    memory.add_argument("--backbone", default="vit_base_patch16_clip_224")
    memory.add_argument("--img-size", type=int, default=64)
    memory.add_argument("--batch", type=int, default=8)
    memory.add_argument("--dim", type=int, default=128)
    memory.add_argument("--threads", type=int, default=1)
    memory.add_argument("--device", default="cpu", choices=["cpu", "cuda"])
    memory.add_argument("--memory-worker", nargs=2, help=argparse.SUPPRESS)

    train = commands.add_parser("train", help="(b) EI + MoR vs late fusion vs one image")
    train.add_argument("--cohort", default="demo", choices=["demo", "ham10000"])
    train.add_argument("--quick", action="store_true", help="600 samples, 6 epochs, 200 resamples")
    train.add_argument("--n", type=int, help="demo cohort size (default 1500; quick 600)")
    train.add_argument("--seed", type=int, default=0)
    train.add_argument("--image-size", type=int, default=32)
    train.add_argument("--epochs", type=int, help="most epochs (default 20; quick 6)")
    train.add_argument("--batch", type=int, default=32)
    train.add_argument("--patience", type=int, default=10)
    train.add_argument("--n-boot", type=int, help="bootstrap resamples (default 1000; quick 200)")
    train.add_argument("--dim", type=int, default=64)
    train.add_argument("--threads", type=int, default=1)
    train.add_argument("--workers", type=int, default=0, help="DataLoader worker processes")
    train.add_argument("--precision", default="32", choices=["32", "16-mixed", "bf16-mixed"])
    train.add_argument("--vit", default="vit_tiny_patch16_224", help="timm ViT of every model")
    train.add_argument(
        "--vit-options", default="{}", help=f"JSON over the small ViT's options {SMALL_VIT}"
    )
    train.add_argument("--backbone-weights", type=Path, help="local ViT weights for every model")
    train.add_argument("--models", nargs="+", help="a subset of the models, by name")
    train.add_argument("--work", type=Path, help="runs and cohort (default: a temporary folder)")
    train.add_argument(
        "--reuse", action="store_true", help="read back models an earlier run (same --work) scored"
    )
    train.add_argument("--fit-worker", help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.command == "train":
        args.command_line = list(argv if argv is not None else sys.argv[2:])
        defaults = {"n": (1500, 600), "epochs": (20, 6), "n_boot": (1000, 200)}
        for name, (full, quick) in defaults.items():
            if getattr(args, name) is None:
                setattr(args, name, quick if args.quick else full)
    return args


def main() -> None:
    args = parse_args()
    if args.command == "memory":
        if args.memory_worker:
            print(json.dumps(memory_worker(args)))
        else:
            run_memory(args)
        return
    if args.fit_worker:
        print(json.dumps(fit_worker(args)))
        return
    if args.work is None:
        with tempfile.TemporaryDirectory(prefix="polymodal_ei_") as scratch:
            args.work = Path(scratch)
            run_training(args)
    else:
        run_training(args)


if __name__ == "__main__":
    main()
