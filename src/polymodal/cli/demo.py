"""``polymodal demo``: the whole job on the embedded synthetic cohort, start to finish."""

from __future__ import annotations

from pathlib import Path

import typer

from polymodal.cli._app import app, console

# Sized so that the whole demo (data, training, every-subset evaluation) ends within ~10 minutes
# on a 2-core CPU.
DEMO_OVERRIDES = [
    "model.core=synergy",
    "model.dim=64",
    "model.modality_dropout=0.1",
    # Small CNNs learn the planted image and volume factors from ~1,400 samples within a few
    # epochs on a CPU; EfficientNet's depthwise convolutions train slowly there, and a ViT-style
    # patch tokenizer needs far more data than the demo has (bench/results, docs/benchmarks.md).
    "model.encoders.lesion={name: image_timm, options: {backbone: resnet10t}}",
    "model.encoders.ct={name: volume_monai, options: {network_options: "
    "{init_features: 16, growth_rate: 8, block_config: [2, 2, 2]}}}",
    "train.max_epochs=25",
    "train.batch_size=64",
    "train.lr=2e-3",
    "train.early_stopping_patience=10",
]


@app.command()
def demo(
    out: Path = typer.Option(
        Path("demo_output"), "--out", "-o", help="Folder for the cohort, run and results."
    ),
    n: int = typer.Option(2000, help="Samples in the synthetic cohort."),
    seed: int = typer.Option(0, help="Seed for data and training."),
    n_boot: int = typer.Option(300, help="Bootstrap resamples for the CIs."),
    set_: list[str] = typer.Option(
        [], "--set", help="Extra dotted overrides, e.g. train.max_epochs=5."
    ),
) -> None:
    """Generate the demo cohort, validate it, fit a model, evaluate every modality subset."""
    from polymodal.data.manifest import load_cohort
    from polymodal.data.spec import load_spec
    from polymodal.datasets.demo import make_demo_cohort
    from polymodal.evaluation.evaluate import evaluate_model
    from polymodal.predictor import Predictor
    from polymodal.training.fit import fit
    from polymodal.training.run_config import load_run_config
    from polymodal.validation.validate import validate_cohort

    cohort_dir = out / "cohort"
    console.rule("1. demo cohort")
    spec_path = make_demo_cohort(cohort_dir, n=n, seed=seed)
    spec = load_spec(spec_path)
    cohort = load_cohort(spec)
    console.print(f"{len(cohort)} samples written to {cohort_dir}")

    console.rule("2. validate")
    report = validate_cohort(cohort, on_error="skip-modality")
    from polymodal.validation.report import render_report

    render_report(report, console)
    if not report.training_possible:
        raise typer.Exit(1)

    run = load_run_config(None, [*DEMO_OVERRIDES, f"train.seed={seed}", *set_])
    console.rule(f"3. fit {run.model.core}")
    result = fit(spec, out / "run", run, cohort=cohort)
    console.print(
        f"best {result.monitor} = {result.best_score:.4f} → model folder {result.model_dir}"
    )

    console.rule("4. evaluate on the test split, every subset of modalities")
    evaluation = evaluate_model(
        Predictor.load(result.model_dir), cohort, split="test", n_boot=n_boot, seed=seed
    )
    evaluation.print_rich(console)
    (out / "evaluation.json").write_text(evaluation.to_json())
    (out / "evaluation.md").write_text(evaluation.to_markdown())
    console.print(f"results: {out / 'evaluation.md'} and {out / 'evaluation.json'}")
