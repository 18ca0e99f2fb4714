"""``polymodal cv``: grouped, stratified K-fold cross-validation of one run config."""

from __future__ import annotations

from pathlib import Path

import typer

from polymodal.cli._app import app, console


@app.command()
def cv(
    spec: Path = typer.Argument(..., help="Cohort spec (YAML)."),
    folds: int = typer.Option(..., "--folds", "-k", help="Number of folds (at least 2)."),
    out: Path = typer.Option(
        ..., "--out", "-o", help="Folder for cv.json, cv.md, the predictions and fold runs."
    ),
    config: Path | None = typer.Option(
        None, "--config", "-c", help="Run config YAML (model + train + plugin sections)."
    ),
    set_: list[str] = typer.Option(
        [], "--set", help="Dotted override, e.g. train.lr=1e-4 (repeatable)."
    ),
    keep_models: bool = typer.Option(
        False, "--keep-models", help="Keep every fold's model folder (OUT/fold_<k>/model)."
    ),
    refit: bool = typer.Option(
        False,
        "--refit",
        help="Also fit once on every non-test row, for the folds' median best epoch count "
        "(OUT/refit/model).",
    ),
    n_boot: int = typer.Option(
        1000, min=1, help="Bootstrap resamples (by patient) of the pooled metrics."
    ),
    seed: int = typer.Option(0, help="Seed of the fold assignment and the bootstrap."),
) -> None:
    """K fits, each validated on one fold of the non-test rows (grouped by patient, stratified
    on the first class-valued target); the test split is not used. Reports each metric's mean
    over folds with a t-interval and the pooled out-of-fold predictions' metrics with
    bootstrap CIs."""
    from polymodal.data.spec import load_spec
    from polymodal.training.cross_validation import cross_validate
    from polymodal.training.run_config import load_run_config

    run = load_run_config(config, list(set_))
    cohort_spec = load_spec(spec)
    console.print(
        f"{folds}-fold cross-validation of [bold]{run.model.core}[/] on "
        f"[bold]{cohort_spec.name}[/] → {out}"
    )
    result = cross_validate(
        cohort_spec,
        out,
        run,
        folds=folds,
        seed=seed,
        n_boot=n_boot,
        keep_models=keep_models,
        refit=refit,
    )
    console.print((out / "cv.md").read_text(), markup=False, highlight=False, soft_wrap=True)
    console.print(f"wrote {out / 'cv.json'}, {out / 'cv.md'}, {result.predictions}", markup=False)
    if result.refit_model is not None:
        console.print(f"refit model folder: {result.refit_model}", markup=False)
