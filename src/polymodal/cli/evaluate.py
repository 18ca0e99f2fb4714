"""``polymodal evaluate``: metrics with CIs and the missing-modality matrix."""

from __future__ import annotations

from pathlib import Path

import typer

from polymodal.cli._app import app, console
from polymodal.cli.device_option import DEVICE_HELP


@app.command()
def evaluate(
    model_dir: Path = typer.Argument(
        ..., help="Model folder written by `polymodal fit` (OUT/model)."
    ),
    spec: Path | None = typer.Option(
        None, help="Cohort spec (default: the one saved with the model)."
    ),
    manifest: Path | None = typer.Option(
        None,
        help="Score this manifest instead of the spec's; its relative file paths start from its "
        "own folder (or --root), never the training cohort's.",
    ),
    root: Path | None = typer.Option(
        None, help="Folder that relative file paths start from; every file must lie inside it."
    ),
    split: str = typer.Option("test", help="Split to score: test, val or train."),
    device: str = typer.Option("auto", help=DEVICE_HELP),
    cache_dir: Path | None = typer.Option(
        None,
        "--cache-dir",
        help="Keep decoded images, volumes and series, and a frozen backbone's features, here "
        "between runs (a fit's train.cache_dir can be given: the same files are read again).",
    ),
    tta: bool = typer.Option(
        False,
        help="Average the probabilities over the images' dihedral views (8; 4 if not square).",
    ),
    calibrated: bool = typer.Option(
        True,
        "--calibrated/--uncalibrated",
        help="Apply the model folder's recalibration and conformal sets (calibration.json, "
        "conformal.json); --uncalibrated scores the model's own probabilities (the 'before').",
    ),
    subsets: bool = typer.Option(True, help="Score every non-empty subset of modalities."),
    n_boot: int = typer.Option(1000, min=1, help="Bootstrap resamples by patient group."),
    specificity: float = typer.Option(
        0.9, min=0.0, max=1.0, help="Report sensitivity at this specificity."
    ),
    json_out: Path | None = typer.Option(None, "--json", help="Write the results as JSON."),
    markdown_out: Path | None = typer.Option(
        None, "--markdown", help="Write the results as Markdown."
    ),
    predictions: Path | None = typer.Option(
        None,
        help="Keep the per-sample predictions of every subset here (Parquet). Default: beside "
        "--json (r.json → r.predictions.parquet), else beside --markdown, else "
        "RUN/eval/SPLIT.predictions.parquet for MODEL_DIR = RUN/model.",
    ),
    keep_predictions: bool = typer.Option(
        True, help="Write the predictions file (read by `polymodal compare`)."
    ),
    seed: int = typer.Option(0, help="Bootstrap seed."),
) -> None:
    """Score a model on a split, with 95 % bootstrap CIs resampled by patient group."""
    from polymodal.data.manifest import load_cohort
    from polymodal.data.spec import load_spec
    from polymodal.devices import resolve_device
    from polymodal.evaluation.coverage import coverage_lines
    from polymodal.evaluation.evaluate import evaluate_model
    from polymodal.predictor import Predictor
    from polymodal.runtime import setup_process

    setup_process()  # threads for this process, allocator buffers kept across batches
    predictor = Predictor.load(
        model_dir,
        device=resolve_device(device),
        tta=tta,
        cache_dir=cache_dir,
        calibrated=calibrated,
    )
    cohort_spec = load_spec(spec) if spec is not None else predictor.loaded.spec
    # Another table is other patients: a same-named file beside the training data is not theirs.
    other = manifest.expanduser().resolve() if manifest is not None else None
    if root is None and other is not None and other != cohort_spec.manifest_path:
        root = other.parent
    cohort = load_cohort(cohort_spec, manifest_override=manifest, root=root)
    if keep_predictions and predictions is None:
        predictions = predictions_beside(json_out or markdown_out, model_dir, split)
    result = evaluate_model(
        predictor,
        cohort,
        split=split,
        subsets=subsets,
        n_boot=n_boot,
        specificity=specificity,
        seed=seed,
        predictions_path=predictions if keep_predictions else None,
    )
    result.print_rich(console)
    coverage = coverage_lines(result)
    for line in coverage:
        console.print(line, highlight=False, markup=False, soft_wrap=True)
    markdown = result.to_markdown() + "".join(f"\n- {line}" for line in coverage)
    for path, text in ((json_out, result.to_json()), (markdown_out, markdown)):
        if path is not None:
            path.parent.mkdir(parents=True, exist_ok=True)
            path.write_text(text)
            console.print(f"wrote {path}")
    if keep_predictions:
        console.print(
            f"wrote {predictions} (per-sample predictions, for `polymodal compare`)",
            highlight=False,
            markup=False,
            soft_wrap=True,
        )


def predictions_beside(result_path: Path | None, model_dir: Path, split: str) -> Path:
    """Where the predictions go by default: ``r.json`` → ``r.predictions.parquet``; without a
    result file, ``RUN/eval/SPLIT.predictions.parquet`` beside ``RUN/model``."""
    if result_path is not None:
        return result_path.with_name(f"{result_path.stem}.predictions.parquet")
    return model_dir.parent / "eval" / f"{split}.predictions.parquet"
